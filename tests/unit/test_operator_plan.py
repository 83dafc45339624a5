"""The planner, drift summary, retraining policy and conditions: pure, no I/O."""

from __future__ import annotations

import datetime

from edgemodel import api, contracts
from edgemodel_operator import conditions, observe, policy, status, summary
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings

NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)
SETTINGS = Settings()
SPEC = {
    "sensors": {"topics": ["plant/+/t"], "features": ["temperature"], "target": "temperature"},
    "drift": {"threshold": 1.0, "window": 100},
    "retraining": {"cooldownSeconds": 300, "maxPerHour": 2, "maxConsecutiveRejections": 2},
}
UP = observe.Workload(True, True, 1, "")


def _entry(rmse, samples=100, detected=False, version="1", age=0.0, reason=None):
    return api.ReplicaDriftEntry(
        rmse=rmse,
        samples=samples,
        detected=detected,
        model_version=version,
        report_time=NOW - datetime.timedelta(seconds=age),
        reason=reason or ("Threshold" if detected else None),
    )


def _em(status_: dict | None = None, generation: int = 1, annotations=None, spec=SPEC) -> EdgeModel:
    return EdgeModel.from_body(
        {
            "metadata": {
                "name": "em",
                "namespace": "ns",
                "uid": "u",
                "generation": generation,
                "annotations": annotations or {},
            },
            "spec": spec,
            "status": status_ or {},
        }
    )


def _status(**fields) -> dict:
    base = api.EdgeModelStatus(
        observed_generation=1,
        model=api.ModelStatus(history=[api.ModelHistoryEntry(version="1", outcome="Promoted", time=NOW)]),
    )
    return base.model_copy(update=fields).model_dump(by_alias=True, mode="json")


def _observed(pods=("p1",), jobs=()):
    return status.Observed(inference=UP, broker=None, live_pods=set(pods), jobs=list(jobs))


def _job(name, *, finished=None, result=None, created=NOW, done=NOW, kind="retrain"):
    return observe.JobInfo(
        name=name,
        kind=kind,
        trigger="DriftDetected",
        created=created,
        active=finished is None,
        finished=finished,
        finished_time=done if finished else None,
        result=result,
        failure="BackoffLimitExceeded: x" if finished == "Failed" else "",
    )


def test_summary_takes_the_worst_replica_with_a_full_window():
    s = summary.summarise(
        {"a": _entry(3.0, samples=20, detected=True), "b": _entry(0.5), "c": _entry(0.8)},
        live_pods={"a", "b", "c"},
        threshold=1.0,
        window=100,
        now=NOW,
        stale_after=datetime.timedelta(minutes=5),
    )
    assert (s.status.replica, s.status.rmse, s.status.detected, s.eligible) == ("c", 0.8, False, 2)


def test_summary_counts_a_change_detector_before_the_window_fills():
    s = summary.summarise(
        {"a": _entry(1.4, samples=30, detected=True, reason="ChangeDetector"), "b": _entry(0.5)},
        live_pods={"a", "b"},
        threshold=1.0,
        window=100,
        now=NOW,
        stale_after=datetime.timedelta(minutes=5),
    )
    assert s.status.detected and s.status.replica == "a"


def test_summary_drops_gone_and_ignores_stale_and_superseded_replicas():
    s = summary.summarise(
        {
            "gone": _entry(9.0, detected=True),
            "stale": _entry(5.0, detected=True, age=900),
            "old": _entry(4.0, detected=True, version="1"),
            "new": _entry(0.2, version="2"),
        },
        live_pods={"stale", "old", "new"},
        threshold=1.0,
        window=100,
        now=NOW,
        stale_after=datetime.timedelta(minutes=5),
        expected_version="2",
    )
    assert s.gone == ("gone",)
    assert not s.status.detected
    assert s.serving_version in ("1", "2")


