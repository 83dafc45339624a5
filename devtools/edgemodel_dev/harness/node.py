"""A real Kubernetes node here: containerd, kubelet and kube-proxy, plus CoreDNS and metrics-server.

It joins a :class:`~edgemodel_dev.harness.controlplane.ControlPlane` that was started in
the same :class:`~edgemodel_dev.harness.network.NodeNetwork`, so Pods are real containers
(runc), with real Pod networking (a CNI bridge), real Services (kube-proxy), real DNS
(CoreDNS, answering ``cluster.local`` only) and real resource metrics (metrics-server, for
HorizontalPodAutoscalers).

The images come from archives built by ``hack/images.sh``; no registry is reached. All
state lives under ``workdir``; cgroups under a root named after the node. :meth:`Node.stop`
kills every container, unmounts everything under ``workdir``, removes the cgroups and the
network, and leaves nothing behind.

Choices for this kind of machine (see docs/real-node.md):

- cgroups are v1 ("hybrid"), so kubelet runs with ``failCgroupV1: false`` and the cgroupfs
  driver;
- root may not lower ``oom_score_adj`` here, so containerd clamps the scores kubelet asks
  for to its own (``restrict_oom_score_adj``).

I/O: processes, files, mounts, cgroups and the Kubernetes API.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import string
import subprocess
import time
from collections.abc import Iterable
from typing import Any

import kubernetes
import yaml

from edgemodel_dev.harness import nodetools, processes
from edgemodel_dev.harness.controlplane import ControlPlane
from edgemodel_dev.harness.network import NodeNetwork

__all__ = ["Node"]

_ADDONS = pathlib.Path(__file__).with_name("addons")
_CGROUP_FS = pathlib.Path("/sys/fs/cgroup")


def _mounts_under(folder: pathlib.Path) -> list[str]:
    prefix = str(folder)
    found: list[str] = []
    for line in pathlib.Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target == prefix or target.startswith(prefix + "/"):
            found.append(target)
    return found


def _unmount_all(folder: pathlib.Path) -> None:
    """Unmount everything under ``folder``, deepest first; lazily if busy."""
    for _ in range(5):
        mounts = _mounts_under(folder)
        if not mounts:
            return
        for target in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False, timeout=30)


def _cgroup_roots(name: str) -> list[pathlib.Path]:
    """The node's cgroup root in every mounted hierarchy (v1 controllers and the unified one)."""
    roots = []
    for hierarchy in sorted(_CGROUP_FS.iterdir()):
        if hierarchy.is_dir() and not hierarchy.is_symlink() and (hierarchy / "cgroup.procs").exists():
            roots.append(hierarchy / name)
    return roots


def _pids_in(roots: Iterable[pathlib.Path]) -> set[int]:
    pids: set[int] = set()
    for root in roots:
        for folder, _subfolders, files in os.walk(root):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in pathlib.Path(folder, "cgroup.procs").read_text().split())
    return pids


