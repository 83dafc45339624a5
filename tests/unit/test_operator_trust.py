"""Issue 12, item 2: the policy's memory and the replicas' reports, read defensively. Pure, no I/O."""

from __future__ import annotations

import datetime

import prometheus_client
import pytest

from edgemodel import api
from edgemodel_operator import conditions, metrics, observe, resource, status, summary, trust
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
# A status after one promotion and one drift retrain: a cooldown runs, the breaker counts one.
REMEMBERED = api.EdgeModelStatus(
    observed_generation=1,
    model=api.ModelStatus(history=[api.ModelHistoryEntry(version="1", outcome="Promoted", time=NOW)]),
    retraining=api.RetrainingStatus(
        count=2,
        last_triggered_time=NOW - datetime.timedelta(seconds=60),
        recent_triggers=[NOW - datetime.timedelta(seconds=60)],
        consecutive_rejections=1,
    ),
).model_dump(by_alias=True, mode="json")


def _report(*, rmse=3.0, detected=True, ahead: float = 0.0) -> dict:
    return api.ReplicaDriftEntry(
        rmse=rmse,
        samples=100,
        detected=detected,
        model_version="1",
        report_time=NOW + datetime.timedelta(seconds=ahead),
        reason="Threshold" if detected else None,
    ).model_dump(by_alias=True, mode="json")


def _em(status_: dict) -> EdgeModel:
    return EdgeModel.from_body(
        {
            "metadata": {"name": "em", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": SPEC,
            "status": status_,
        }
    )


def _observed(pods=("em-inference-0",)) -> status.Observed:
    return status.Observed(inference=UP, broker=None, live_pods=set(pods), jobs=[])


# ------------------------------------------------------------------ an unreadable status


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("retraining", {"consecutiveRejections": "none", "count": 2}),
        ("retraining", {"recentTriggers": ["yesterday"]}),
        # The API server's date-time format admits a time with no zone; the operator cannot compare it.
        ("retraining", {"lastTriggeredTime": "2026-11-23T11:59:00", "count": 2}),
        ("model", {"history": [{"version": "1", "outcome": "Forgotten", "time": "2026-11-23T12:00:00Z"}]}),
        ("replicas", "three"),
    ],
)
def test_an_unreadable_status_holds_the_policy_and_says_so(field, value):
    stored = {**REMEMBERED, field: value, "replicaDrift": {"em-inference-0": _report()}}
    em = _em(stored)
    assert em.status_error is not None and f"status.{field}" in em.status_error

    plan = status.plan(em, _observed(), now=NOW, settings=SETTINGS)

    # Drift is reported, yet nothing starts, nothing is removed, and only conditions are written.
    assert plan.hold and plan.start_job is None and plan.gone_replicas == ()
    degraded = conditions.find(plan.status.conditions, conditions.DEGRADED)
    assert degraded is not None
    assert (degraded.status, degraded.reason) == ("True", status.STATUS_UNREADABLE)
    assert f"status.{field}" in degraded.message and "held" in degraded.message
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", status.STATUS_UNREADABLE)]


def test_an_unreadable_status_warns_once_and_clears_when_repaired():
    stored = {**REMEMBERED, "retraining": {"count": "x"}}
    first = status.plan(_em(stored), _observed(), now=NOW, settings=SETTINGS)
    conds = [c.model_dump(by_alias=True, mode="json") for c in first.status.conditions]
    # The next pass reads back the condition it wrote: no second Event.
    second = status.plan(_em({**stored, "conditions": conds}), _observed(), now=NOW, settings=SETTINGS)
    assert second.hold and second.events == ()
    # Repaired: the remembered cooldown still holds the drift retrain back, and Degraded clears.
    repaired = status.plan(_em({**REMEMBERED, "conditions": conds}), _observed(), now=NOW, settings=SETTINGS)
    assert not repaired.hold and repaired.start_job is None
    degraded = conditions.find(repaired.status.conditions, conditions.DEGRADED)
    assert degraded is not None and degraded.status == "False"


def test_an_empty_status_is_not_an_error():
    for stored in ({}, None):
        st, error, bad = resource.parse_status(stored)
        assert (st, error, bad) == (api.EdgeModelStatus(), None, ())


def test_a_status_that_is_not_an_object_is_an_error():
    _, error, _ = resource.parse_status(["x"])
    assert error == "status is a list, not an object"
    _, error, _ = resource.parse_status({"replicaDrift": ["x"]})
    assert error == "status.replicaDrift: not an object"