def test_policy_cooldown_rate_limit_and_backoff():
    spec = api.EdgeModelSpec.model_validate(SPEC)
    r = api.RetrainingStatus(last_triggered_time=NOW - datetime.timedelta(seconds=100))
    v = policy.should_retrain(
        spec,
        r,
        wanted=True,
        wanted_reason="DriftDetected",
        active_job=None,
        now=NOW,
        max_backoff=datetime.timedelta(hours=6),
    )
    assert (v.start, v.reason) == (False, "Cooldown")
    r = api.RetrainingStatus(
        last_triggered_time=NOW - datetime.timedelta(seconds=400),
        recent_triggers=[NOW - datetime.timedelta(minutes=50), NOW - datetime.timedelta(minutes=7)],
    )
    v = policy.should_retrain(
        spec,
        r,
        wanted=True,
        wanted_reason="DriftDetected",
        active_job=None,
        now=NOW,
        max_backoff=datetime.timedelta(hours=6),
    )
    assert (v.start, v.reason) == (False, "RateLimited")
    r = api.RetrainingStatus(
        last_triggered_time=NOW - datetime.timedelta(seconds=400), consecutive_failures=2
    )
    assert policy.backoff(spec.retraining, r, max_backoff=datetime.timedelta(hours=6)) == datetime.timedelta(
        seconds=1200
    )
    v = policy.should_retrain(
        spec,
        r,
        wanted=True,
        wanted_reason="DriftDetected",
        active_job=None,
        now=NOW,
        max_backoff=datetime.timedelta(hours=6),
    )
    assert (v.start, v.reason) == (False, "Backoff")
    v = policy.should_retrain(
        spec,
        api.RetrainingStatus(),
        wanted=True,
        wanted_reason="DriftDetected",
        active_job="em-retrain-1",
        now=NOW,
        max_backoff=datetime.timedelta(hours=6),
    )
    assert (v.start, v.reason) == (False, "JobActive")


def test_plan_starts_one_job_on_drift_and_records_it():
    em = _em(_status(replica_drift={"p1": _entry(2.0, detected=True)}))
    p = status.plan(em, _observed(), now=NOW, settings=SETTINGS)
    assert p.start_job == status.JobRequest(
        "retrain", 1, "DriftDetected", window_since=NOW.timestamp() - SETTINGS.window_since_slack_seconds
    )
    assert p.status.retraining.count == 1 and p.status.retraining.last_triggered_time == NOW
    assert conditions.find(p.status.conditions, "Drifted").status == "True"
    assert conditions.find(p.status.conditions, "Retraining").status == "True"
    assert "RetrainingStarted" in [e.reason for e in p.events]
    # Planning again on the new status, with the Job now active, starts nothing more.
    em2 = _em(p.status.model_dump(by_alias=True, mode="json"))
    p2 = status.plan(em2, _observed(jobs=[_job("em-retrain-1")]), now=NOW, settings=SETTINGS)
    assert p2.start_job is None and p2.status.retraining.count == 1


def test_a_retrain_while_the_same_drift_lasts_reads_the_windows_since_the_drift_began():
    """After a rejected challenger the drift stays on: the next retrain reads every window this
    drift logged, not only those after its own start (a slow stream may log none in time)."""
    began = NOW - datetime.timedelta(hours=3)
    drifted = api.Condition(type="Drifted", status="True", reason="DriftDetected", last_transition_time=began)
    st = _status(
        replica_drift={"p1": _entry(2.0, detected=True)},
        conditions=[drifted],
        retraining=api.RetrainingStatus(count=1, consecutive_rejections=1, last_completed_time=began),
    )
    p = status.plan(_em(st), _observed(), now=NOW, settings=SETTINGS)
    assert p.start_job is not None and p.start_job.kind == "retrain"
    assert p.start_job.window_since == began.timestamp() - SETTINGS.window_since_slack_seconds
    assert conditions.find(p.status.conditions, "Drifted").last_transition_time == began


def test_plan_folds_a_promotion_once():
    st = _status(
        replica_drift={"p1": _entry(2.0, detected=True)},
        retraining=api.RetrainingStatus(count=1, last_job="em-retrain-1", last_triggered_time=NOW),
    )
    result = contracts.TrainingResult(
        outcome="Promoted",
        reason="BeatChampion: yes",
        model_name="em",
        version="2",
        champion_version="2",
        champion_rmse=2.0,
        holdout_rmse=0.4,
    )
    done = _job("em-retrain-1", finished="Complete", result=result)
    p = status.plan(_em(st), _observed(jobs=[done]), now=NOW, settings=SETTINGS)
    assert [h.version for h in p.status.model.history] == ["1", "2"]
    assert p.status.model.history[-1].previous_version == "1"
    assert conditions.find(p.status.conditions, "Retraining").reason == "Promoted"
    p2 = status.plan(
        _em(p.status.model_dump(by_alias=True, mode="json")),
        _observed(jobs=[done]),
        now=NOW,
        settings=SETTINGS,
    )
    assert [h.version for h in p2.status.model.history] == ["1", "2"]
    # The replica still serving version 1 cannot trigger another retrain.
    assert p2.start_job is None


