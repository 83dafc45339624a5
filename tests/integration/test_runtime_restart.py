"""A broker restart mid-stream loses no reading: the session and QoS 1 queue survive it."""

from __future__ import annotations

import json

import pytest

from edgemodel_dev import testing
from edgemodel_runtime import app

pytestmark = [pytest.mark.mqtt, pytest.mark.mlflow]


def test_broker_restart_mid_stream_loses_nothing(mosquitto_broker, mlflow_server, unique_name):
    b = mosquitto_broker
    version = testing.publish_model(mlflow_server.uri, unique_name)
    runtime = app.App(testing.for_broker(b, mlflow_server.uri, unique_name)).start()
    publisher = testing.publisher_for(b, unique_name)
    collector = testing.collector_for(b, unique_name)
    try:
        reg = runtime.metrics.registry
        assert runtime.wait_connected(30)
        testing.wait_for(lambda: runtime.holder.state.version == version, timeout=60, what="model load")
        data = testing.readings(4, 150, seed=3)
        chunks = [data[:200], data[200:400], data[400:]]
        infos = []
        for i, chunk in enumerate(chunks):
            infos += [publisher.publish(f"{unique_name}/sensors/{p['device']}", json.dumps(p)) for p in chunk]
            if i < len(chunks) - 1:
                # Restart while readings are still in flight to, or queued for, the runtime.
                b.restart()
                testing.wait_for(publisher.client.is_connected, timeout=30, what="publisher reconnect")
        for info in infos:
            info.wait_for_publish(60)

        testing.wait_for(
            lambda: testing.sample(reg, "edgemodel_readings_total") == len(data),
            timeout=90,
            what="every reading processed",
        )
        assert testing.sample(reg, "edgemodel_mqtt_connects_total") >= 3
        messages = testing.sample(reg, "edgemodel_messages_total")
        redelivered = sum(
            testing.sample(reg, "edgemodel_rejected_payloads_total", {"reason": r})
            for r in ("duplicate", "out_of_order")
        )
        # Counted in == counted processed; QoS 1 redeliveries are recognised and skipped.
        assert messages == len(data) + redelivered
        assert testing.sample(reg, "edgemodel_readings_total") == len(data)

        expected = {(p["device"], p["ts"]) for p in data if p["ts"] - data[0]["ts"] >= 3}
        testing.wait_for(
            lambda: {(p["device"], p["ts"]) for p in collector.snapshot()} >= expected,
            timeout=90,
            what="every prediction",
        )
        assert testing.sample(reg, "edgemodel_predictions_total") == len(expected)
    finally:
        runtime.stop()
        publisher.close()
        collector.close()
