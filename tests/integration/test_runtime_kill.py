"""A runtime that dies mid-backlog loses no reading, on a real Mosquitto and MLflow.

A reading is acknowledged to the broker only once its predictions are with the broker,
so a runtime killed by SIGKILL leaves every unfinished reading in its MQTT session for the
next process with the same client id. A new process predicts nothing before it knows its
model, so a restart does not drain its backlog unpredicted while the model loads.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import signal
import subprocess
import sys
from typing import Any

import pytest

from edgemodel_dev import testing
from edgemodel_dev.harness import processes
from edgemodel_runtime import app
from tests.integration.test_runtime_backpressure import _backlog

pytestmark = [pytest.mark.mqtt, pytest.mark.mlflow]

DEVICES = 8
PER_DEVICE = 400
LAGS = testing.SPEC.lags


def _predicted(collector: testing.Collector) -> set[tuple[str, float]]:
    return {(p["device"], p["ts"]) for p in collector.snapshot()}


def _expected(data: list[dict[str, Any]]) -> set[tuple[str, float]]:
    """Every reading with enough history for its lag features (the first ``LAGS`` per device have not)."""
    first = data[0]["ts"]
    return {(p["device"], p["ts"]) for p in data if p["ts"] - first >= LAGS}


def test_a_restart_with_a_backlog_predicts_it_once_the_model_is_loaded(
    mosquitto_broker, mlflow_server, unique_name
):
    b = mosquitto_broker
    testing.publish_model(mlflow_server.uri, unique_name)
    first = app.App(testing.for_broker(b, mlflow_server.uri, unique_name)).start()
    assert first.wait_connected(30)
    first.stop()  # the session stays with the broker, which queues the backlog for it
    data = testing.readings(DEVICES, PER_DEVICE, seed=11)
    _backlog(b, unique_name, data)

    collector = testing.collector_for(b, unique_name)
    second = app.App(testing.for_broker(b, mlflow_server.uri, unique_name)).start()
    try:
        testing.wait_for(
            lambda: testing.sample(second.metrics.registry, "edgemodel_readings_total") == len(data),
            timeout=120,
            what="the whole backlog taken",
        )
        testing.wait_for(
            lambda: _predicted(collector) >= _expected(data), timeout=60, what="every reading predicted"
        )
        assert testing.sample(second.metrics.registry, "edgemodel_readings_without_model_total") == 0
    finally:
        second.stop()
        collector.close()


def _runtime_process(
    broker: Any, tracking_uri: str, name: str, workdir: pathlib.Path, n: int
) -> subprocess.Popen[bytes]:
    settings = testing.for_broker(broker, tracking_uri, name, batch_max_size=4)
    config_file = workdir / "runtime.json"
    config_file.write_text(json.dumps(settings.config.model_dump(mode="json", by_alias=True)))
    env = {
        **os.environ,
        "EDGEMODEL_RUNTIME_CONFIG": str(config_file),
        "EDGEMODEL_HTTP_BIND": "127.0.0.1",
        "MQTT_USERNAME": broker.username,
        "MQTT_PASSWORD": broker.password,
    }
    log = (workdir / f"runtime-{n}.log").open("wb")
    try:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgemodel_runtime.main",
                "--http-port",
                str(processes.free_port()),
                "--client-id",
                settings.client_id,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_a_runtime_killed_mid_backlog_loses_no_reading(
    mosquitto_broker, mlflow_server, unique_name, tmp_path
):
    b = mosquitto_broker
    testing.publish_model(mlflow_server.uri, unique_name)
    # Make the session, then queue a backlog for it.
    session = _runtime_process(b, mlflow_server.uri, unique_name, tmp_path, 0)
    collector = testing.collector_for(b, unique_name)
    try:
        data = testing.readings(DEVICES, PER_DEVICE, seed=12)
        # Once connected it has subscribed (before anything it sends later, such as its DISCONNECT).
        processes.wait_until(
            lambda: b"Connected to MQTT broker" in (tmp_path / "runtime-0.log").read_bytes(),
            timeout=60,
            what="the first runtime connected",
        )
        _stop(session)
        _backlog(b, unique_name, data)
        victim = _runtime_process(b, mlflow_server.uri, unique_name, tmp_path, 1)
        try:
            # Killed mid-backlog: some predictions are out, most readings are not done yet.
            processes.wait_until(
                lambda: len(_predicted(collector)) >= 100, timeout=120, what="the first predictions"
            )
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
        finally:
            _stop(victim)
        before = _predicted(collector)
        assert not before >= _expected(data), "the victim finished the backlog before it was killed"

        replacement = _runtime_process(b, mlflow_server.uri, unique_name, tmp_path, 2)
        try:
            last = max(_expected(data), key=lambda r: r[1])
            processes.wait_until(
                lambda: last in _predicted(collector), timeout=120, what="the last reading predicted"
            )
        finally:
            _stop(replacement)
    finally:
        collector.close()
    missing = sorted(_expected(data) - _predicted(collector), key=lambda r: r[1])
    # The replacement starts with no history: per device it needs `LAGS` readings before it can
    # predict again, and those may be readings whose prediction died with the victim.
    per_device = collections.Counter(device for device, _ in missing)
    assert all(count <= LAGS for count in per_device.values()), f"lost readings: {missing[:20]}"