def test_conditions_that_still_parse_survive_an_unreadable_status():
    good = {
        "type": "Ready",
        "status": "True",
        "reason": "Serving",
        "lastTransitionTime": "2026-11-23T11:00:00Z",
    }
    st, error, _ = resource.parse_status({"replicas": "x", "conditions": [good, {"type": "bad"}]})
    assert error is not None
    assert [c.type for c in st.conditions] == ["Ready"]


# ------------------------------------------------------------------ replica reports


def test_an_unreadable_report_is_ignored_removed_and_counted_not_an_error():
    naive = {**_report(), "reportTime": "2026-11-23T12:00:00"}
    em = _em(
        {
            **REMEMBERED,
            "replicaDrift": {
                "em-inference-0": _report(rmse=0.4, detected=False),
                "em-inference-1": {"samples": -5, "reportTime": "2026-11-23T12:00:00Z"},
                "em-inference-2": naive,
            },
        }
    )
    assert em.status_error is None
    assert em.malformed_reports == ("em-inference-1", "em-inference-2")
    plan = status.plan(
        em, _observed(("em-inference-0", "em-inference-1", "em-inference-2")), now=NOW, settings=SETTINGS
    )
    assert not plan.hold
    assert plan.gone_replicas == ("em-inference-1", "em-inference-2")
    assert plan.ignored_reports == (
        ("em-inference-1", summary.MALFORMED),
        ("em-inference-2", summary.MALFORMED),
    )
    assert set(plan.status.replica_drift) == {"em-inference-0"}


@pytest.mark.parametrize(
    ("ahead", "ignored"),
    [
        (0.0, False),
        (SETTINGS.report_skew_seconds, False),
        (SETTINGS.report_skew_seconds + 1, True),
        (1e8, True),
    ],
)
def test_a_report_from_the_future_is_ignored_beyond_the_skew(ahead, ignored):
    # A forged "drift detected" in 2030 must neither start a retrain nor stay live for years.
    clear = {**REMEMBERED, "retraining": {"count": 1}}
    plan = status.plan(
        _em({**clear, "replicaDrift": {"em-inference-0": _report(ahead=ahead)}}),
        _observed(),
        now=NOW,
        settings=SETTINGS,
    )
    if ignored:
        assert plan.start_job is None
        assert plan.ignored_reports == (("em-inference-0", summary.FUTURE_REPORT_TIME),)
        assert plan.gone_replicas == ("em-inference-0",)
        assert plan.status.replica_drift == {}
        assert not plan.status.drift.detected
    else:
        assert plan.start_job is not None and plan.start_job.kind == "retrain"
        assert plan.ignored_reports == ()


def test_a_report_for_a_pod_that_is_not_a_live_replica_is_ignored():
    stored = {**REMEMBERED, "retraining": {"count": 1}, "replicaDrift": {"invented-0": _report()}}
    plan = status.plan(_em(stored), _observed(("em-inference-0",)), now=NOW, settings=SETTINGS)
    assert plan.start_job is None
    assert plan.ignored_reports == (("invented-0", summary.NOT_A_LIVE_REPLICA),)
    assert plan.gone_replicas == ("invented-0",)


def test_only_pods_the_inference_statefulset_controls_are_replicas():
    def pod(name, owners):
        return {"metadata": {"name": name, "ownerReferences": owners}}

    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "em-inference", "controller": True}
    pods = [
        pod("em-inference-0", [sts]),
        pod("em-inference-1", [{**sts, "name": "other-inference"}]),
        pod("hand-made", []),
        pod("em-inference-2", [{**sts, "kind": "ReplicaSet"}]),
    ]
    assert summary.replica_pods(pods, statefulset="em-inference") == {"em-inference-0"}


def test_the_ignored_reports_metric_counts_by_reason():
    registry = prometheus_client.CollectorRegistry()
    m = metrics.OperatorMetrics(registry)
    m.drift_reports_ignored.labels(summary.FUTURE_REPORT_TIME).inc()
    m.drift_reports_ignored.labels(summary.FUTURE_REPORT_TIME).inc()
    value = registry.get_sample_value(
        "edgemodel_operator_drift_reports_ignored_total", {"reason": summary.FUTURE_REPORT_TIME}
    )
    assert value == 2.0


def test_report_skew_is_a_setting():
    assert Settings.load(env={"EDGEMODEL_REPORT_SKEW_SECONDS": "5"}).report_skew_seconds == 5.0


# ------------------------------------------------------------------ no confused deputy (item 4)

OWN = Settings(image="ghcr.io/edgemodel/edgemodel:0.1.0")


