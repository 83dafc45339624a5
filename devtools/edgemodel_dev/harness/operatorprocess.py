"""Run the real ``edgemodel-operator`` as a local process against a control plane.

It runs under its own ServiceAccount, bound to a ClusterRole made from the chart's
``helm/edgemodel/files/operator-rules.yaml``: the same rules a Helm install grants, so
a test proves they are enough. Nothing runs as cluster-admin.

I/O: processes, files and the Kubernetes API.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import sys
import urllib.request
from collections.abc import Mapping
from typing import Any, cast

import kubernetes
import yaml

from edgemodel_dev.harness import binaries, controlplane, processes

__all__ = ["OperatorProcess", "grant_operator_rules"]

ROLE = "edgemodel-operator"


def rules_file() -> pathlib.Path:
    return binaries.repo_root() / "helm" / "edgemodel" / "files" / "operator-rules.yaml"


def grant_operator_rules(plane: controlplane.ControlPlane, namespace: str, account: str) -> pathlib.Path:
    """Create the ServiceAccount, ClusterRole and binding; return a kubeconfig acting as it."""
    client = plane.api_client()
    core = kubernetes.client.CoreV1Api(client)
    rbac = kubernetes.client.RbacAuthorizationV1Api(client)
    with contextlib.suppress(kubernetes.client.ApiException):
        core.create_namespace(cast(Any, {"metadata": {"name": namespace}}))
    with contextlib.suppress(kubernetes.client.ApiException):
        core.create_namespaced_service_account(namespace, cast(Any, {"metadata": {"name": account}}))
    rules = yaml.safe_load(rules_file().read_text())
    role = {"metadata": {"name": ROLE}, "rules": rules}
    try:
        rbac.create_cluster_role(cast(Any, role))
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise
        rbac.replace_cluster_role(ROLE, cast(Any, role))
    binding = {
        "metadata": {"name": f"{ROLE}-{namespace}-{account}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }
    with contextlib.suppress(kubernetes.client.ApiException):
        rbac.create_cluster_role_binding(cast(Any, binding))
    return plane.kubeconfig_for_service_account(namespace, account)


class OperatorProcess:
    """One operator replica; ``identity`` names it in the leader Lease."""

    def __init__(
        self,
        plane: controlplane.ControlPlane,
        workdir: pathlib.Path,
        *,
        identity: str = "operator-0",
        namespace: str = "edgemodel-system",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.plane = plane
        self.workdir = workdir.resolve()
        self.identity = identity
        self.namespace = namespace
        self.metrics_port = processes.free_port()
        self.health_port = processes.free_port()
        self.extra_env = dict(env or {})
        self._process: processes.ManagedProcess | None = None

    def _healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        with urllib.request.urlopen(url, timeout=1) as resp:  # nosec B310
            return bool(resp.status == 200)

    def metrics_text(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:  # nosec B310
            return str(resp.read().decode())

    def start(self, timeout: float = 60) -> OperatorProcess:
        kubeconfig = grant_operator_rules(self.plane, self.namespace, "edgemodel-operator")
        env = dict(os.environ)
        env.update(
            {
                "KUBECONFIG": str(kubeconfig),
                "POD_NAME": self.identity,
                "POD_NAMESPACE": self.namespace,
                "EDGEMODEL_METRICS_PORT": str(self.metrics_port),
                "EDGEMODEL_HEALTH_PORT": str(self.health_port),
                "EDGEMODEL_BIND_ADDRESS": "127.0.0.1",
                "EDGEMODEL_RESYNC_SECONDS": "20",
                "EDGEMODEL_LEASE_DURATION_SECONDS": "6",
                "EDGEMODEL_IMAGE": "localhost/edgemodel:test",
            }
        )
        env.update(self.extra_env)
        script = shutil.which("edgemodel-operator", path=str(pathlib.Path(sys.executable).parent))
        argv = [script] if script else [sys.executable, "-m", "edgemodel_operator.main"]
        self._process = processes.ManagedProcess(
            f"operator {self.identity}", argv, log_path=self.workdir / f"{self.identity}.log", env=env
        ).start()
        self._process.wait_ready(self._healthy, timeout=timeout)
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(timeout=15)

    def kill(self) -> None:
        """Stop at once, as a crash would, without releasing the Lease."""
        if self._process is not None:
            self._process.signal(signal.SIGKILL)
            self._process.stop(timeout=5)

    def log_text(self) -> str:
        return (self.workdir / f"{self.identity}.log").read_text(errors="replace")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running
