"""Hot reload under load: no reading lost, predictions switch version, a bad version is refused."""

from __future__ import annotations

import json
import threading
import time

import pytest

from edgemodel import registry
from edgemodel_dev import testing
from edgemodel_runtime import app

pytestmark = [pytest.mark.mqtt, pytest.mark.mlflow]


def test_swap_under_load_then_refuse_a_tampered_version(mosquitto_broker, mlflow_server, unique_name):
    b, name = mosquitto_broker, unique_name
    v1 = testing.publish_model(mlflow_server.uri, name)
    v2 = testing.publish_model(mlflow_server.uri, name, alias=None, bias=0.25)
    v3 = testing.publish_model(mlflow_server.uri, name, alias=None, bias=0.5)
    client = registry.client(mlflow_server.uri)
    client.set_model_version_tag(name, v3, registry.TAGS["sha256"], "0" * 64)  # tampered

    sink = testing.RecordingSink()
    runtime = app.App(testing.for_broker(b, mlflow_server.uri, name), status_sink=sink).start()
    publisher = testing.publisher_for(b, name)
    collector = testing.collector_for(b, name)
    data = testing.readings(3, 500, seed=4)
    sent = threading.Event()
    infos = []

    def produce() -> None:
        for i, p in enumerate(data):
            infos.append(publisher.publish(f"{name}/sensors/{p['device']}", json.dumps(p)))
            if i % 10 == 0:
                time.sleep(0.005)
        sent.set()

    producer = threading.Thread(target=produce)
    try:
        reg = runtime.metrics.registry
        assert runtime.wait_connected(30)
        testing.wait_for(lambda: runtime.holder.state.version == v1, timeout=60, what="v1")
        producer.start()
        testing.wait_for(lambda: len(collector) >= 150, timeout=60, what="v1 predictions")
        client.set_registered_model_alias(name, "champion", v2)
        testing.wait_for(
            lambda: any(p["modelVersion"] == v2 for p in collector.snapshot()),
            timeout=60,
            what="v2 predictions",
        )
        assert not sent.is_set(), "the swap should land while readings still flow"
        producer.join(120)
        for info in infos:
            info.wait_for_publish(60)
        testing.wait_for(
            lambda: testing.sample(reg, "edgemodel_readings_total") == len(data),
            timeout=60,
            what="all readings",
        )
        expected = {(p["device"], p["ts"]) for p in data if p["ts"] - data[0]["ts"] >= 3}
        testing.wait_for(
            lambda: {(p["device"], p["ts"]) for p in collector.snapshot()} >= expected,
            timeout=60,
            what="every prediction",
        )
        assert testing.sample(reg, "edgemodel_messages_total") == len(data)
        assert testing.sample(reg, "edgemodel_predictions_total") == len(expected)

        predictions = collector.snapshot()
        for device in ("dev-0", "dev-1", "dev-2"):
            versions = [p["modelVersion"] for p in predictions if p["device"] == device]
            switch = versions.index(v2)
            assert set(versions[:switch]) == {v1} and set(versions[switch:]) == {v2}, device
        assert testing.sample(reg, "edgemodel_model_info", {"name": name, "version": v2}) == 1

        # A tampered version is refused: v2 keeps serving, and the error is visible everywhere.
        client.set_registered_model_alias(name, "champion", v3)
        testing.wait_for(
            lambda: testing.sample(reg, "edgemodel_model_error") == 1, timeout=60, what="model error metric"
        )
        assert runtime.holder.state.version == v2
        assert testing.sample(reg, "edgemodel_model_loads_total", {"result": "refused"}) == 1
        ready, detail = runtime.readiness()
        assert ready and "SHA-256" in detail["modelError"]
        testing.wait_for(
            lambda: any(e.model_error for e in sink.snapshot()), timeout=30, what="modelError in the report"
        )
        entry = next(e for e in sink.snapshot() if e.model_error)
        assert entry.model_version == v2
        # after the stream's readings, and not ahead of the clock (future timestamps are refused)
        start = float(int(time.time())) - 60.0
        more = testing.readings(1, 6, seed=8, start_ts=start)
        for p in more:
            publisher.publish(f"{name}/sensors/{p['device']}", json.dumps(p), wait=True)
        testing.wait_for(
            lambda: any(p["ts"] == more[-1]["ts"] for p in collector.snapshot()),
            timeout=30,
            what="v2 serving on",
        )
        assert {p["modelVersion"] for p in collector.snapshot() if p["ts"] >= start} == {v2}

        # Pointing the alias back at the serving version clears the error.
        client.set_registered_model_alias(name, "champion", v2)
        testing.wait_for(
            lambda: testing.sample(reg, "edgemodel_model_error") == 0, timeout=60, what="model error cleared"
        )
    finally:
        if producer.is_alive():
            producer.join(120)
        runtime.stop()
        publisher.close()
        collector.close()
