"""Helpers for tests and demos of the runtime: synthetic sensor streams, a model in MLflow, MQTT clients.

Not used by the runtime itself. I/O: MQTT and MLflow, as the helpers' names say.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import CollectorRegistry
from sklearn.linear_model import Ridge

from edgemodel import contracts, features, registry
from edgemodel_runtime import config, mqtt

__all__ = [
    "Collector",
    "Publisher",
    "publish_model",
    "readings",
    "sample",
    "settings",
    "wait_for",
]

FEATURES = ("temp", "humidity")
TARGET = "temp"
SPEC = features.FeatureSpec(features=FEATURES, target=TARGET, horizon=1, lags=3)


def readings(
    devices: int,
    per_device: int,
    *,
    seed: int = 0,
    shift_at: int | None = None,
    shift_size: float = 4.0,
    noise: float = 0.3,
    start_ts: float = 1_700_000_000.0,
) -> list[dict[str, Any]]:
    """Payloads of ``devices`` devices, interleaved in time order.

    ``temp`` follows a slow sine plus noise; from step ``shift_at`` on, an alternating
    +/-``shift_size`` component appears (a sensor fault the model has never seen).
    """
    rng = np.random.default_rng(seed)
    out = []
    for t in range(per_device):
        for d in range(devices):
            phase = d * 0.7
            temp = 20 + 5 * math.sin(2 * math.pi * t / 50 + phase) + rng.normal(0, noise)
            if shift_at is not None and t >= shift_at:
                temp += shift_size * (1 if t % 2 else -1)
            humidity = 50 + 10 * math.cos(2 * math.pi * t / 50 + phase) + rng.normal(0, noise)
            out.append({"device": f"dev-{d}", "ts": start_ts + t, "temp": temp, "humidity": humidity})
    return out


def publish_model(
    tracking_uri: str,
    name: str,
    *,
    alias: str | None = "champion",
    spec: features.FeatureSpec = SPEC,
    seed: int = 1,
    bias: float = 0.0,
) -> str:
    """Train a ridge model on a clean stream, register it and point ``alias`` at it."""
    data = readings(3, 400, seed=seed)
    frame = features.build_training_frame(
        spec, [(p["device"], p["ts"], {f: p[f] for f in spec.fields}) for p in data]
    )
    model = Ridge(alpha=1e-3).fit(frame.x, frame.y + bias)
    client = registry.client(tracking_uri)
    experiment = contracts.training_experiment(name)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    run = client.create_run(experiment_id)
    meta = registry.ModelMeta(
        columns=spec.columns,
        algorithm="ridge",
        features=spec.features,
        target=spec.target,
        horizon=spec.horizon,
        lags=spec.lags,
    )
    version = registry.publish(client, name=name, run_id=run.info.run_id, model=model, meta=meta)
    client.set_terminated(run.info.run_id)
    if alias is not None:
        client.set_registered_model_alias(name, alias, version)
    return version


def settings(
    *,
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    topics: Sequence[str],
    output_topic: str,
    model_name: str,
    tracking_uri: str | None,
    client_id: str,
    pod_name: str | None = None,
    **overrides: Any,
) -> config.Settings:
    """Settings for an in-process runtime bound to 127.0.0.1 on a free port."""
    raw: dict[str, Any] = {
        "topics": list(topics),
        "features": list(FEATURES),
        "target": TARGET,
        "horizon": 1,
        "lags": 3,
        "device_field": "device",
        "output_topic": output_topic,
        "drift_threshold": 1.5,
        "drift_window": 100,
        "broker_host": host,
        "broker_port": port,
        "mlflow_tracking_uri": tracking_uri,
        "model_name": model_name,
        "http_port": 0,
        "model_poll_seconds": 0.5,
        "report_interval_seconds": 1.0,
        "http_bind": "127.0.0.1",
        "client_id": client_id,
    }
    raw.update(overrides)
    env = {"MQTT_USERNAME": username or "", "MQTT_PASSWORD": password or "", "POD_NAME": pod_name or ""}
    s = config.Settings(
        config=contracts.RuntimeConfig.model_validate(raw),
        options=config.Options.model_validate(raw),
        mqtt_username=env["MQTT_USERNAME"] or None,
        mqtt_password=env["MQTT_PASSWORD"] or None,
        pod_name=env["POD_NAME"] or None,
        pod_namespace="default",
    )
    config.validate(s)
    return s


def _client(client_id: str, username: str | None, password: str | None) -> paho.Client:
    return mqtt.client(client_id, username=username, password=password, reconnect_delay=(1, 2))


def _connect(c: paho.Client, host: str, port: int) -> None:
    """Connect with a persistent session, so nothing is lost across a broker restart."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 600
    c.connect(host, port, clean_start=False, properties=props)


class Publisher:
    """A QoS 1 publisher that retries through broker restarts."""

    def __init__(
        self, host: str, port: int, username: str | None, password: str | None, client_id: str
    ) -> None:
        self.client = _client(client_id, username, password)
        self.client.max_inflight_messages_set(100)
        _connect(self.client, host, port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, *, wait: bool = False) -> paho.MQTTMessageInfo:
        info = self.client.publish(topic, payload, qos=1)
        if wait:
            info.wait_for_publish(60)
        return info

    def publish_json(self, topic: str, objs: Iterable[dict[str, Any]]) -> list[paho.MQTTMessageInfo]:
        return [self.publish(topic, json.dumps(o)) for o in objs]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Collector:
    """Collects JSON messages from a topic filter, in arrival order."""

    def __init__(
        self, host: str, port: int, username: str | None, password: str | None, *, topic: str, client_id: str
    ) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = _client(client_id, username, password)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        _connect(self.client, host, port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("collector did not subscribe")

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(json.loads(message.payload))

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.messages)

    def __len__(self) -> int:
        return len(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def sample(registry_: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    """A metric sample's value, 0.0 when absent."""
    value = registry_.get_sample_value(name, labels or {})
    return 0.0 if value is None else float(value)


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate`` until true; ``TimeoutError`` naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def for_broker(broker: Any, tracking_uri: str | None, name: str, **overrides: Any) -> config.Settings:
    """:func:`settings` for the harness' ``Mosquitto``; topics and output under ``name/``."""
    return settings(
        host=broker.host,
        port=broker.port,
        username=broker.username,
        password=broker.password,
        topics=[f"{name}/sensors/+"],
        output_topic=f"{name}/predictions/{{device}}",
        model_name=name,
        tracking_uri=tracking_uri,
        client_id=overrides.pop("client_id", f"{name}-runtime"),
        **overrides,
    )


def publisher_for(broker: Any, name: str) -> Publisher:
    return Publisher(broker.host, broker.port, broker.username, broker.password, f"{name}-publisher")


def collector_for(broker: Any, name: str) -> Collector:
    return Collector(
        broker.host,
        broker.port,
        broker.username,
        broker.password,
        topic=f"{name}/predictions/#",
        client_id=f"{name}-collector",
    )


class RecordingSink:
    """A status sink that keeps every entry; ``on_send`` runs first (e.g. to look at MLflow)."""

    def __init__(self, on_send: Callable[[Any], None] = lambda entry: None) -> None:
        self.entries: list[Any] = []
        self.on_send = on_send
        self._lock = threading.Lock()

    def send(self, entry: Any) -> None:
        self.on_send(entry)
        with self._lock:
            self.entries.append(entry)

    def snapshot(self) -> list[Any]:
        with self._lock:
            return list(self.entries)
