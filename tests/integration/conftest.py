"""The real control plane for integration tests: one per session, stopped at the end.

``cluster`` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
kwok with one fake edge node, and installs the EdgeModel CRD from ``crds/``.
``namespace`` gives each test its own namespace and deletes it afterwards.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator

import kubernetes
import pytest

from edgemodel_dev.harness import controlplane, mlflowserver, operatorprocess, processes

REPO = pathlib.Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "edgemodel.yaml"


def _crd_established(ext: kubernetes.client.ApiextensionsV1Api) -> bool:
    crd = ext.read_custom_resource_definition("edgemodels.edgeml.dev")
    return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[controlplane.ControlPlane]:
    plane = controlplane.ControlPlane(tmp_path_factory.mktemp("controlplane")).start()
    try:
        plane.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
        ext = kubernetes.client.ApiextensionsV1Api(plane.api_client())
        processes.wait_until(lambda: _crd_established(ext), timeout=30, what="the EdgeModel CRD")
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def namespace(cluster: controlplane.ControlPlane, unique_name: str) -> Iterator[str]:
    with cluster.namespace(unique_name) as name:
        yield name


@pytest.fixture
def api_client(cluster: controlplane.ControlPlane) -> kubernetes.client.ApiClient:
    return cluster.api_client()


@pytest.fixture
def operators(
    cluster: controlplane.ControlPlane,
    namespace: str,
    tmp_path: pathlib.Path,
    mlflow_server: mlflowserver.MlflowServer,
) -> Iterator[Callable[..., operatorprocess.OperatorProcess]]:
    """Start operator replicas confined to the test's namespace; all are stopped afterwards."""
    started: list[operatorprocess.OperatorProcess] = []

    def start(identity: str = "operator-0", **env: str) -> operatorprocess.OperatorProcess:
        proc = operatorprocess.OperatorProcess(
            cluster,
            tmp_path / "operators",
            identity=identity,
            env={
                "EDGEMODEL_NAMESPACE": namespace,
                "EDGEMODEL_LEASE_NAMESPACE": namespace,
                "EDGEMODEL_LEASE_NAME": "edgemodel-operator",
                "EDGEMODEL_MLFLOW_TRACKING_URI": mlflow_server.uri,
                **env,
            },
        )
        started.append(proc)
        return proc.start()

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()
