"""The end-to-end tests' cluster: a control plane and one real node, in a private network.

``real_cluster`` starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler,
then containerd, kubelet and kube-proxy, CoreDNS and metrics-server, all inside a network
namespace the harness makes (see ``devtools/edgemodel_dev/harness/node.py``), and imports
the images ``hack/images.sh`` built. Pods are real containers.

The node needs root, the tools of ``hack/node-tools.sh`` and the images of
``hack/images.sh`` (``make e2e`` makes both). Where it cannot start, the tests are skipped
with the reason; with ``EDGEMODEL_E2E=require`` (as ``.ci/run`` and ``make e2e`` set) that
is a failure instead.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
from collections.abc import Iterator, Mapping

import pytest

from edgemodel_dev.harness import binaries, node, nodetools

REPO = pathlib.Path(__file__).resolve().parents[2]
STEPS = REPO / "hack" / "e2e-steps.sh"


@pytest.fixture(scope="package")  # stopped when tests/e2e is done, not at the end of the session
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[node.RealCluster]:
    reason = nodetools.unavailable_reason()
    if reason is not None:
        if os.environ.get("EDGEMODEL_E2E") == "require":
            pytest.fail(f"the real node cannot start: {reason}")
        pytest.skip(f"the real node cannot start here: {reason}")
    cluster = node.RealCluster(tmp_path_factory.mktemp("real")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


class Steps:
    """``hack/e2e-steps.sh``, the script ``hack/kind-e2e.sh`` runs too, pointed at the real node."""

    def __init__(self, cluster: node.RealCluster, log_dir: pathlib.Path, **env: str) -> None:
        self.log_dir = log_dir
        self.env = {
            **os.environ,
            "KUBECONFIG": str(cluster.plane.kubeconfig),
            "KUBECTL": str(binaries.find("kubectl")),
            "HELM": str(binaries.find("helm")),
            "IMAGE": nodetools.image("edgemodel"),
            "BROKER_IMAGE": nodetools.image("broker"),
            "MLFLOW_IMAGE": nodetools.image("mlflow"),
            "IMAGE_PULL_POLICY": "IfNotPresent",
            **env,
        }

    def run(self, *steps: str, env: Mapping[str, str] | None = None, timeout: float = 1500) -> str:
        """Run the steps; fail the test with the script's output if one fails."""
        log = self.log_dir / f"steps-{'-'.join(steps)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            result = subprocess.run(
                ["bash", str(STEPS), *steps],
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=timeout,
                cwd=REPO,
            )
        text = log.read_text()
        if result.returncode != 0:
            pytest.fail(f"hack/e2e-steps.sh {' '.join(steps)} failed ({result.returncode}):\n{text[-6000:]}")
        return text
