"""Report policy and the reporter thread's order: training window first, then the report."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry

from edgemodel_dev import testing
from edgemodel_runtime import metrics, reporting

CHANGED = reporting.DriftReport(rmse=2.0, samples=100, detected=True, reason="Threshold", model_version="1")


def test_policy_rate_limits_values_but_sends_state_changes_at_once():
    p = reporting.ReportPolicy(interval=5.0, min_gap=1.0)
    base = reporting.DriftReport(rmse=0.5, samples=10, model_version="1")
    assert p.due(base, 0.0)
    p.sent(base, 0.0)
    assert not p.due(base, 3.0)
    assert not p.due(reporting.DriftReport(rmse=0.6, samples=11, model_version="1"), 3.0)
    assert p.due(reporting.DriftReport(rmse=0.6, samples=11, model_version="1"), 5.0)
    assert not p.due(CHANGED, 0.5)  # flapping guard
    assert p.due(CHANGED, 1.0)
    assert p.due(reporting.DriftReport(model_version="2"), 1.0)
    assert p.due(reporting.DriftReport(model_version="1", model_error="boom", rmse=0.5, samples=10), 1.0)
    assert not p.due(base, 59.0) and p.due(base, 60.0)  # heartbeat
    p.failed(60.0)
    assert not p.due(CHANGED, 61.0) and p.due(CHANGED, 65.0)


class RecordingSink:
    def __init__(self, events: list[str], fail: int = 0) -> None:
        self.events = events
        self.entries: list[object] = []
        self.fail = fail
        self.sent = threading.Event()

    def send(self, entry):
        if self.fail:
            self.fail -= 1
            raise RuntimeError("API down")
        self.events.append(f"report detected={entry.detected}")
        self.entries.append(entry)
        self.sent.set()


def test_window_is_uploaded_before_drift_is_reported():
    events: list[str] = []
    sink = RecordingSink(events)
    m = metrics.Metrics(CollectorRegistry())
    reporter = reporting.Reporter(
        sink,
        interval=0.05,
        metrics=m,
        upload_window=lambda window, state: events.append(f"window {len(window.readings)} {window.reason}"),
    ).start()
    try:
        testing.wait_for(lambda: len(events) == 1, timeout=10, what="first report")
        reporter.update(CHANGED, window=reporting.WindowHandoff(["r1", "r2"]))  # type: ignore[list-item]
        testing.wait_for(lambda: len(events) == 3, timeout=10, what="drift report")
    finally:
        reporter.stop()
    assert events == ["report detected=False", "window 2 drift", "report detected=True"]
    assert sink.entries[-1].to_wire()["reason"] == "Threshold"
    logged = {"result": "logged", "reason": "drift"}
    assert testing.sample(m.registry, "edgemodel_training_windows_total", logged) == 1


def test_failed_reports_are_counted_and_retried():
    events: list[str] = []
    sink = RecordingSink(events, fail=2)
    m = metrics.Metrics(CollectorRegistry())
    reporter = reporting.Reporter(sink, interval=0.05, metrics=m).start()
    try:
        reporter.update(CHANGED)
        testing.wait_for(lambda: bool(sink.entries), timeout=10, what="a report after failures")
    finally:
        reporter.stop()
    assert testing.sample(m.registry, "edgemodel_status_reports_total", {"result": "failed"}) == 2
    assert sink.entries[-1].detected is True


def _writes_per_minute(*, heartbeat: float | None, minutes: int = 10, rate: float = 10.0) -> float:
    """Reports a replica sends for a steady stream (errors ~ N(0, 0.5), threshold 1.5), on a virtual clock."""
    import numpy as np  # noqa: PLC0415

    from edgemodel_runtime import drift  # noqa: PLC0415

    rng = np.random.default_rng(7)
    monitor = drift.DriftMonitor(threshold=1.5, window=100, detector="page_hinkley")
    policy = reporting.ReportPolicy(interval=5.0, heartbeat=heartbeat, rmse_step=0.15)
    sent = 0
    for i in range(int(minutes * 60 * rate)):
        now = i / rate
        monitor.update(float(rng.normal(0.0, 0.5)))
        state = reporting.DriftReport(
            rmse=monitor.rmse, samples=monitor.samples, detected=monitor.detected, model_version="1"
        )
        if policy.due(state, now):
            policy.sent(state, now)
            sent += 1
    return sent / minutes


def test_a_steady_stream_writes_about_once_a_minute_without_heartbeats():
    """Peers from EndpointSlices need no heartbeat: only moves of the figures and a keep-alive are written."""
    with_heartbeats = _writes_per_minute(heartbeat=5.0)  # peers seen through their status reports
    without = _writes_per_minute(heartbeat=None)  # peers from the Service's EndpointSlices
    assert with_heartbeats >= 11.0
    assert without <= 2.0


def test_a_full_drift_window_is_reported_at_once():
    """The operator counts a replica's RMSE once its window is full: that moment is not rate-limited."""
    p = reporting.ReportPolicy(interval=5.0, rmse_step=0.15, full_window=100)
    p.sent(reporting.DriftReport(rmse=0.3, samples=10, model_version="2"), now=0.0)
    assert not p.due(reporting.DriftReport(rmse=0.31, samples=99, model_version="2"), now=1.5)
    assert p.due(reporting.DriftReport(rmse=0.31, samples=100, model_version="2"), now=1.5)
    assert p.next_check(reporting.DriftReport(rmse=0.31, samples=100, model_version="2"), now=0.5) == 0.5
