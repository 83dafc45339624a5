"""What a pass costs on the real API server: nothing written when nothing changed.

The operator process runs under its own RBAC, watching its children. A pass over an
EdgeModel whose children are as the last apply left them sends no apply and no status
patch (counted by the operator's ``edgemodel_operator_api_requests_total{method,kind}``
and checked against the children's resourceVersions); a child someone edits or deletes
by hand, the runtime Role included, is applied again; and runtime reports that change no
drift state make no pass write anything.
"""

from __future__ import annotations

import time
from typing import Any

import kubernetes
import pytest

from edgemodel import api
from edgemodel_dev.harness import processes
from tests.integration import edgemodels

pytestmark = pytest.mark.cluster

WRITES = ("PATCH", "POST", "PUT", "DELETE")


def _counts(op: Any) -> dict[tuple[str, str], float]:
    """The operator's requests by (method, kind), and its passes as ("passes", "")."""
    out: dict[tuple[str, str], float] = {}
    for line in op.metrics_text().splitlines():
        if line.startswith("edgemodel_operator_api_requests_total{"):
            labels = dict(
                part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(",")
            )
            key = (labels["method"].strip('"'), labels["kind"].strip('"'))
            out[key] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("edgemodel_operator_reconciles_total{"):
            out[("passes", "")] = out.get(("passes", ""), 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def _delta(before: dict, after: dict) -> dict[tuple[str, str], float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def _writes(delta: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    """Writes other than the leader Lease's renewals."""
    return {k: v for k, v in delta.items() if k[0] in WRITES and k[1] != "Lease"}


def _versions(client, namespace: str) -> dict[str, str]:
    core = kubernetes.client.CoreV1Api(client)
    apps = kubernetes.client.AppsV1Api(client)
    rbac = kubernetes.client.RbacAuthorizationV1Api(client)
    hpa = kubernetes.client.AutoscalingV2Api(client)
    return {
        "ConfigMap": core.read_namespaced_config_map(
            "em-runtime-config", namespace
        ).metadata.resource_version,
        "ServiceAccount": core.read_namespaced_service_account(
            "em-runtime", namespace
        ).metadata.resource_version,
        "Role": rbac.read_namespaced_role("em-runtime", namespace).metadata.resource_version,
        "RoleBinding": rbac.read_namespaced_role_binding("em-runtime", namespace).metadata.resource_version,
        "Service": core.read_namespaced_service("em-inference", namespace).metadata.resource_version,
        "StatefulSet": str(apps.read_namespaced_stateful_set("em-inference", namespace).metadata.generation),
        "HorizontalPodAutoscaler": str(
            hpa.read_namespaced_horizontal_pod_autoscaler("em-inference", namespace).metadata.generation
        ),
    }


def _idle(op: Any, seconds: float = 3.0, timeout: float = 60.0) -> dict[tuple[str, str], float]:
    """Wait until the operator ran no pass for ``seconds``; its counts then."""
    last = _counts(op)
    since = time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = _counts(op)
        if now.get(("passes", "")) != last.get(("passes", "")):
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= seconds:
            return now
    raise AssertionError("the operator did not settle")


def _pass(client, op: Any, namespace: str, value: str) -> dict[tuple[str, str], float]:
    """Wake one pass (a new annotation is an update kopf hands to the operator); what it sent."""
    before = _idle(op)
    kubernetes.client.CustomObjectsApi(client).patch_namespaced_custom_object(
        api.GROUP,
        api.VERSION,
        namespace,
        api.PLURAL,
        "em",
        {"metadata": {"annotations": {"test/poke": value}}},
    )
    processes.wait_until(
        lambda: _counts(op).get(("passes", ""), 0) > before.get(("passes", ""), 0), timeout=30, what="a pass"
    )
    return _delta(before, _idle(op))


def _ready_with_report(client, namespace: str) -> str:
    pod = edgemodels.serving(client, namespace, "em")
    edgemodels.wait_condition(client, namespace, "em", "Ready", "True", timeout=60)
    return pod


def test_a_pass_with_nothing_changed_writes_nothing(api_client, namespace, operators):
    op = operators(EDGEMODEL_RESYNC_SECONDS="3600")
    edgemodels.create(api_client, namespace, "em", edgemodels.spec())
    _ready_with_report(api_client, namespace)
    versions = _versions(api_client, namespace)

    for i in range(2):
        delta = _pass(api_client, op, namespace, f"quiet-{i}")
        # At least the woken pass; on a loaded machine a timer (a requeue) may add one more.
        passes = delta.get(("passes", ""), 0)
        assert passes >= 1
        assert _writes(delta) == {}, delta
        # What each pass did read: the EdgeModel, its trainer Jobs and (with reports in status) its Pods.
        assert delta.get(("GET", api.KIND)) == passes
    assert _versions(api_client, namespace) == versions


def test_a_child_edited_or_deleted_by_hand_is_applied_again(api_client, namespace, operators):
    op = operators(EDGEMODEL_RESYNC_SECONDS="3600")
    edgemodels.create(api_client, namespace, "em", edgemodels.spec())
    _ready_with_report(api_client, namespace)
    _idle(op)
    rbac = kubernetes.client.RbacAuthorizationV1Api(api_client)
    core = kubernetes.client.CoreV1Api(api_client)

    # Someone widens the runtime's Role: the watch sees it, the next pass narrows it again.
    wanted = rbac.read_namespaced_role("em-runtime", namespace).rules
    rbac.patch_namespaced_role(
        "em-runtime",
        namespace,
        {"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]},
    )
    processes.wait_until(
        lambda: rbac.read_namespaced_role("em-runtime", namespace).rules == wanted,
        timeout=30,
        what="the runtime Role put right",
    )

    # Someone deletes the inference Service: it comes back.
    core.delete_namespaced_service("em-inference", namespace)

    def service_back() -> bool:
        try:
            core.read_namespaced_service("em-inference", namespace)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    processes.wait_until(service_back, timeout=30, what="the inference Service recreated")

    # Once put right, a pass with nothing changed writes nothing again.
    delta = _pass(api_client, op, namespace, "after-repairs")
    assert _writes(delta) == {}, delta


def test_reports_that_change_no_drift_state_wake_no_pass(api_client, namespace, operators):
    op = operators(EDGEMODEL_RESYNC_SECONDS="3600")
    edgemodels.create(api_client, namespace, "em", edgemodels.spec())
    pod = _ready_with_report(api_client, namespace)
    _idle(op)

    # The runtime's reports at its cadence: the same state (version 1, no drift), a new RMSE,
    # sample count and report time each time.
    for i in range(10):
        edgemodels.report(
            api_client, namespace, "em", pod, rmse=0.3 + i / 100, samples=100 + i, detected=False, version="1"
        )
    # Then something a pass must answer. kopf hands one object's events to its handlers
    # in order, so by the time that pass has run every report's event was handled: the
    # reports woke none, and the only pass is the poke's.
    delta = _pass(api_client, op, namespace, "after-reports")
    assert delta.get(("passes", "")) == 1, delta
    # That pass folds the newest RMSE into status (one patch), and writes nothing else.
    assert set(_writes(delta)) <= {("PATCH", api.KIND)}, delta

    # A report that does change the state (drift detected) is acted on at once.
    edgemodels.report(api_client, namespace, "em", pod, rmse=5.0, samples=200, detected=True, version="1")
    edgemodels.wait_condition(api_client, namespace, "em", "Drifted", "True", timeout=30)
