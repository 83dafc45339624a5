"""Issue 12, item 2: the policy's memory lives in an annotation no runtime can write. Pure, no I/O."""

from __future__ import annotations

import datetime
import json

import pytest

from edgemodel import api
from edgemodel_operator import conditions, memory, observe, status
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings

NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)
SETTINGS = Settings()
SPEC = {
    "sensors": {"topics": ["plant/+/t"], "features": ["temperature"], "target": "temperature"},
    "drift": {"threshold": 1.0, "window": 100},
    "retraining": {"cooldownSeconds": 300, "maxPerHour": 2, "maxConsecutiveRejections": 2},
}
# After a promotion and a drift retrain a minute ago: the cooldown runs, the breaker counts one.
REMEMBERED = memory.Memory(
    retraining=api.RetrainingStatus(
        count=2,
        last_job="em-retrain-2",
        last_triggered_time=NOW - datetime.timedelta(seconds=60),
        recent_triggers=[NOW - datetime.timedelta(seconds=60)],
        consecutive_rejections=1,
    ),
    history=[api.ModelHistoryEntry(version="1", outcome="Promoted", time=NOW)],
)
# What a runtime without the admission policy could write into status: the memory wiped.
FORGED = {"retraining": {"count": 0, "recentTriggers": [], "consecutiveRejections": 0}, "model": {}}


def _report() -> dict:
    return api.ReplicaDriftEntry(
        rmse=3.0, samples=100, detected=True, model_version="1", report_time=NOW, reason="Threshold"
    ).model_dump(by_alias=True, mode="json")


def _em(status_: dict, annotations: dict[str, str] | None = None) -> EdgeModel:
    return EdgeModel.from_body(
        {
            "metadata": {
                "name": "em",
                "namespace": "ns",
                "uid": "u",
                "generation": 1,
                "annotations": annotations or {},
            },
            "spec": SPEC,
            "status": {**status_, "replicaDrift": {"em-inference-0": _report()}},
        }
    )


def _plan(em: EdgeModel) -> status.Plan:
    observed = status.Observed(
        inference=observe.Workload(True, True, 1, ""), broker=None, live_pods={"em-inference-0"}, jobs=[]
    )
    return status.plan(memory.recall(em), observed, now=NOW, settings=SETTINGS)


def test_a_forged_status_does_not_reach_the_policy():
    em = _em(FORGED, {memory.ANNOTATION: REMEMBERED.to_annotation()})
    recalled = memory.recall(em)
    assert recalled.status.retraining == REMEMBERED.retraining
    assert recalled.status.model.history == REMEMBERED.history
    # Drift is reported, but the remembered cooldown, doubled by the remembered rejection,
    # holds: no Job, whatever status says.
    plan = _plan(em)
    assert plan.start_job is None
    assert conditions.find(plan.status.conditions, "Retraining").reason == "Backoff"
    # The status copy is put back to what the operator remembers.
    assert plan.status.retraining.count == 2 and plan.status.retraining.consecutive_rejections == 1


def test_the_same_status_without_the_memory_would_retrain():
    """The check above can fail: with the forged values as memory, drift starts a Job."""
    forged = memory.Memory(retraining=api.RetrainingStatus.model_validate(FORGED["retraining"]))
    plan = _plan(_em(FORGED, {memory.ANNOTATION: forged.to_annotation()}))
    assert plan.start_job is not None


def test_without_the_annotation_the_status_is_taken_once_and_stored():
    stored = {
        "retraining": REMEMBERED.retraining.model_dump(by_alias=True, mode="json"),
        "model": {"history": [h.model_dump(by_alias=True, mode="json") for h in REMEMBERED.history]},
    }
    em = _em(stored)
    assert memory.recall(em) == em
    plan = _plan(em)
    assert plan.start_job is None  # the status's cooldown, taken as the memory
    apply = memory.patch(em, plan.status)
    assert apply is not None
    assert apply["kind"] == api.KIND and apply["metadata"]["name"] == "em"
    assert set(apply["metadata"]) == {"name", "namespace", "annotations"}  # nothing but the annotation
    written, error = memory.read(apply["metadata"]["annotations"])
    assert error is None and written == REMEMBERED


def test_an_unchanged_memory_writes_nothing():
    em = _em(FORGED, {memory.ANNOTATION: REMEMBERED.to_annotation()})
    assert memory.patch(em, _plan(em).status) is None


def test_a_started_job_is_remembered():
    later = NOW + datetime.timedelta(hours=2)
    em = _em({}, {memory.ANNOTATION: REMEMBERED.to_annotation()})
    observed = status.Observed(
        inference=observe.Workload(True, True, 1, ""), broker=None, live_pods={"em-inference-0"}, jobs=[]
    )
    report = {**_report(), "reportTime": later.isoformat()}
    em = EdgeModel.from_body(
        {
            "metadata": {
                "name": "em",
                "namespace": "ns",
                "uid": "u",
                "generation": 1,
                "annotations": dict(em.annotations),
            },
            "spec": SPEC,
            "status": {"replicaDrift": {"em-inference-0": report}},
        }
    )
    plan = status.plan(memory.recall(em), observed, now=later, settings=SETTINGS)
    assert plan.start_job is not None
    apply = memory.patch(em, plan.status)
    assert apply is not None
    written, _ = memory.read(apply["metadata"]["annotations"])
    assert (
        written is not None and written.retraining.count == 3 and later in written.retraining.recent_triggers
    )


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        json.dumps({"retraining": {"count": "many"}}),
        json.dumps({"retraining": {"lastTriggeredTime": "2026-11-23T11:59:00"}}),  # no time zone
        json.dumps({"history": [{"version": "1", "outcome": "Forgotten", "time": "2026-11-23T12:00:00Z"}]}),
        json.dumps({"retraining": {}, "extra": 1}),
    ],
)
def test_an_unreadable_memory_holds_the_policy_and_says_so(raw):
    em = _em(FORGED, {memory.ANNOTATION: raw})
    recalled = memory.recall(em)
    assert recalled.status_error is not None and memory.ANNOTATION in recalled.status_error
    plan = _plan(em)
    assert plan.hold and plan.start_job is None
    degraded = conditions.find(plan.status.conditions, conditions.DEGRADED)
    assert (degraded.status, degraded.reason) == ("True", status.STATUS_UNREADABLE)
    assert memory.ANNOTATION in degraded.message
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", status.STATUS_UNREADABLE)]
