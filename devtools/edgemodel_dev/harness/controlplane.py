"""A real Kubernetes control plane on 127.0.0.1, with no containers and no Docker.

It runs etcd, kube-apiserver (RBAC on, client-certificate authentication, service
account tokens), kube-controller-manager, kube-scheduler and kwok, and registers fake
edge nodes that kwok keeps Ready. Deployments then get ReplicaSets and Pods, Pods are
scheduled and marked Running, Jobs get Pods, and ownerReference garbage collection works.
Nothing runs inside the Pods: see :mod:`edgemodel_dev.harness.pods` for running the program
a Pod stands for as a local process.

I/O: processes, files and the Kubernetes API.
"""

from __future__ import annotations

import base64
import contextlib
import pathlib
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any, cast

import kubernetes
import yaml

from edgemodel_dev.harness import binaries, pki, processes

__all__ = ["EDGE_NODE_LABELS", "ControlPlane"]

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
EDGE_NODE_LABELS = {"node-role.kubernetes.io/edge": "", "edgeml.dev/site": "harness", "type": "kwok"}
SERVICE_CIDR = "10.0.0.0/24"


def _kubeconfig(server: str, ca: pathlib.Path, user: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "edgemodel-harness",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": "edgemodel-harness", "user": name}}],
        "current-context": name,
    }