def test_plan_without_a_model_bootstraps_and_is_not_ready():
    p = status.plan(_em(), _observed(), now=NOW, settings=SETTINGS)
    assert p.start_job is not None and p.start_job.kind == "bootstrap"
    ready = conditions.find(p.status.conditions, "Ready")
    assert (ready.status, ready.reason) == ("False", "NoModel")


def test_plan_degrades_after_rejections_and_a_spec_change_clears_it():
    st = _status(
        replica_drift={"p1": _entry(2.0, detected=True)},
        retraining=api.RetrainingStatus(count=2, consecutive_rejections=2),
    )
    p = status.plan(_em(st), _observed(), now=NOW, settings=SETTINGS)
    assert p.start_job is None
    assert conditions.find(p.status.conditions, "Degraded").status == "True"
    p = status.plan(_em(st, generation=2), _observed(), now=NOW, settings=SETTINGS)
    assert p.start_job is not None
    assert conditions.find(p.status.conditions, "Degraded").status == "False"


def test_plan_rolls_back_a_version_clearly_worse_live():
    history = [
        api.ModelHistoryEntry(version="1", outcome="Promoted", time=NOW),
        api.ModelHistoryEntry(
            version="2", outcome="Promoted", time=NOW, champion_rmse=1.0, previous_version="1"
        ),
    ]
    st = _status(model=api.ModelStatus(history=history), replica_drift={"p1": _entry(2.0, version="2")})
    p = status.plan(_em(st), _observed(), now=NOW, settings=SETTINGS)
    assert p.start_job == status.JobRequest("rollback", 2, "RollbackDue", "1")


def test_condition_transition_time_changes_only_on_a_flip():
    first = conditions.merge([], [("Ready", "False", "NoModel", "")], generation=1, now=NOW)
    later = NOW + datetime.timedelta(minutes=5)
    same = conditions.merge(first, [("Ready", "False", "InferenceUnavailable", "x")], generation=2, now=later)
    assert same[0].last_transition_time == NOW and same[0].reason == "InferenceUnavailable"
    flipped = conditions.merge(same, [("Ready", "True", "Serving", "")], generation=2, now=later)
    assert flipped[0].last_transition_time == later


def test_requeue_after_is_when_the_clock_alone_changes_the_plan():
    # No reports and nothing held back: only events can change the plan.
    assert status.plan(_em(_status()), _observed(), now=NOW, settings=SETTINGS).requeue_after is None
    # The oldest live report goes stale stale_report_seconds after it was made (+1 s margin).
    reports = {"p1": _entry(0.1, age=100), "p2": _entry(0.1, age=40)}
    p = status.plan(_em(_status(replica_drift=reports)), _observed(("p1", "p2")), now=NOW, settings=SETTINGS)
    assert p.requeue_after == SETTINGS.stale_report_seconds - 100 + 1
    # A drifted EdgeModel held back by the cooldown is looked at again when it ends.
    held = _status(
        replica_drift={"p1": _entry(2.0, detected=True)},
        retraining=api.RetrainingStatus(
            count=1, last_triggered_time=NOW - datetime.timedelta(seconds=280), last_outcome="Rejected"
        ),
    )
    p = status.plan(_em(held), _observed(), now=NOW, settings=SETTINGS)
    assert p.start_job is None
    assert p.requeue_after == 300 - 280 + 1
    # Never a busy loop, even when a moment is already past.
    old = {"p1": _entry(0.1, age=SETTINGS.stale_report_seconds)}
    p = status.plan(_em(_status(replica_drift=old)), _observed(), now=NOW, settings=SETTINGS)
    assert p.requeue_after == 1.0
