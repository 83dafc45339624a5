"""The simulator publishes to the real Mosquitto: every reading arrives, drift comes on command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from edgemodel_dev import testing
from edgemodel_simulator import sensors

pytestmark = [pytest.mark.mqtt]


def _broker(broker) -> sensors.Broker:
    return sensors.Broker(broker.host, broker.port, broker.username, broker.password)


def _collector(broker, topic: str, client_id: str) -> testing.Collector:
    return testing.Collector(
        broker.host, broker.port, broker.username, broker.password, topic=topic, client_id=client_id
    )


def test_publisher_sends_every_reading_and_takes_drift_commands(mosquitto_broker, unique_name):
    name = unique_name
    collector = _collector(mosquitto_broker, f"{name}/+/telemetry", f"{name}-collector")
    plant = sensors.Plant(devices=3, rate=5.0, seed=1)
    publisher = sensors.Publisher(
        plant,
        broker=_broker(mosquitto_broker),
        topic_template=f"{name}/{{device}}/telemetry",
        rate=200.0,  # steps per wall second: the simulated clock runs 40 x faster
        count=400,
        control_topic=f"{name}/control",
        client_id=f"{name}-simulator",
    )
    control = testing.publisher_for(mosquitto_broker, f"{name}-control")
    try:
        publisher.start()
        testing.wait_for(lambda: plant.steps >= 50, timeout=60, what="the first steps")
        control.publish(f"{name}/control", json.dumps({"drift": "abrupt", "size": 4.0}), wait=True)
        control.publish(f"{name}/control", b"not json", wait=True)  # ignored
        testing.wait_for(lambda: plant.drift.kind == "abrupt", timeout=60, what="the drift command")
        assert publisher.wait(120)
    finally:
        publisher.stop()
        control.close()
    try:
        testing.wait_for(lambda: len(collector) >= 1200, timeout=60, what="every reading")
        messages = collector.snapshot()
    finally:
        collector.close()
    assert len(messages) == 1200 and publisher.published == 1200
    assert plant.drift.size == 4.0 and 50 <= plant.drift.start < 400
    by_device: dict[str, list[dict]] = {}
    for m in messages:
        assert set(m) == {"device_id", "ts", "temperature", "humidity"}
        by_device.setdefault(m["device_id"], []).append(m)
    assert sorted(by_device) == ["dev-01", "dev-02", "dev-03"]
    for readings in by_device.values():
        ts = [m["ts"] for m in readings]
        assert ts == sorted(ts) and len(set(ts)) == 400  # QoS 1, one connection: in order, none lost
    # the drift shows in the stream: the level rises by about size / (1 - PHI) = 20
    temps = [m["temperature"] for m in by_device["dev-01"]]
    start = plant.drift.start
    assert sum(temps[start + 40 :]) / len(temps[start + 40 :]) > sum(temps[:start]) / start + 10


def test_publish_helper_and_cli_replay(mosquitto_broker, unique_name, tmp_path):
    name = unique_name
    collector = _collector(mosquitto_broker, f"{name}/#", f"{name}-collector")
    try:
        plant = sensors.Plant(devices=2, seed=3, start_ts=1_700_000_000.0)
        sent = sensors.publish(
            plant.readings(10),
            broker=_broker(mosquitto_broker),
            topic_template=f"{name}/live/{{device}}",
        )
        assert sent == 20
        history = sensors.write_history(plant, tmp_path / "history.csv", readings_per_device=15)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgemodel_simulator.sensors",
                "--host",
                mosquitto_broker.host,
                "--port",
                str(mosquitto_broker.port),
                "--topic-template",
                f"{name}/replay/{{device}}",
                "--replay",
                str(history),
                "--speedup",
                "0",
            ],
            env={
                **os.environ,
                "MQTT_USERNAME": mosquitto_broker.username,
                "MQTT_PASSWORD": mosquitto_broker.password,
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1])["published"] == 30
        testing.wait_for(lambda: len(collector) >= 50, timeout=60, what="live and replayed readings")
        messages = collector.snapshot()
    finally:
        collector.close()
    replayed = [m for m in messages if m["ts"] < 1_700_000_000.0]
    assert len(messages) == 50 and len(replayed) == 30
    assert [m["ts"] for m in replayed] == sorted(m["ts"] for m in replayed)
