"""A standby replica makes no write requests, counted by the real kube-apiserver.

Each replica acts as a ServiceAccount of its own. FlowSchemas (API Priority and
Fairness) classify the standby's requests by verb, and the API server's own
``apiserver_flowcontrol_dispatched_requests_total`` counts them: the standby's reads
show that the counting works, and its writes must stay at zero while the EdgeModel is
created, its spec and annotations change and runtimes report. kopf's progress and
diff-base annotations are written by the leader only.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes
import pytest

from edgemodel_dev.harness import operatorprocess, processes
from tests.integration import edgemodels

pytestmark = [pytest.mark.cluster, pytest.mark.mlflow]

DIFF_BASE = "edgeml.dev/last-handled-configuration"
WRITES = ["create", "update", "patch", "delete", "deletecollection"]
READS = ["get", "list", "watch"]
OPERATOR_NAMESPACE = "edgemodel-system"  # where the harness puts the operator's ServiceAccounts
SPEC = edgemodels.spec(scaling={"minReplicas": 1, "maxReplicas": 3})


def _flow_schema(name: str, account: str, verbs: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name},
        "spec": {
            "priorityLevelConfiguration": {"name": "workload-low"},
            "matchingPrecedence": 100,  # before the built-in service-accounts schema
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [
                        {
                            "kind": "ServiceAccount",
                            "serviceAccount": {"name": account, "namespace": OPERATOR_NAMESPACE},
                        }
                    ],
                    "resourceRules": [
                        {
                            "verbs": verbs,
                            "apiGroups": ["*"],
                            "resources": ["*"],
                            "namespaces": ["*"],
                            "clusterScope": True,
                        }
                    ],
                }
            ],
        },
    }


def _dispatched(cluster, schema: str) -> float:
    """Requests the API server dispatched under ``schema``, from its own /metrics."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_flowcontrol_dispatched_requests_total{") and re.search(
            rf'flow_schema="{re.escape(schema)}"', line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _active(flow: Any, name: str) -> bool:
    obj = flow.get_cluster_custom_object("flowcontrol.apiserver.k8s.io", "v1", "flowschemas", name)
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Dangling" and c.get("status") == "False" for c in conditions)


def _annotations(api_client: Any, namespace: str) -> dict[str, str]:
    return edgemodels.get(api_client, namespace, "em")["metadata"].get("annotations") or {}


def _deferrals(op: operatorprocess.OperatorProcess, namespace: str) -> int:
    return op.log_text().count(f"Deferred the reconcile of EdgeModel {namespace}/em")


def test_a_standby_replica_makes_no_write_requests(cluster, api_client, namespace, operators):
    leader_account, standby_account = f"leader-{namespace}"[:63], f"standby-{namespace}"[:63]
    schemas = {
        "leader-writes": _flow_schema(f"{namespace}-leader-writes", leader_account, WRITES),
        "standby-writes": _flow_schema(f"{namespace}-standby-writes", standby_account, WRITES),
        "standby-reads": _flow_schema(f"{namespace}-standby-reads", standby_account, READS),
    }
    flow = kubernetes.client.CustomObjectsApi(api_client)
    for body in schemas.values():
        flow.create_cluster_custom_object("flowcontrol.apiserver.k8s.io", "v1", "flowschemas", body)
    names = {k: v["metadata"]["name"] for k, v in schemas.items()}
    try:
        for name in names.values():
            processes.wait_until(
                lambda n=name: _active(flow, n), timeout=30, what=f"FlowSchema {name} in force"
            )
        leader_config = operatorprocess.grant_operator_rules(cluster, OPERATOR_NAMESPACE, leader_account)
        standby_config = operatorprocess.grant_operator_rules(cluster, OPERATOR_NAMESPACE, standby_account)

        a = operators("operator-a", KUBECONFIG=str(leader_config))
        processes.wait_until(
            lambda: "edgemodel_operator_leader 1.0" in a.metrics_text(), timeout=30, what="operator-a to lead"
        )
        b = operators("operator-b", KUBECONFIG=str(standby_config), EDGEMODEL_LOG_LEVEL="DEBUG")
        processes.wait_until(
            lambda: _dispatched(cluster, names["standby-reads"]) > 0, timeout=30, what="reads"
        )
        assert "edgemodel_operator_leader 0.0" in b.metrics_text()

        custom = kubernetes.client.CustomObjectsApi(api_client)

        def patch(body: dict[str, Any]) -> None:
            custom.patch_namespaced_custom_object(
                "edgeml.dev", "v1alpha1", namespace, "edgemodels", "em", body
            )

        steps = [
            ("create", lambda: edgemodels.create(api_client, namespace, "em", SPEC)),
            ("spec change", lambda: patch({"spec": {"drift": {"threshold": 2.0}}})),
            ("annotation", lambda: patch({"metadata": {"annotations": {"example.com/note": "x"}}})),
            (
                "runtime report",
                lambda: edgemodels.report(
                    api_client,
                    namespace,
                    "em",
                    "em-inference-0",
                    rmse=3.0,
                    samples=100,
                    detected=True,
                    version=None,
                ),
            ),
        ]
        for what, step in steps:
            before = _deferrals(b, namespace)
            step()
            # The standby's handlers ran for this change (each defers its request: it does not lead).
            processes.wait_until(
                lambda before=before: _deferrals(b, namespace) > before,
                timeout=30,
                what=f"the standby to see the {what}",
            )
        processes.wait_until(
            lambda: edgemodels.status(api_client, namespace, "em").observed_generation == 2,
            timeout=30,
            what="the leader to handle the spec change",
        )
        # kopf's diff-base annotation is written once the leader's handler is done with the
        # last change; the standby, which saw every change too, writes nothing.
        processes.wait_until(
            lambda: '"threshold":2' in _annotations(api_client, namespace).get(DIFF_BASE, ""),
            timeout=60,
            what="the leader's diff-base annotation for the spec change",
        )
        counts = {k: _dispatched(cluster, v) for k, v in names.items()}
        assert counts["standby-reads"] > 0 and counts["leader-writes"] > 0, counts
        assert counts["standby-writes"] == 0, counts
    finally:
        for name in names.values():
            flow.delete_cluster_custom_object("flowcontrol.apiserver.k8s.io", "v1", "flowschemas", name)
