"""Drift on a real broker and MLflow: an abrupt shift is caught, a stationary stream is not.

When drift is detected the training window lands in MLflow before the report goes out,
marking where the plant changed; once enough readings of the changed plant have arrived
the window is logged again, for the trainer to learn the plant as it is now.
"""

from __future__ import annotations

import csv
import io
import json

import pytest

from edgemodel import contracts
from edgemodel.registry import client as mlflow_client
from edgemodel_dev import testing
from edgemodel_runtime import app, window

pytestmark = [pytest.mark.mqtt, pytest.mark.mlflow]

DEVICES, PER_DEVICE, SHIFT_AT = 2, 600, 300
# Errors of about two thresholds after the shift: the change detector fires within a few
# outcomes, the rolling RMSE over 100 outcomes only after about 25.
SHIFT_SIZE = 1.5


def _window_runs(uri: str, name: str) -> list:
    c = mlflow_client(uri)
    experiment = c.get_experiment_by_name(contracts.window_experiment(name))
    if experiment is None:
        return []
    return c.search_runs([experiment.experiment_id])


def _run(mosquitto_broker, mlflow_server, name: str, shift_at: int | None):
    version = testing.publish_model(mlflow_server.uri, name)
    windows_at_report: list[int] = []

    def on_send(entry) -> None:
        if entry.detected:
            windows_at_report.append(len(_window_runs(mlflow_server.uri, name)))

    sink = testing.RecordingSink(on_send)
    settings = testing.for_broker(
        mosquitto_broker,
        mlflow_server.uri,
        name,
        batch_max_size=16,
        training_window=500,
        edgemodel=f"default/{name}",
    )
    runtime = app.App(settings, status_sink=sink).start()
    publisher = testing.publisher_for(mosquitto_broker, name)
    try:
        assert runtime.wait_connected(30)
        testing.wait_for(lambda: runtime.holder.state.version == version, timeout=60, what="model load")
        data = testing.readings(DEVICES, PER_DEVICE, seed=9, shift_at=shift_at, shift_size=SHIFT_SIZE)
        infos = [publisher.publish(f"{name}/sensors/{p['device']}", json.dumps(p)) for p in data]
        for info in infos:
            info.wait_for_publish(30)
        reg = runtime.metrics.registry
        testing.wait_for(
            lambda: testing.sample(reg, "edgemodel_readings_total") == len(data),
            timeout=60,
            what="all readings",
        )
        if shift_at is not None:
            testing.wait_for(
                lambda: any(e.detected for e in sink.snapshot()), timeout=30, what="drift report"
            )
            testing.wait_for(
                lambda: len(_window_runs(mlflow_server.uri, name)) >= 2,
                timeout=30,
                what="the window with the changed plant",
            )
        return runtime, sink, windows_at_report, data
    finally:
        publisher.close()
        runtime.stop()


def test_abrupt_shift_is_detected_and_the_window_is_logged_first(
    mosquitto_broker, mlflow_server, unique_name
):
    runtime, sink, windows_at_report, data = _run(mosquitto_broker, mlflow_server, unique_name, SHIFT_AT)
    reg = runtime.metrics.registry
    assert testing.sample(reg, "edgemodel_drift_detections_total", {"reason": "ChangeDetector"}) >= 1
    assert testing.sample(reg, "edgemodel_drift_detected") == 1
    first = next(e for e in sink.snapshot() if e.detected)
    # The report carries the newest state: by the time it goes out the threshold may confirm it.
    assert first.reason in ("ChangeDetector", "Threshold")
    assert first.model_version == runtime.holder.state.version
    # The window was in MLflow when the drift report was sent.
    assert windows_at_report and windows_at_report[0] >= 1

    runs = _window_runs(mlflow_server.uri, unique_name)
    run = sorted(runs, key=lambda r: r.info.start_time)[0]
    tags = run.data.tags
    assert tags[contracts.WINDOW_TAGS["kind"]] == contracts.WINDOW_KIND
    assert tags[contracts.WINDOW_TAGS["reason"]] == "drift"
    assert tags[contracts.WINDOW_TAGS["edgemodel"]] == f"default/{unique_name}"
    assert tags[contracts.WINDOW_TAGS["model_version"]] == first.model_version
    c = mlflow_client(mlflow_server.uri)
    local = c.download_artifacts(run.info.run_id, contracts.WINDOW_ARTIFACT)
    with open(local) as fh:
        rows = list(csv.reader(io.StringIO(fh.read())))
    assert rows[0] == ["device", "ts", "temp", "humidity"]
    assert 0 < len(rows) - 1 <= 500
    # Detection delay, in readings per device after the shift (batches of up to 16 readings).
    start = data[0]["ts"]
    last_step = max(float(r[1]) for r in rows[1:]) - start
    delay = last_step - SHIFT_AT
    print(f"detection delay: {delay:.0f} readings per device after the shift")
    assert 0 <= delay <= 30

    # The change is marked, and the second window holds enough readings of the changed plant.
    change_ts = float(tags[contracts.WINDOW_TAGS["change_ts"]])
    assert start + SHIFT_AT <= change_ts <= start + SHIFT_AT + 30
    fresh = sorted(runs, key=lambda r: r.info.start_time)[-1]
    assert len(runs) == 2
    assert float(fresh.data.tags[contracts.WINDOW_TAGS["change_ts"]]) == change_ts
    target = window.fresh_target(training_window=500, drift_window=runtime.settings.config.drift_window)
    after = fresh.data.metrics[contracts.WINDOW_FRESH_METRIC]
    assert target <= after <= 500
    local = c.download_artifacts(fresh.info.run_id, contracts.WINDOW_ARTIFACT)
    with open(local) as fh:
        fresh_rows = list(csv.reader(io.StringIO(fh.read())))[1:]
    assert sum(float(r[1]) >= change_ts for r in fresh_rows) >= target


def test_stationary_stream_of_the_same_length_gives_no_alarm(mosquitto_broker, mlflow_server, unique_name):
    runtime, sink, _, _ = _run(mosquitto_broker, mlflow_server, unique_name, None)
    reg = runtime.metrics.registry
    assert testing.sample(reg, "edgemodel_outcomes_total") == DEVICES * (PER_DEVICE - 4)
    assert testing.sample(reg, "edgemodel_drift_detected") == 0
    assert testing.sample(reg, "edgemodel_drift_detections_total", {"reason": "ChangeDetector"}) == 0
    assert testing.sample(reg, "edgemodel_drift_detections_total", {"reason": "Threshold"}) == 0
    assert not any(e.detected for e in sink.snapshot())
    assert _window_runs(mlflow_server.uri, unique_name) == []
    assert testing.sample(reg, "edgemodel_rolling_rmse") < 0.5 * runtime.settings.config.drift_threshold