def _remove_cgroups(roots: Iterable[pathlib.Path]) -> None:
    """Remove each root's cgroup folders, deepest first; folders that vanish meanwhile are fine."""
    for root in roots:
        for folder, _subfolders, _files in os.walk(root, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def _render(path: pathlib.Path, **values: str) -> list[dict[str, Any]]:
    text = string.Template(path.read_text()).substitute(values)
    return [doc for doc in yaml.safe_load_all(text) if doc]


class Node:
    """One real node named ``name``, registered with ``plane``."""

    def __init__(
        self,
        plane: ControlPlane,
        network: NodeNetwork,
        workdir: pathlib.Path,
        *,
        name: str = "edge-real-0",
        images: Iterable[pathlib.Path] | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.plane = plane
        self.network = network
        self.workdir = workdir = workdir.resolve()
        self.name = name
        self.images = list(images) if images is not None else None
        self.labels = labels or {}
        self.socket = workdir / "containerd" / "containerd.sock"
        self.cgroup_root = f"/{network.name}"
        self._procs: list[processes.ManagedProcess] = []
        self._shim_marker = str(self.socket)

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 180) -> Node:
        try:
            self._start(timeout)
        except BaseException:
            self.diagnose()
            self.stop()
            raise
        return self

    def diagnose(self) -> pathlib.Path:
        """Write what the cluster looks like (Pods, events, the add-ons' logs) to ``logs/diagnostics.txt``."""
        out = self.workdir / "logs" / "diagnostics.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        commands = [
            ("get", "nodes,pods,services,endpointslices", "-A", "-o", "wide"),
            ("get", "events", "-A", "--sort-by=.lastTimestamp"),
            ("get", "apiservices", "-o", "wide"),
            ("-n", "kube-system", "logs", "deployment/coredns", "--tail=50"),
            ("-n", "kube-system", "logs", "deployment/metrics-server", "--tail=80"),
        ]
        with out.open("w") as f:
            for args in commands:
                with contextlib.suppress(Exception):
                    result = self.plane.kubectl(*args, check=False, timeout=30)
                    f.write(f"$ kubectl {' '.join(args)}\n{result.stdout}{result.stderr}\n")
        return out

    def _start(self, timeout: float) -> None:
        wd = self.workdir
        for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "netns"):
            (wd / sub).mkdir(parents=True, exist_ok=True)
        for root in _cgroup_roots(self.cgroup_root.lstrip("/")):
            root.mkdir(exist_ok=True)
        cni = self.network.cni_config(wd / "cni" / "ipam")
        (wd / "cni" / "net.d" / "10-edgemodel.conflist").write_text(json.dumps(cni, indent=2))

        containerd = processes.ManagedProcess(
            "containerd",
            self.network.wrap(
                [str(nodetools.find("containerd")), "--config", str(self._containerd_config())]
            ),
            log_path=wd / "logs" / "containerd.log",
            env={**os.environ, "PATH": f"{nodetools.bin_dir()}:{os.environ.get('PATH', '')}"},
        )
        self._procs.append(containerd.start())
        containerd.wait_ready(lambda: self._ctr("version").returncode == 0, timeout=60)
        for archive in self.images if self.images is not None else nodetools.archives().values():
            imported = self._ctr("images", "import", str(archive))
            if imported.returncode != 0:
                raise RuntimeError(f"ctr images import {archive} failed: {imported.stderr.strip()}")

        kubelet = processes.ManagedProcess(
            "kubelet",
            self.network.wrap(
                [
                    str(nodetools.find("kubelet")),
                    f"--config={self._kubelet_config()}",
                    f"--kubeconfig={self._node_kubeconfig()}",
                    f"--root-dir={wd / 'kubelet'}",
                    f"--hostname-override={self.name}",
                    f"--node-ip={self.network.node_ip}",
                    f"--node-labels={','.join(f'{k}={v}' for k, v in self.labels.items())}",
                    "--v=1",
                ]
            ),
            log_path=wd / "logs" / "kubelet.log",
        )
        self._procs.append(kubelet.start())
        core = kubernetes.client.CoreV1Api(self.plane.api_client())
        kubelet.wait_ready(lambda: self._node_ready(core), timeout=timeout)

        proxy = processes.ManagedProcess(
            "kube-proxy",
            self.network.wrap(
                [str(nodetools.find("kube-proxy")), f"--config={self._proxy_config()}", "--v=1"]
            ),
            log_path=wd / "logs" / "kube-proxy.log",
        )
        self._procs.append(proxy.start())
        proxy.wait_ready(lambda: self.network.http_ok("http://127.0.0.1:10256/healthz"), timeout=60)

        self.apply_addons()

    def apply_addons(self, timeout: float = 180) -> None:
        """CoreDNS and metrics-server, from local images; wait until both serve."""
        docs = _render(
            _ADDONS / "coredns.yaml", DNS_IP=self.network.dns_service_ip, IMAGE=nodetools.image("coredns")
        )
        docs += _render(_ADDONS / "metrics-server.yaml", IMAGE=nodetools.image("metrics-server"))
        self.plane.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))
        self.plane.kubectl(
            "-n",
            "kube-system",
            "rollout",
            "status",
            "deployment/coredns",
            f"--timeout={timeout:.0f}s",
            timeout=timeout + 30,
        )
        self.plane.kubectl(
            "-n",
            "kube-system",
            "rollout",
            "status",
            "deployment/metrics-server",
            f"--timeout={timeout:.0f}s",
            timeout=timeout + 30,
        )
        processes.wait_until(
            lambda: (
                self.plane.kubectl(
                    "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/nodes/{self.name}"
                ).returncode
                == 0
            ),
            timeout=timeout,
            interval=2,
            what="metrics-server's first node metrics",
        )

    def stop(self) -> None:
        """Stop the node and remove every container, mount, cgroup and network it made."""
        by_name = {p.name: p for p in self._procs}
        for name in ("kube-proxy", "kubelet"):
            if name in by_name:
                by_name[name].stop()
        cgroups = _cgroup_roots(self.cgroup_root.lstrip("/"))
        for _ in range(20):  # containers may fork while they die
            pids = _pids_in(cgroups)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        self._kill_shims()
        if "containerd" in by_name:
            by_name["containerd"].stop()
        self._procs.clear()
        _unmount_all(self.workdir)
        _remove_cgroups(cgroups)

    def _kill_shims(self) -> None:
        """containerd's shims outlive it by design; those of this node's socket go now."""
        for proc in pathlib.Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if (
                    argv
                    and argv[0].endswith(b"containerd-shim-runc-v2")
                    and self._shim_marker.encode() in argv
                ):
                    os.kill(int(proc.name), signal.SIGKILL)

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers

    def _ctr(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(nodetools.find("ctr")), f"--address={self.socket}", "--namespace=k8s.io", *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
        )

    def _node_ready(self, core: kubernetes.client.CoreV1Api) -> bool:
        status = core.read_node(self.name).status
        return status is not None and any(
            c.type == "Ready" and c.status == "True" for c in status.conditions or []
        )

    def _containerd_config(self) -> pathlib.Path:
        wd = self.workdir / "containerd"
        text = f"""version = 3
root = "{wd / "root"}"
state = "{wd / "state"}"
disabled_plugins = [
  "io.containerd.nri.v1.nri",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{self.socket}"

[ttrpc]
  address = "{self.socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins.'io.containerd.internal.v1.opt']
  path = "{wd / "opt"}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "{nodetools.image("pause")}"

[plugins.'io.containerd.cri.v1.runtime']
  # Root may not lower oom_score_adj on this VM, and kubelet asks -998 for every sandbox:
  # clamp to containerd's own score so runc does not fail.
  restrict_oom_score_adj = true
  # The Pods' network namespaces are mounted under containerd's state folder, inside workdir.
  netns_mounts_under_state_dir = true

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["{nodetools.cni_bin_dir()}"]
  conf_dir = "{self.workdir / "cni" / "net.d"}"
  max_conf_num = 1

[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = "runc"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  runtime_path = "{nodetools.find("containerd-shim-runc-v2")}"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  SystemdCgroup = false
  BinaryName = "{nodetools.runc()}"

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""
        path = wd / "config.toml"
        path.write_text(text)
        return path

    def _node_kubeconfig(self) -> pathlib.Path:
        certs = self.plane.certificates
        cert, key = certs.issue(
            f"kubelet-{self.name}", common_name=f"system:node:{self.name}", organizations=("system:nodes",)
        )
        return self.plane.write_kubeconfig(
            self.workdir / "kubelet.kubeconfig",
            {"client-certificate": str(cert), "client-key": str(key)},
            self.name,
        )

    def _kubelet_config(self) -> pathlib.Path:
        certs = self.plane.certificates
        serving = certs.issue(
            f"kubelet-serving-{self.name}",
            common_name=self.name,
            server_ips=(self.network.node_ip,),
            server_dns=(self.name,),
        )
        resolv = self.workdir / "resolv.conf"
        resolv.write_text("")  # Pods get the cluster DNS only; no upstream resolver.
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # cgroup v1 ("hybrid") on this VM: allowed explicitly, with the cgroupfs driver.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": self.network.node_ip,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "tlsCertFile": str(serving[0]),
            "tlsPrivateKeyFile": str(serving[1]),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(certs.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDomain": "cluster.local",
            "clusterDNS": [self.network.dns_service_ip],
            "resolvConf": str(resolv),
            "podLogsDir": str(self.workdir / "pod-logs"),
            "staticPodPath": "",
            "rotateCertificates": False,
            "serializeImagePulls": False,
            # The disk is shared with everything else on this machine: evict only when nearly full.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "maxPods": 60,
            "nodeStatusReportFrequency": "10s",
        }
        path = self.workdir / "kubelet-config.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _proxy_config(self) -> pathlib.Path:
        certs = self.plane.certificates
        cert, key = certs.issue(f"kube-proxy-{self.name}", common_name="system:kube-proxy")
        kubeconfig = self.plane.write_kubeconfig(
            self.workdir / "kube-proxy.kubeconfig",
            {"client-certificate": str(cert), "client-key": str(key)},
            "kube-proxy",
        )
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": self.name,
            "mode": "iptables",
            "clusterCIDR": str(self.network.pod_cidr),
            "bindAddress": self.network.node_ip,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # Touch no machine-wide setting: no conntrack sysctls, no route_localnet.
            "conntrack": {"maxPerCore": 0},
            "iptables": {"localhostNodePorts": False},
        }
        path = self.workdir / "kube-proxy-config.yaml"
        path.write_text(yaml.safe_dump(config))
        return path


class RealCluster:
    """A control plane and one real node in a private network, under ``workdir``.

    The harness's answer to "how the cluster comes to exist" for the end-to-end tests:
    everything after that (helm, kubectl, the EdgeModel) is what a user runs on any cluster.
    """

    def __init__(self, workdir: pathlib.Path, *, node_name: str = "edge-real-0") -> None:
        self.workdir = workdir = workdir.resolve()
        self.network = NodeNetwork.pick()
        self.plane = ControlPlane(workdir / "plane", network=self.network)
        self.node = Node(self.plane, self.network, workdir / "node", name=node_name)
        self.volumes = workdir / "volumes"

    def start(self) -> RealCluster:
        try:
            self.network.create()
            self.plane.start()
            self.node.start()
            self._volumes()
        except BaseException:
            self.stop()
            raise
        return self

    def _volumes(self, count: int = 3, size: str = "10Gi") -> None:
        """hostPath PersistentVolumes under ``workdir``, for claims of no StorageClass (kind has
        a default provisioner; this node has these instead)."""
        docs = []
        for i in range(count):
            folder = self.volumes / f"pv-{i}"
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o777)  # the Pods run as non-root users of their own choosing
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": f"harness-pv-{i}"},
                    "spec": {
                        "capacity": {"storage": size},
                        "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "hostPath": {"path": str(folder), "type": "Directory"},
                    },
                }
            )
        self.plane.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))

    def stop(self) -> None:
        """Stop the node, then the control plane, then delete the network, whatever fails."""
        try:
            self.node.stop()
        finally:
            try:
                self.plane.stop()
            finally:
                self.network.delete()

    def __enter__(self) -> RealCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
