"""The runtime on a real Mosquitto and a real MLflow: predictions out, counts in metrics, HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from edgemodel_dev import testing
from edgemodel_runtime import app

pytestmark = [pytest.mark.mqtt, pytest.mark.mlflow]


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _post(port: int, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_stream_predictions_metrics_and_http(mosquitto_broker, mlflow_server, unique_name):
    b = mosquitto_broker
    version = testing.publish_model(mlflow_server.uri, unique_name)
    settings = testing.for_broker(b, mlflow_server.uri, unique_name)
    collector = testing.collector_for(b, unique_name)
    publisher = testing.publisher_for(b, unique_name)
    runtime = app.App(settings).start()
    try:
        reg = runtime.metrics.registry
        assert runtime.wait_connected(30)
        testing.wait_for(lambda: runtime.holder.state.version == version, timeout=60, what="model load")
        devices, per_device = 3, 100
        data = testing.readings(devices, per_device, seed=5)
        for p in data:
            publisher.publish(f"{unique_name}/sensors/{p['device']}", json.dumps(p))
        expected = devices * (per_device - settings.config.lags)
        testing.wait_for(lambda: len(collector) >= expected, timeout=60, what="predictions")

        assert testing.sample(reg, "edgemodel_messages_total") == len(data)
        assert testing.sample(reg, "edgemodel_readings_total") == len(data)
        assert testing.sample(reg, "edgemodel_predictions_total") == expected
        assert testing.sample(reg, "edgemodel_outcomes_total") == expected - devices
        assert testing.sample(reg, "edgemodel_model_info", {"name": unique_name, "version": version}) == 1
        assert testing.sample(reg, "edgemodel_prediction_latency_seconds_count") == expected
        rmse = testing.sample(reg, "edgemodel_rolling_rmse")
        assert 0 < rmse < settings.config.drift_threshold
        assert testing.sample(reg, "edgemodel_drift_detected") == 0

        predictions = collector.snapshot()
        assert len(predictions) == expected
        assert {p["modelVersion"] for p in predictions} == {version}
        for device in range(devices):
            ts = [p["ts"] for p in predictions if p["device"] == f"dev-{device}"]
            assert ts == sorted(ts) and len(ts) == per_device - settings.config.lags

        code, body = _get(runtime.http_port, "/metrics")
        assert code == 200
        text = body.decode()
        for name in (
            "edgemodel_readings_total",
            "edgemodel_predictions_total",
            "edgemodel_rejected_payloads_total",
            "edgemodel_rolling_rmse",
            "edgemodel_drift_detected",
            "edgemodel_prediction_latency_seconds_bucket",
            "edgemodel_model_info",
        ):
            assert name in text, name
        assert _get(runtime.http_port, "/healthz")[0] == 200
        assert _get(runtime.http_port, "/readyz")[0] == 200

        # One-off prediction with the same model and validation as the stream.
        history = [{k: v for k, v in p.items()} for p in data if p["device"] == "dev-0"][:4]
        code, answer = _post(runtime.http_port, "/predict", {"readings": history})
        assert code == 200, answer
        assert answer["modelVersion"] == version
        streamed = next(p for p in predictions if p["device"] == "dev-0" and p["ts"] == history[-1]["ts"])
        assert answer["prediction"] == pytest.approx(streamed["prediction"])
        assert _post(runtime.http_port, "/predict", {"readings": history[:2]})[0] == 400
        code, answer = _post(runtime.http_port, "/predict", b'{"temp": NaN}')
        assert (code, answer["error"]) == (400, "not_finite")
        assert testing.sample(reg, "edgemodel_readings_total") == len(
            data
        )  # /predict leaves the stream alone
    finally:
        runtime.stop()
        publisher.close()
        collector.close()
