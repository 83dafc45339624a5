"""``edgemodel-runtime`` as a process: standalone from a config file and environment, stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from edgemodel_dev import testing
from edgemodel_dev.harness import processes

pytestmark = [pytest.mark.mqtt]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.loads(resp.read())


def test_cli_runs_standalone_and_stops_on_sigterm(mosquitto_broker, tmp_path, unique_name):
    b = mosquitto_broker
    port = processes.free_port()
    config_file = tmp_path / "runtime.json"
    config_file.write_text(
        json.dumps(
            {
                "topics": [f"{unique_name}/sensors/+"],
                "features": ["temp", "humidity"],
                "target": "temp",
                "driftThreshold": 1.5,
                "modelName": unique_name,
                "brokerHost": b.host,
                "brokerPort": b.port,
                "httpPort": 1,  # overridden by the flag below
            }
        )
    )
    env = {
        **os.environ,
        "EDGEMODEL_RUNTIME_CONFIG": str(config_file),
        "EDGEMODEL_HTTP_BIND": "127.0.0.1",
        "MQTT_USERNAME": b.username,
        "MQTT_PASSWORD": b.password,
    }
    log = (tmp_path / "runtime.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgemodel_runtime.main",
            "--http-port",
            str(port),
            "--client-id",
            unique_name,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    publisher = testing.publisher_for(b, unique_name)
    try:
        base = f"http://127.0.0.1:{port}"
        processes.wait_until(lambda: _get_json(f"{base}/readyz")["mqttConnected"], timeout=30, what="ready")
        assert _get_json(f"{base}/healthz")["status"] == "ok"
        assert _get_json(f"{base}/readyz")["modelVersion"] is None  # no MLflow: consumes, predicts nothing
        for p in testing.readings(1, 10):
            publisher.publish(f"{unique_name}/sensors/x", json.dumps(p), wait=True)
        publisher.publish(f"{unique_name}/sensors/x", b"not json", wait=True)

        def metric(name: str) -> float:
            with urllib.request.urlopen(f"{base}/metrics", timeout=2) as resp:
                for line in resp.read().decode().splitlines():
                    if line.startswith(name + " ") or line.startswith(name + "{"):
                        return float(line.rsplit(" ", 1)[1])
            return 0.0

        processes.wait_until(lambda: metric("edgemodel_messages_total") == 11, timeout=30, what="messages")
        assert metric("edgemodel_readings_total") == 10
        assert metric("edgemodel_readings_without_model_total") == 10
        assert metric('edgemodel_rejected_payloads_total{reason="not_json"}') == 1
        assert metric("edgemodel_predictions_total") == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        publisher.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
    lines = [
        json.loads(line)
        for line in (tmp_path / "runtime.log").read_text().splitlines()
        if line.startswith("{")
    ]
    assert any(line["message"] == "Stopped runtime" for line in lines)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
