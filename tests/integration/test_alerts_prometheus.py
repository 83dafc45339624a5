"""The chart's Drifted alert in a real Prometheus, on the operator and kube-state-metrics.

Prometheus (Debian's) scrapes the operator's /metrics and a kube-state-metrics that runs
out of cluster against the harness API server with the custom-resource-state config of
deploy/alerts/kube-state-metrics-edgemodel.yaml. Its rules are the chart's PrometheusRule
rendered by the pinned helm, with ``prometheusRule.driftedFor`` set short through the
chart's own value; scrape and evaluation run every second.

An EdgeModel is made Drifted for real, as the operator tests do: a runtime report of an
RMSE over the threshold in status.replicaDrift. EdgeModelDriftedTooLong must go pending,
then firing no sooner than its ``for``, and resolve once a promoted version reports a
healthy RMSE. Every step waits on Prometheus's /api/v1/alerts or a query.
"""

from __future__ import annotations

import datetime
import re
import time
from typing import Any

import pytest
import yaml

from edgemodel_dev.harness import monitoring, processes
from tests.alerts import chart
from tests.integration import edgemodels

pytestmark = pytest.mark.cluster

ALERT = "EdgeModelDriftedTooLong"
DRIFTED_FOR = 5  # seconds, the chart's prometheusRule.driftedFor here
KSM_CONFIG = chart.CHART.parent.parent / "deploy" / "alerts" / "kube-state-metrics-edgemodel.yaml"
SPEC = edgemodels.spec(scaling={"minReplicas": 1, "maxReplicas": 1}, retraining={"cooldownSeconds": 300})


def _custom_resource_state_config() -> str:
    (configmap,) = [d for d in yaml.safe_load_all(KSM_CONFIG.read_text()) if d and d["kind"] == "ConfigMap"]
    text: str = configmap["data"]["config.yaml"]
    return text


