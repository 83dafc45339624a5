"""Issue 12, item 2, on the real API server: impossible reports, and a status the operator cannot read.

The ValidatingAdmissionPolicy (test_trust_runtime_status) keeps a runtime to its own
entry. These tests write as an admin, which is what a runtime could do without the
policy, or within its own entry: the operator itself ignores reports from the future or
from Pods that are not its replicas, removes them, and counts them.

A status the API server stores but the operator cannot read (a time in year 0: valid
RFC 3339, out of Python's range) holds retraining, with a condition and an Event, and
resets nothing.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import kubernetes
import pytest

from edgemodel import api
from edgemodel_dev.harness import processes
from tests.integration import edgemodels

pytestmark = pytest.mark.cluster

SPEC = edgemodels.spec(retraining={"cooldownSeconds": 0})
FORGED = {"rmse": 9.0, "samples": 100, "detected": True, "reason": "Threshold", "modelVersion": "1"}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _patch_status(client, namespace: str, name: str, status: dict[str, Any]) -> None:
    kubernetes.client.CustomObjectsApi(client).patch_namespaced_custom_object_status(
        api.GROUP, api.VERSION, namespace, api.PLURAL, name, {"status": status}
    )


def _raw_status(client, namespace: str, name: str) -> dict[str, Any]:
    return edgemodels.get(client, namespace, name).get("status") or {}


def _retrains(client, namespace: str, name: str) -> list[str]:
    return [
        j.metadata.name
        for j in edgemodels.jobs(client, namespace, name)
        if "-bootstrap-" not in j.metadata.name
    ]


def _ignored(operator, reason: str) -> float:
    found = re.search(
        rf'^edgemodel_operator_drift_reports_ignored_total{{reason="{reason}"}} (\S+)$',
        operator.metrics_text(),
        re.MULTILINE,
    )
    return float(found.group(1)) if found else 0.0


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), {})


def test_reports_from_the_future_or_from_no_replica_are_ignored_removed_and_counted(
    api_client, namespace, operators
):
    operator = operators()
    edgemodels.create(api_client, namespace, "em", SPEC)
    pod = edgemodels.serving(api_client, namespace, "em")
    # Drift "detected" in 2030 by the live replica, and by a Pod that does not exist.
    _patch_status(
        api_client,
        namespace,
        "em",
        {
            "replicaDrift": {
                pod: {**FORGED, "reportTime": "2030-01-01T00:00:00Z"},
                "em-inference-9": {**FORGED, "reportTime": _now()},
            }
        },
    )
    processes.wait_until(
        lambda: (
            not {pod, "em-inference-9"}
            & set(_raw_status(api_client, namespace, "em").get("replicaDrift") or {})
        ),
        timeout=30,
        what="both forged reports removed",
    )
    assert _retrains(api_client, namespace, "em") == []
    processes.wait_until(
        lambda: (
            _ignored(operator, "future_report_time") >= 1 and _ignored(operator, "not_a_live_replica") >= 1
        ),
        timeout=15,
        what="both counted in the metric",
    )
    # A true report of drift still starts a retrain: the loop heals.
    edgemodels.report(api_client, namespace, "em", pod, rmse=2.0, samples=100, detected=True, version="1")
    processes.wait_until(
        lambda: _retrains(api_client, namespace, "em") == ["em-retrain-2"],
        timeout=30,
        what="a retraining Job",
    )


def test_an_unreadable_status_holds_retraining_with_a_condition_and_an_event(
    api_client, namespace, operators
):
    # A person's repair of the status wakes no handler; the resync finds it. Keep it short here.
    operators(EDGEMODEL_RESYNC_SECONDS="5")
    edgemodels.create(api_client, namespace, "em", SPEC)
    pod = edgemodels.serving(api_client, namespace, "em")
    before = _raw_status(api_client, namespace, "em")
    # Year 0: RFC 3339 for the API server, out of range for Python. In the same write, the
    # live replica reports drift: the pass that reads it must start nothing.
    _patch_status(
        api_client,
        namespace,
        "em",
        {
            "retraining": {"lastTriggeredTime": "0000-01-01T00:00:00Z"},
            "replicaDrift": {pod: {**FORGED, "rmse": 2.0, "reportTime": _now()}},
        },
    )
    processes.wait_until(
        lambda: (
            _condition(_raw_status(api_client, namespace, "em"), "Degraded").get("reason")
            == "StatusUnreadable"
        ),
        timeout=30,
        what="Degraded=True, StatusUnreadable",
    )
    held = _raw_status(api_client, namespace, "em")
    degraded = _condition(held, "Degraded")
    assert degraded["status"] == "True"
    assert "status.retraining.lastTriggeredTime" in degraded["message"]
    # The pass that wrote the condition saw the drift and started nothing; nothing was reset.
    assert _retrains(api_client, namespace, "em") == []
    assert held["retraining"]["count"] == before["retraining"]["count"] == 1
    assert held["model"]["history"] == before["model"]["history"]
    assert pod in held["replicaDrift"]
    events = kubernetes.client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    warned = [e for e in events if e.reason == "StatusUnreadable" and e.involved_object.name == "em"]
    assert len(warned) == 1 and warned[0].type == "Warning"
    assert "lastTriggeredTime" in warned[0].message
    # Repaired by a person: the policy goes on from what it remembered, and the drift retrains.
    _patch_status(api_client, namespace, "em", {"retraining": {"lastTriggeredTime": "2026-11-23T12:00:00Z"}})
    edgemodels.wait_condition(api_client, namespace, "em", "Degraded", "False")
    processes.wait_until(
        lambda: _retrains(api_client, namespace, "em") == ["em-retrain-2"],
        timeout=30,
        what="a retraining Job",
    )
