"""An MQTT probe for the end-to-end tests: numbered readings in, predictions out, from this host.

The test process reaches the managed broker's Service address over the harness's veth
into the node's network (``NodeNetwork`` routes the Service range through the node).
It publishes at QoS 1 and counts a reading as acknowledged when its PUBACK arrives.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import paho.mqtt.client as paho

from edgemodel_runtime import mqtt

__all__ = ["Probe", "connected"]


class Probe:
    """One client that publishes a device's readings and collects that device's predictions."""

    def __init__(self, client: paho.Client, *, device: str, topic: str, predictions: str) -> None:
        self.client = client
        self.device = device
        self.topic = topic
        self.predictions_topic = predictions
        self.acked: dict[int, float] = {}  # message id -> reading ts
        self._pending: dict[int, float] = {}
        self.predicted: set[float] = set()
        self._lock = threading.Lock()
        client.on_publish = self._on_publish
        client.on_message = self._on_message

    def _on_publish(self, _c: paho.Client, _u: object, mid: int, _rc: object, _p: object) -> None:
        with self._lock:
            ts = self._pending.pop(mid, None)
            if ts is not None:
                self.acked[mid] = ts

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        body = json.loads(message.payload)
        with self._lock:
            self.predicted.add(float(body["ts"]))

    def publish(self, ts: float, temperature: float, humidity: float) -> None:
        payload = json.dumps(
            {"device_id": self.device, "ts": ts, "temperature": temperature, "humidity": humidity}
        )
        with self._lock:
            info = self.client.publish(self.topic, payload, qos=1)
            self._pending[info.mid] = ts

    def acknowledged(self) -> list[float]:
        with self._lock:
            return sorted(self.acked.values())

    def predictions(self) -> set[float]:
        with self._lock:
            return set(self.predicted)

    def unacknowledged(self) -> int:
        with self._lock:
            return len(self._pending)


@contextmanager
def connected(
    host: str,
    port: int,
    *,
    username: str,
    password: str,
    device: str,
    topic: str,
    predictions: str,
    reader: tuple[str, str] | None = None,
) -> Iterator[Probe]:
    """Publish with ``username``; read the predictions with ``reader``'s credentials when given.

    The managed broker's ACL lets the devices' user publish readings only, and the runtime's
    user read predictions: the probe then is two clients, one per user.
    """
    stamp = time.monotonic_ns()
    client = mqtt.client(f"e2e-probe-{device}-{stamp}", username=username, password=password)
    listener = (
        client
        if reader is None
        else mqtt.client(f"e2e-probe-reader-{device}-{stamp}", username=reader[0], password=reader[1])
    )
    probe = Probe(client, device=device, topic=topic, predictions=predictions)
    listener.on_message = probe._on_message
    ready = threading.Event()
    listener.on_connect = lambda *_: listener.subscribe(predictions, qos=1)
    listener.on_subscribe = lambda *_: ready.set()  # predictions are seen from the first reading on
    clients = [client] if listener is client else [listener, client]
    for c in clients:
        c.connect(host, port, keepalive=30)
        c.loop_start()
    try:
        if not ready.wait(30):
            raise TimeoutError(f"the probe could not connect to {host}:{port}")
        yield probe
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
