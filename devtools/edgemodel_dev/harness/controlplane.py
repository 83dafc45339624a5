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
import ipaddress
import pathlib
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any, cast

import kubernetes
import yaml

from edgemodel_dev.harness import binaries, pki, processes
from edgemodel_dev.harness.network import NodeNetwork

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
    """etcd + kube-apiserver + controller-manager + scheduler + kwok, under ``workdir``.

    With a ``network`` (a :class:`~edgemodel_dev.harness.network.NodeNetwork`, for a real
    node), every process runs inside that network namespace instead: etcd and the
    controllers on its loopback, the API server on the node's bridge address, so that
    Pods reach it through the ``kubernetes`` Service. Then there is no kwok and no fake
    node, the Node authorizer is on, and the aggregation layer is set up for metrics-server.
    """

    def __init__(self, workdir: pathlib.Path, *, nodes: int = 1, network: NodeNetwork | None = None) -> None:
        self.workdir = workdir = workdir.resolve()  # the kubeconfig holds absolute paths
        self.network = network
        self.node_count = 0 if network else nodes
        if network is None:
            self.etcd_port = processes.free_port()
            self.api_port = processes.free_port()
            self.api_host = "127.0.0.1"
            self.service_cidr = SERVICE_CIDR
        else:  # a fresh namespace: every port is free
            self.etcd_port, self.api_port = 2379, 6443
            self.api_host = network.node_ip
            self.service_cidr = str(network.service_cidr)
        self.server = f"https://{self.api_host}:{self.api_port}"
        self.kubeconfig = workdir / "admin.kubeconfig"
        self._procs: list[processes.ManagedProcess] = []
        self._pki: pki.Pki | None = None

    def _argv(self, argv: list[str]) -> list[str]:
        return argv if self.network is None else self.network.wrap(argv)

    @property
    def certificates(self) -> pki.Pki:
        """The CA and certificates of this control plane (for a node's identities)."""
        assert self._pki is not None, "not started"
        return self._pki

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
        kubernetes_ip = str(ipaddress.ip_network(self.service_cidr).network_address + 1)
        serving = certs.issue(
            "apiserver",
            common_name="kube-apiserver",
            server_ips=tuple(dict.fromkeys(("127.0.0.1", self.api_host, kubernetes_ip))),
            server_dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
        )
        admin = certs.issue("admin", common_name="edgemodel-admin", organizations=("system:masters",))
        self.write_kubeconfig(
            self.kubeconfig,
            {"client-certificate": str(admin[0]), "client-key": str(admin[1])},
            "admin",
        )

        etcd = processes.ManagedProcess(
            "etcd",
            self._argv(
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
                ]
            ),
            log_path=logs / "etcd.log",
        )
        self._procs.append(etcd.start())
        etcd_health = f"http://127.0.0.1:{self.etcd_port}/health"
        if self.network is None:
            etcd.wait_ready(lambda: _http_ok(etcd_health), timeout=30)
        else:  # its loopback is the namespace's; the API server's own wait covers it
            etcd.wait_ready(
                lambda: self.network is not None and self.network.http_ok(etcd_health), timeout=30
            )

        apiserver = processes.ManagedProcess(
            "kube-apiserver",
            self._argv(
                [
                    str(binaries.find("kube-apiserver")),
                    f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                    f"--cert-dir={self.workdir / 'apiserver-certs'}",
                    f"--tls-cert-file={serving[0]}",
                    f"--tls-private-key-file={serving[1]}",
                    f"--client-ca-file={certs.ca_cert}",
                    f"--bind-address={self.api_host}",
                    f"--advertise-address={self.api_host}",
                    f"--secure-port={self.api_port}",
                    f"--service-cluster-ip-range={self.service_cidr}",
                    "--allow-privileged=true",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={certs.sa_pub}",
                    f"--service-account-signing-key-file={certs.sa_key}",
                    *(
                        self._real_node_flags(certs)
                        if self.network
                        else ["--endpoint-reconciler-type=none", "--authorization-mode=RBAC"]
                    ),
                    "--v=1",
                ]
            ),
            log_path=logs / "kube-apiserver.log",
        )
        self._procs.append(apiserver.start())
        apiserver.wait_ready(self._apiserver_ready, timeout=timeout)

        cm_port, sched_port = processes.free_port(), processes.free_port()
        controller_manager = processes.ManagedProcess(
            "kube-controller-manager",
            self._argv(
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
                    f"--service-cluster-ip-range={self.service_cidr}",
                    "--concurrent-deployment-syncs=10",
                    "--concurrent-replicaset-syncs=10",
                    "--concurrent-job-syncs=10",
                    "--kube-api-qps=200",
                    "--kube-api-burst=400",
                    # A real node's HorizontalPodAutoscalers: act on fresh metrics, and scale back
                    # down after 30 s rather than Kubernetes' 5 minutes, so a test can watch both.
                    *(
                        [
                            "--horizontal-pod-autoscaler-sync-period=5s",
                            "--horizontal-pod-autoscaler-downscale-stabilization=30s",
                        ]
                        if self.network
                        else []
                    ),
                    "--v=1",
                ]
            ),
            log_path=logs / "kube-controller-manager.log",
        )
        scheduler = processes.ManagedProcess(
            "kube-scheduler",
            self._argv(
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
                ]
            ),
            log_path=logs / "kube-scheduler.log",
        )
        core = kubernetes.client.CoreV1Api(self.api_client())
        if self.network is not None:
            for proc in (controller_manager, scheduler):
                self._procs.append(proc.start())
            controller_manager.wait_ready(
                lambda: bool(core.read_namespaced_service_account("default", "default")), timeout=60
            )
            return
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

    def _real_node_flags(self, certs: pki.Pki) -> list[str]:
        """What a real node needs of the API server: node authorization, Service endpoints,
        kubelet access (logs, exec) and the aggregation layer (metrics-server)."""
        kubelet_client = certs.issue(
            "apiserver-kubelet-client",
            common_name="kube-apiserver-kubelet-client",
            organizations=("system:masters",),
        )
        front_proxy = pki.Pki(self.workdir / "front-proxy-pki")
        proxy_client = front_proxy.issue("front-proxy-client", common_name="front-proxy-client")
        return [
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--endpoint-reconciler-type=lease",
            f"--kubelet-client-certificate={kubelet_client[0]}",
            f"--kubelet-client-key={kubelet_client[1]}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--requestheader-client-ca-file={front_proxy.ca_cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={proxy_client[0]}",
            f"--proxy-client-key-file={proxy_client[1]}",
            "--enable-aggregator-routing=true",
        ]

    def write_kubeconfig(self, path: pathlib.Path, user: dict[str, Any], name: str) -> pathlib.Path:
        """A kubeconfig for ``user`` (client certificate or token) at ``path``."""
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
        return self.write_kubeconfig(
            self.workdir / f"sa-{namespace}-{name}.kubeconfig", {"token": token}, f"{namespace}-{name}"
        )

    def kubectl(
        self,
        *args: str,
        kubeconfig: pathlib.Path | None = None,
        check: bool = True,
        stdin: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this control plane."""
        return subprocess.run(
            [str(binaries.find("kubectl")), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=check,
            input=stdin,
            timeout=timeout,
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
