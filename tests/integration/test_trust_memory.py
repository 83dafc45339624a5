"""Issue 12, item 2, on the real API server: the policy's memory is out of a runtime's reach.

The operator keeps the retraining bookkeeping and the model history in the EdgeModel's
annotation ``edgeml.dev/policy-memory``; ``status`` holds a copy. A write to the status
subresource, which is all a runtime's Role allows, cannot change an annotation: the API
server keeps everything but ``status`` as it was. These tests write as an admin, which is
what a runtime could do without the ValidatingAdmissionPolicy: wiping the memory in
``status`` (the attack of issue 12) starts no retrain and is put back. An annotation the
operator cannot read holds retraining with a condition and an Event.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import kubernetes
import pytest

from edgemodel import api, contracts
from edgemodel_dev.harness import processes
from tests.integration import edgemodels

pytestmark = pytest.mark.cluster

MEMORY = "edgeml.dev/policy-memory"
SPEC = edgemodels.spec(retraining={"cooldownSeconds": 0, "maxPerHour": 1})
WIPED = {
    "retraining": {
        "count": 0,
        "lastJob": None,
        "lastTriggeredTime": None,
        "recentTriggers": [],
        "consecutiveFailures": 0,
        "consecutiveRejections": 0,
        "lastCompletedJob": None,
        "lastCompletedTime": None,
    },
    "model": {"history": []},
}


def _custom(client) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(client)


def _memory(client, namespace: str) -> dict[str, Any] | None:
    raw = (edgemodels.get(client, namespace, "em")["metadata"].get("annotations") or {}).get(MEMORY)
    return None if raw is None else json.loads(raw)


def _status(client, namespace: str) -> dict[str, Any]:
    return edgemodels.get(client, namespace, "em").get("status") or {}


def _condition(client, namespace: str, type_: str) -> dict[str, Any]:
    return next((c for c in _status(client, namespace).get("conditions") or [] if c["type"] == type_), {})


def _retrains(client, namespace: str) -> list[str]:
    return [
        j.metadata.name for j in edgemodels.jobs(client, namespace, "em") if "-retrain-" in j.metadata.name
    ]


def _drift(pod: str) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        pod: {
            "rmse": 2.0,
            "samples": 100,
            "detected": True,
            "reason": "Threshold",
            "modelVersion": "1",
            "reportTime": now,
        }
    }


def test_a_wiped_status_neither_retrains_nor_resets_the_memory(api_client, namespace, operators):
    operators(EDGEMODEL_RESYNC_SECONDS="5")
    edgemodels.create(api_client, namespace, "em", SPEC)
    pod = edgemodels.serving(api_client, namespace, "em")
    edgemodels.report(api_client, namespace, "em", pod, rmse=2.0, samples=100, detected=True, version="1")
    processes.wait_until(
        lambda: _retrains(api_client, namespace) == ["em-retrain-2"], timeout=30, what="a retrain"
    )
    processes.wait_until(
        lambda: (_memory(api_client, namespace) or {}).get("retraining", {}).get("count") == 2,
        timeout=30,
        what="the retrain in the memory annotation",
    )
    remembered = _memory(api_client, namespace)
    assert len(remembered["retraining"]["recentTriggers"]) == 1
    assert [h["version"] for h in remembered["history"]] == ["1"]
    rejected = edgemodels.training_result(
        "Rejected", "2", reason="BelowPromotionMargin: no better", champion_version="1"
    )
    edgemodels.finish_job(api_client, namespace, "em-retrain-2", rejected, int(contracts.ExitCode.REJECTED))
    processes.wait_until(
        lambda: (
            (_memory(api_client, namespace) or {}).get("retraining", {}).get("consecutiveRejections") == 1
        ),
        timeout=30,
        what="the rejection in the memory annotation",
    )
    assert [h["version"] for h in _memory(api_client, namespace)["history"]] == ["1", "2"]

    # A status write carrying an annotation changes the status only.
    _custom(api_client).patch_namespaced_custom_object_status(
        api.GROUP, api.VERSION, namespace, api.PLURAL, "em", {"metadata": {"annotations": {MEMORY: "{}"}}}
    )
    assert _memory(api_client, namespace)["retraining"]["count"] == 2

    # The attack: the hourly limit's triggers, the counts and the history wiped, and drift reported.
    _custom(api_client).patch_namespaced_custom_object_status(
        api.GROUP,
        api.VERSION,
        namespace,
        api.PLURAL,
        "em",
        {"status": {**WIPED, "replicaDrift": _drift(pod)}},
    )
    # The next pass puts the copy back from the memory, and its plan saw the drift...
    processes.wait_until(
        lambda: _status(api_client, namespace).get("retraining", {}).get("count") == 2,
        timeout=30,
        what="the status copy put back",
    )
    restored = _status(api_client, namespace)
    assert [h["version"] for h in restored["model"]["history"]] == ["1", "2"]
    assert len(restored["retraining"]["recentTriggers"]) == 1
    # ...and held it back by the remembered rejection and hourly limit: no new Job.
    assert _condition(api_client, namespace, "Retraining")["reason"] in ("Backoff", "RateLimited")
    assert _retrains(api_client, namespace) == ["em-retrain-2"]
    assert _memory(api_client, namespace)["retraining"]["count"] == 2


def test_an_unreadable_memory_holds_retraining_with_a_condition_and_an_event(
    api_client, namespace, operators
):
    operators(EDGEMODEL_RESYNC_SECONDS="5")
    edgemodels.create(api_client, namespace, "em", SPEC)
    pod = edgemodels.serving(api_client, namespace, "em")
    processes.wait_until(lambda: _memory(api_client, namespace) is not None, timeout=30, what="the memory")
    good = edgemodels.get(api_client, namespace, "em")["metadata"]["annotations"][MEMORY]

    broken = json.dumps({"retraining": {"count": "many"}})
    _custom(api_client).patch_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, "em", {"metadata": {"annotations": {MEMORY: broken}}}
    )
    edgemodels.report(api_client, namespace, "em", pod, rmse=2.0, samples=100, detected=True, version="1")
    processes.wait_until(
        lambda: _condition(api_client, namespace, "Degraded").get("reason") == "StatusUnreadable",
        timeout=30,
        what="Degraded=True, StatusUnreadable",
    )
    degraded = _condition(api_client, namespace, "Degraded")
    assert (
        degraded["status"] == "True"
        and MEMORY in degraded["message"]
        and "retraining.count" in degraded["message"]
    )
    assert _retrains(api_client, namespace) == []
    # Nothing reset it: the annotation is as the admin left it.
    assert _memory(api_client, namespace) == {"retraining": {"count": "many"}}
    events = kubernetes.client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    warned = [e for e in events if e.reason == "StatusUnreadable" and e.involved_object.name == "em"]
    assert len(warned) == 1 and warned[0].type == "Warning" and MEMORY in warned[0].message

    # Repaired: the policy goes on from the memory, and the drift retrains.
    _custom(api_client).patch_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, "em", {"metadata": {"annotations": {MEMORY: good}}}
    )
    edgemodels.wait_condition(api_client, namespace, "em", "Degraded", "False")
    processes.wait_until(
        lambda: _retrains(api_client, namespace) == ["em-retrain-2"], timeout=30, what="a retrain"
    )