def _ours(alerts: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    return [
        a for a in alerts
        if a["labels"].get("alertname") == ALERT and a["labels"].get("namespace") == namespace
    ]  # fmt: skip


def _epoch(rfc3339: str) -> float:
    """Prometheus' timestamps (nanosecond fractions, ``Z``) as epoch seconds."""
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", rfc3339).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(stamp).timestamp()


def _value(prom: monitoring.Prometheus, promql: str) -> float | None:
    result = prom.query(promql)
    return float(result[0]["value"][1]) if result else None


def test_drifted_alert_goes_pending_then_firing_and_resolves_after_the_heal(
    cluster, api_client, namespace, operators, tmp_path, record_property
):
    groups = chart.rule_groups(tmp_path / "helm-home", f"prometheusRule.driftedFor={DRIFTED_FOR}s")
    (rule,) = [r for g in groups for r in g["rules"] if r.get("alert") == ALERT]
    assert rule["for"] == f"{DRIFTED_FOR}s"

    op = operators()
    ksm = monitoring.KubeStateMetrics(tmp_path / "ksm", cluster.kubeconfig, _custom_resource_state_config())
    prom = monitoring.Prometheus(
        tmp_path / "prometheus",
        {"edgemodel-operator": [f"127.0.0.1:{op.metrics_port}"], "kube-state-metrics": [ksm.address]},
        groups,
        interval="1s",
    )
    ksm.start()
    try:
        prom.start()
        try:
            _scenario(prom, api_client, namespace, record_property)
        except BaseException:
            print(f"--- prometheus log\n{prom.log_tail()}\n--- kube-state-metrics log\n{ksm.log_tail()}")
            raise
        finally:
            prom.stop()
    finally:
        ksm.stop()


def _scenario(prom: monitoring.Prometheus, api_client, namespace: str, record_property) -> None:
    processes.wait_until(
        lambda: prom.targets_up() == {"edgemodel-operator": True, "kube-state-metrics": True},
        timeout=30, what="Prometheus scraping the operator and kube-state-metrics",
    )  # fmt: skip
    edgemodels.create(api_client, namespace, "em", SPEC)
    pod = edgemodels.serving(api_client, namespace, "em")

    op_drifted = (
        f'edgemodel_condition{{namespace="{namespace}", edgemodel="em", type="Drifted", status="%s"}}'
    )
    ksm_drifted = (
        f'kube_edgemodel_status_condition{{namespace="{namespace}", name="em", type="Drifted", status="%s"}}'
    )

    # Healthy: both sources say Drifted=False, and no alert.
    edgemodels.wait_condition(api_client, namespace, "em", "Drifted", "False")
    processes.wait_until(lambda: _value(prom, op_drifted % "False") == 1, timeout=30,
                         what="the operator's Drifted=False in Prometheus")  # fmt: skip
    processes.wait_until(lambda: _value(prom, ksm_drifted % "False") == 1, timeout=30,
                         what="kube-state-metrics' Drifted=False in Prometheus")  # fmt: skip
    assert _ours(prom.alerts(), namespace) == []

    # Drift: the runtime reports an RMSE over the threshold; the operator sets Drifted=True.
    t0 = time.monotonic()
    edgemodels.report(api_client, namespace, "em", pod, rmse=2.5, samples=100, detected=True, version="1")
    edgemodels.wait_condition(api_client, namespace, "em", "Drifted", "True")
    t_drifted = time.monotonic()

    states: list[tuple[float, str]] = []
    seen_at: dict[str, tuple[float, float]] = {}  # state: (first seen, wall clock; activeAt)

    def seen(state: str) -> bool:
        alerts = _ours(prom.alerts(), namespace)
        assert len(alerts) <= 1, alerts
        if alerts:
            a = alerts[0]
            if not states or states[-1][1] != a["state"]:
                states.append((time.monotonic(), a["state"]))
                seen_at[a["state"]] = (time.time(), _epoch(a["activeAt"]))
            assert a["labels"] == {"alertname": ALERT, "namespace": namespace, "edgemodel": "em",
                                   "severity": "warning"}, a  # fmt: skip
            assert a["annotations"]["summary"] == f"EdgeModel {namespace}/em has drifted for {DRIFTED_FOR}s"
        return bool(states) and states[-1][1] == state

    processes.wait_until(lambda: seen("pending"), timeout=30, interval=0.2, what=f"{ALERT} pending")
    processes.wait_until(lambda: seen("firing"), timeout=30, interval=0.2, what=f"{ALERT} firing")
    assert [s for _, s in states] == ["pending", "firing"], states
    pending_for = states[1][0] - states[0][0]
    # Firing waits the rule's `for` after the alert turned pending (Prometheus' activeAt,
    # the same clock): seen late on a loaded machine only makes this difference larger.
    seen_firing, active_at = seen_at["firing"]
    assert seen_firing - active_at >= DRIFTED_FOR, seen_at
    # kube-state-metrics, reading the EdgeModel's status from the API server, agrees.
    processes.wait_until(lambda: _value(prom, ksm_drifted % "True") == 1, timeout=30,
                         what="kube-state-metrics' Drifted=True in Prometheus")  # fmt: skip
    assert _value(prom, f'ALERTS{{alertname="{ALERT}", namespace="{namespace}", alertstate="firing"}}') == 1

    # Heal: the retraining Job promotes version 2 and the replica reports a healthy RMSE with it.
    processes.wait_until(
        lambda: "em-retrain-2" in [j.metadata.name for j in edgemodels.jobs(api_client, namespace, "em")],
        timeout=30, what="the retraining Job",
    )  # fmt: skip
    assert _ours(prom.alerts(), namespace)[0]["state"] == "firing"  # still firing while it retrains
    edgemodels.finish_job(api_client, namespace, "em-retrain-2",
                          edgemodels.training_result("Promoted", "2", champion_version="1"), 0)  # fmt: skip
    edgemodels.wait_condition(api_client, namespace, "em", "Retraining", "False")
    t_heal = time.monotonic()
    edgemodels.report(api_client, namespace, "em", pod, rmse=0.3, samples=100, detected=False, version="2")
    st = edgemodels.wait_condition(api_client, namespace, "em", "Drifted", "False")
    assert st.model.version == "2"
    processes.wait_until(lambda: not _ours(prom.alerts(), namespace), timeout=30, interval=0.2,
                         what=f"{ALERT} resolved")  # fmt: skip
    t_resolved = time.monotonic()
    assert _value(prom, f'ALERTS{{alertname="{ALERT}", namespace="{namespace}"}}') is None
    processes.wait_until(lambda: _value(prom, ksm_drifted % "False") == 1, timeout=30,
                         what="kube-state-metrics' Drifted=False again")  # fmt: skip

    timeline = {
        "drift_reported_to_Drifted_s": round(t_drifted - t0, 2),
        "Drifted_to_pending_s": round(states[0][0] - t_drifted, 2),
        "pending_to_firing_s": round(pending_for, 2),
        "heal_reported_to_resolved_s": round(t_resolved - t_heal, 2),
    }
    record_property("alert_timeline", timeline)
    print(f"{ALERT} timeline: {timeline}")
