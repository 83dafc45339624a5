"""Back pressure on a real Mosquitto: a backlog far beyond the queue loses nothing.

The runtime acknowledges a reading only once it is done, and stops reading the socket once
its queue is full, so the broker keeps the rest of the backlog. A graceful stop mid-backlog
leaves the unread readings with the broker for the next start.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import paho.mqtt.client as paho
import pytest

from edgemodel_dev import testing
from edgemodel_runtime import app, mqtt

pytestmark = [pytest.mark.mqtt, pytest.mark.mlflow]

DEVICES = 10
PER_DEVICE = 250
CAPACITY = 20


class RawCollector:
    """Keeps each prediction's payload bytes, in arrival order."""

    def __init__(self, broker: Any, topic: str, client_id: str) -> None:
        self.payloads: list[bytes] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.client(client_id, username=broker.username, password=broker.password)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(10), "collector did not subscribe"

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.payloads.append(bytes(message.payload))

    def snapshot(self) -> list[bytes]:
        with self._lock:
            return list(self.payloads)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _backlog(broker: Any, name: str, data: list[dict[str, Any]]) -> None:
    publisher = testing.publisher_for(broker, name)
    try:
        infos = [publisher.publish(f"{name}/sensors/{p['device']}", json.dumps(p)) for p in data]
        for info in infos:
            info.wait_for_publish(60)
    finally:
        publisher.close()


def _session(broker: Any, uri: str, name: str, **overrides: Any) -> app.App:
    """Create the runtime's persistent session, then stop it so a backlog queues up."""
    runtime = app.App(testing.for_broker(broker, uri, name, **overrides)).start()
    assert runtime.wait_connected(30)
    runtime.stop()
    return app.App(testing.for_broker(broker, uri, name, **overrides))


@pytest.mark.parametrize("output_qos", [1, 0])
def test_a_stream_faster_than_the_queue_is_complete_in_order_and_bounded(
    mosquitto_broker, mlflow_server, unique_name, output_qos
):
    b = mosquitto_broker
    version = testing.publish_model(mlflow_server.uri, unique_name)
    settings = testing.for_broker(
        b, mlflow_server.uri, unique_name, queue_capacity=CAPACITY, batch_max_size=8, output_qos=output_qos
    )
    runtime = app.App(settings).start()
    collector = RawCollector(b, f"{unique_name}/predictions/#", f"{unique_name}-raw")
    depths: list[int] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.wait(0.002):
            depths.append(len(runtime.batcher))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        reg = runtime.metrics.registry
        assert runtime.wait_connected(30)
        testing.wait_for(lambda: runtime.holder.state.version == version, timeout=60, what="model load")
        data = testing.readings(DEVICES, PER_DEVICE, seed=5)
        _backlog(b, unique_name, data)
        expected = sorted((p["device"], p["ts"]) for p in data if p["ts"] - data[0]["ts"] >= 3)
        testing.wait_for(
            lambda: len(collector.snapshot()) >= len(expected), timeout=120, what="every prediction"
        )
        assert testing.sample(reg, "edgemodel_messages_total") == len(data)
        assert testing.sample(reg, "edgemodel_readings_total") == len(data)
        assert testing.sample(reg, "edgemodel_predictions_total") == len(expected)
        # Once the readings not yet done reach its capacity, the runtime stops reading the
        # socket: the queue holds at most what one buffered read had brought in beyond it.
        smallest = min(len(json.dumps(p)) for p in data)
        assert max(depths) <= CAPACITY + mqtt.BufferedClient.READ_SIZE // smallest + 1

        raw = collector.snapshot()
        got = [json.loads(p) for p in raw]
        assert sorted((p["device"], p["ts"]) for p in got) == expected
        for text, p in zip(raw, got, strict=True):
            assert text.decode() == json.dumps(p)  # the same text as json.dumps would write
            assert p["modelVersion"] == version
            assert p["horizon"] == 1
        for device in {p["device"] for p in got}:
            ts = [p["ts"] for p in got if p["device"] == device]
            assert ts == sorted(ts), f"predictions of {device} out of order"
    finally:
        watching.set()
        runtime.stop()
        collector.close()


def test_a_stop_mid_backlog_leaves_the_rest_with_the_broker(mosquitto_broker, mlflow_server, unique_name):
    b = mosquitto_broker
    testing.publish_model(mlflow_server.uri, unique_name)
    overrides = {"queue_capacity": CAPACITY, "batch_max_size": 4, "training_window": 10_000}
    first = _session(b, mlflow_server.uri, unique_name, **overrides)
    data = testing.readings(DEVICES, PER_DEVICE, seed=6)
    _backlog(b, unique_name, data)
    first.start()
    try:
        testing.wait_for(
            lambda: len(first.batcher) > CAPACITY,
            timeout=30,
            what="the queue beyond its capacity",
            interval=0.001,
        )
        assert first.connection.pending > 0
        testing.wait_for(
            lambda: testing.sample(first.metrics.registry, "edgemodel_readings_total") >= 100,
            timeout=60,
            what="part of the backlog",
            interval=0.001,
        )
    finally:
        first.stop()
    seen = {(r.device, r.ts) for r in first.window.snapshot()}
    assert len(seen) < len(data), "the first run took the whole backlog; nothing was left to test"

    second = app.App(testing.for_broker(b, mlflow_server.uri, unique_name, **overrides)).start()
    try:
        everything = {(p["device"], p["ts"]) for p in data}
        testing.wait_for(
            lambda: seen | {(r.device, r.ts) for r in second.window.snapshot()} == everything,
            timeout=120,
            what="the rest of the backlog in the second run",
        )
    finally:
        second.stop()