class ControlPlane:
    """etcd + kube-apiserver + controller-manager + scheduler + kwok, under ``workdir``."""

    def __init__(self, workdir: pathlib.Path, *, nodes: int = 1) -> None:
        self.workdir = workdir = workdir.resolve()  # the kubeconfig holds absolute paths
        self.node_count = nodes
        self.etcd_port = processes.free_port()
        self.api_port = processes.free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.kubeconfig = workdir / "admin.kubeconfig"
        self._procs: list[processes.ManagedProcess] = []
        self._pki: pki.Pki | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 120) -> ControlPlane:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        logs = self.workdir / "logs"
        self._pki = certs = pki.Pki(self.workdir / "pki")
        serving = certs.issue(
            "apiserver",
            common_name="kube-apiserver",
            server_ips=("127.0.0.1", "10.0.0.1"),
            server_dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
        )
        admin = certs.issue("admin", common_name="edgemodel-admin", organizations=("system:masters",))
        self._write_kubeconfig(
            self.kubeconfig,
            {"client-certificate": str(admin[0]), "client-key": str(admin[1])},
            "admin",
        )

        etcd = processes.ManagedProcess(
            "etcd",
            [
                str(binaries.find("etcd")),
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{self.etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{self.etcd_port}",
                "--listen-peer-urls",
                "http://127.0.0.1:0",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
            log_path=logs / "etcd.log",
        )
        self._procs.append(etcd.start())
        etcd.wait_ready(lambda: _http_ok(f"http://127.0.0.1:{self.etcd_port}/health"), timeout=30)

        apiserver = processes.ManagedProcess(
            "kube-apiserver",
            [
                str(binaries.find("kube-apiserver")),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={serving[0]}",
                f"--tls-private-key-file={serving[1]}",
                f"--client-ca-file={certs.ca_cert}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--secure-port={self.api_port}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={certs.sa_pub}",
                f"--service-account-signing-key-file={certs.sa_key}",
                "--v=1",
            ],
            log_path=logs / "kube-apiserver.log",
        )
        self._procs.append(apiserver.start())
        apiserver.wait_ready(self._apiserver_ready, timeout=timeout)

        cm_port, sched_port = processes.free_port(), processes.free_port()
        controller_manager = processes.ManagedProcess(
            "kube-controller-manager",
            [
                str(binaries.find("kube-controller-manager")),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={cm_port}",
                f"--service-account-private-key-file={certs.sa_key}",
                f"--root-ca-file={certs.ca_cert}",
                "--use-service-account-credentials=false",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
                "--concurrent-job-syncs=10",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--v=1",
            ],
            log_path=logs / "kube-controller-manager.log",
        )
        scheduler = processes.ManagedProcess(
            "kube-scheduler",
            [
                str(binaries.find("kube-scheduler")),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--v=1",
            ],
            log_path=logs / "kube-scheduler.log",
        )
        kwok = processes.ManagedProcess(
            "kwok",
            [
                str(binaries.find("kwok")),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={pathlib.Path(__file__).with_name('kwok-stages.yaml')}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                "--node-ip=127.0.0.1",
                "--cidr=10.244.0.0/16",
                f"--server-address=127.0.0.1:{processes.free_port()}",
                "--node-lease-duration-seconds=40",
            ],
            log_path=logs / "kwok.log",
        )
        for proc in (controller_manager, scheduler, kwok):
            self._procs.append(proc.start())
        for i in range(self.node_count):
            self.add_node(f"edge-{i}")
        core = kubernetes.client.CoreV1Api(self.api_client())
        kwok.wait_ready(
            lambda: all(_node_ready(n) for n in core.list_node().items) and len(core.list_node().items) > 0,
            timeout=60,
        )
        # The default ServiceAccount appears once the controller-manager runs; Pods need it.
        controller_manager.wait_ready(
            lambda: bool(core.read_namespaced_service_account("default", "default")), timeout=60
        )

    def stop(self) -> None:
        """Stop every process this control plane started, newest first."""
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return bool(self._procs) and all(p.running for p in self._procs)

    # ------------------------------------------------------------------ access

    def _ssl_context(self) -> ssl.SSLContext:
        assert self._pki is not None
        ctx = ssl.create_default_context(cafile=str(self._pki.ca_cert))
        ctx.load_cert_chain(str(self._pki.folder / "admin.crt"), str(self._pki.folder / "admin.key"))
        return ctx

    def _apiserver_ready(self) -> bool:
        with urllib.request.urlopen(  # noqa: S310 - loopback https  # nosec B310
            f"{self.server}/readyz", timeout=2, context=self._ssl_context()
        ) as resp:
            return bool(resp.status == 200)

    def _write_kubeconfig(self, path: pathlib.Path, user: dict[str, Any], name: str) -> pathlib.Path:
        assert self._pki is not None
        path.write_text(yaml.safe_dump(_kubeconfig(self.server, self._pki.ca_cert, user, name)))
        path.chmod(0o600)
        return path

    def api_client(self, kubeconfig: pathlib.Path | None = None) -> kubernetes.client.ApiClient:
        """A client for the admin (or the given kubeconfig)."""
        client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig or self.kubeconfig)
        )
        return client

    def kubeconfig_for_service_account(self, namespace: str, name: str, *, hours: int = 4) -> pathlib.Path:
        """A kubeconfig that acts as a ServiceAccount, with a token from the TokenRequest API."""
        core = kubernetes.client.CoreV1Api(self.api_client())
        request = kubernetes.client.AuthenticationV1TokenRequest(
            spec=kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=hours * 3600)
        )
        status = core.create_namespaced_service_account_token(name, namespace, request).status
        assert status is not None
        token = status.token
        return self._write_kubeconfig(
            self.workdir / f"sa-{namespace}-{name}.kubeconfig", {"token": token}, f"{namespace}-{name}"
        )

    def kubectl(
        self, *args: str, kubeconfig: pathlib.Path | None = None, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this control plane."""
        return subprocess.run(
            [str(binaries.find("kubectl")), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=check,
            input=stdin,
            timeout=120,
        )

    def add_node(
        self, name: str, *, labels: dict[str, str] | None = None, taints: Sequence[dict[str, str]] = ()
    ) -> None:
        """Register a fake edge node that kwok manages."""
        core = kubernetes.client.CoreV1Api(self.api_client())
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {KWOK_ANNOTATION: "fake"},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    **EDGE_NODE_LABELS,
                    **(labels or {}),
                },
            },
            "spec": {"taints": list(taints)} if taints else {},
            "status": {
                "allocatable": {"cpu": "32", "memory": "64Gi", "pods": "1000"},
                "capacity": {"cpu": "32", "memory": "64Gi", "pods": "1000"},
            },
        }
        core.create_node(cast(Any, body))

    @contextlib.contextmanager
    def namespace(self, name: str) -> Iterator[str]:
        """A namespace for one test, deleted afterwards."""
        core = kubernetes.client.CoreV1Api(self.api_client())
        core.create_namespace(cast(Any, {"metadata": {"name": name}}))
        try:
            yield name
        finally:
            with contextlib.suppress(kubernetes.client.ApiException):
                core.delete_namespace(name)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback  # nosec B310
        return bool(resp.status == 200)


def _node_ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
