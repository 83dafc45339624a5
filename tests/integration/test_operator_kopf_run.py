"""``kopf run -m edgemodel_operator.handlers`` works as the console script does.

The module reads nothing at import; under ``kopf run`` its startup handler loads the
settings from the environment, then and there. Run against the real control plane under
the operator's own RBAC rules.
"""

from __future__ import annotations

import os
import pathlib
import sys
import urllib.request

import kubernetes
import pytest

from edgemodel_dev.harness import operatorprocess, processes
from tests.integration import edgemodels

pytestmark = pytest.mark.cluster

SPEC = edgemodels.spec(scaling={"minReplicas": 1, "maxReplicas": 3})


def test_kopf_run_of_the_handlers_module_reconciles(cluster, api_client, namespace, tmp_path: pathlib.Path):
    kubeconfig = operatorprocess.grant_operator_rules(cluster, "edgemodel-system", "edgemodel-operator")
    health, metrics_port = processes.free_port(), processes.free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "POD_NAME": "kopf-run-0",
        "POD_NAMESPACE": namespace,
        "EDGEMODEL_NAMESPACE": namespace,
        "EDGEMODEL_LEASE_NAMESPACE": namespace,
        "EDGEMODEL_METRICS_PORT": str(metrics_port),
        "EDGEMODEL_BIND_ADDRESS": "127.0.0.1",
        "EDGEMODEL_LEASE_DURATION_SECONDS": "6",
        "EDGEMODEL_IMAGE": "localhost/edgemodel:test",
    }
    kopf = pathlib.Path(sys.executable).parent / "kopf"
    argv = [str(kopf), "run", "--standalone", "-n", namespace, "-m", "edgemodel_operator.handlers"]
    argv += ["--liveness", f"http://127.0.0.1:{health}/healthz"]
    proc = processes.ManagedProcess("kopf run", argv, log_path=tmp_path / "kopf-run.log", env=env).start()

    def healthy() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=1) as resp:  # nosec B310
            return bool(resp.status == 200)

    try:
        proc.wait_ready(healthy, timeout=60)
        edgemodels.create(api_client, namespace, "em", SPEC)
        apps = kubernetes.client.AppsV1Api(api_client)
        processes.wait_until(
            lambda: any(
                s.metadata.name == "em-inference" for s in apps.list_namespaced_stateful_set(namespace).items
            ),
            timeout=60,
            what="the inference StatefulSet from kopf run",
        )
        processes.wait_until(
            lambda: edgemodels.status(api_client, namespace, "em").observed_generation == 1,
            timeout=60,
            what="status written by kopf run",
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:  # nosec B310
            assert "edgemodel_operator_leader 1.0" in resp.read().decode()
    finally:
        proc.stop(timeout=15)