def _with(**spec) -> EdgeModel:
    return EdgeModel.from_body(
        {
            "metadata": {"name": "em", "namespace": "ns", "uid": "u", "generation": 3},
            "spec": {**SPEC, **spec},
        }
    )


@pytest.mark.parametrize(
    ("image", "extra", "allowed"),
    [
        ("ghcr.io/edgemodel/edgemodel:0.2.0", (), True),
        ("ghcr.io/edgemodel/edgemodel@sha256:0123", (), True),
        ("ghcr.io/edgemodel/edgemodel", (), True),
        ("ghcr.io/edgemodel/edgemodel-evil:0.1.0", (), False),
        ("ghcr.io/edgemodel/edgemodel/evil:0.1.0", (), False),
        ("evil.example/ghcr.io/edgemodel/edgemodel:0.1.0", (), False),
        ("edgemodel:0.1.0", (), False),  # no registry is filled in: docker.io/library is not ghcr.io
        ("registry.example:5000/ml/runtime:1", ("registry.example:5000/ml/runtime",), True),
        ("registry.example:5000/ml/runtime:1", ("registry.example:5000/ml/",), True),
        ("registry.example:5000/mlx/runtime:1", ("registry.example:5000/ml/",), False),
        ("registry.example:5000/ml/", ("registry.example:5000/ml/",), False),
    ],
)
def test_images_only_from_the_operators_repository_or_the_allow_list(image, extra, allowed):
    settings = Settings(image=OWN.image, allowed_image_repositories=extra)
    assert trust.image_allowed(image, settings) is allowed
    refusal = trust.image_refusal(_with(runtime={"image": image}), settings)
    assert (refusal is None) is allowed


def test_no_image_in_the_spec_is_the_operators_own():
    assert trust.image_refusal(_with(), OWN) is None


def test_a_refused_image_names_itself_and_the_allowed_repositories():
    refusal = trust.image_refusal(_with(runtime={"image": "evil.example/miner:1"}), OWN)
    assert refusal is not None and refusal.reason == "ImageNotAllowed"
    assert "evil.example/miner:1" in refusal.message and "ghcr.io/edgemodel/edgemodel" in refusal.message


def test_allowed_image_repositories_from_the_environment_as_the_chart_sets_them():
    settings = Settings.load(
        env={"EDGEMODEL_ALLOWED_IMAGE_REPOSITORIES": "ghcr.io/edgemodel/edgemodel,reg.example/"}
    )
    assert settings.allowed_image_repositories == ("ghcr.io/edgemodel/edgemodel", "reg.example/")


BROKER = {"host": "mqtt.site.example", "credentialsSecret": {"name": "site"}}


@pytest.mark.parametrize(
    ("secret", "refused"),
    [
        (None, True),
        ({"metadata": {"name": "site"}}, True),
        ({"metadata": {"name": "site", "labels": {"edgeml.dev/use": "mlflow"}}}, True),
        ({"metadata": {"name": "site", "labels": {"edgeml.dev/use": "broker"}}}, False),
    ],
)
def test_a_credentials_secret_must_opt_in_with_a_label(secret, refused):
    refusal = trust.secret_refusal(_with(broker=BROKER), secret)
    assert (refusal is not None) is refused
    if refusal is not None:
        assert refusal.reason == "SecretNotOptedIn"
        assert "site" in refusal.message and "edgeml.dev/use=broker" in refusal.message


def test_no_credentials_secret_needs_no_label():
    assert trust.secret_refusal(_with(), None) is None
    assert trust.secret_refusal(_with(broker={"host": "mqtt.site.example"}), None) is None


def test_a_refused_spec_acts_on_nothing_and_warns_once_per_reason():
    em = _with(runtime={"image": "evil.example/miner:1"})
    refusal = trust.image_refusal(em, OWN)
    assert refusal is not None
    plan = status.refused(em, refusal, now=NOW)
    assert plan.hold and plan.start_job is None and plan.gone_replicas == ()
    degraded = conditions.find(plan.status.conditions, conditions.DEGRADED)
    assert degraded is not None
    assert (degraded.status, degraded.reason, degraded.observed_generation) == ("True", "ImageNotAllowed", 3)
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "ImageNotAllowed")]
    # The next pass, same refusal: no second Event.
    conds = [c.model_dump(by_alias=True, mode="json") for c in plan.status.conditions]
    again = EdgeModel.from_body(
        {
            "metadata": {"name": "em", "namespace": "ns", "uid": "u", "generation": 3},
            "spec": {**SPEC, "runtime": {"image": "evil.example/miner:1"}},
            "status": {"conditions": conds},
        }
    )
    assert status.refused(again, refusal, now=NOW).events == ()
