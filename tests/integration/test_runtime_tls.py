"""The runtime over TLS to a real Mosquitto: the broker's certificate is checked against a CA.

The broker listens in the clear and with TLS; the runtime uses only the TLS listener, for
its readings and for its predictions, while the test's own clients use the plain one.
Enough readings flow for reads and writes to span many TLS records; buffered reads once
stalled on the last readings of a burst here.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator

import pytest

from edgemodel_dev import testing
from edgemodel_dev.harness import mosquitto, pki
from edgemodel_runtime import app

pytestmark = [pytest.mark.mqtt, pytest.mark.mlflow]


@pytest.fixture
def tls_broker(tmp_path: pathlib.Path) -> Iterator[mosquitto.Mosquitto]:
    broker = mosquitto.Mosquitto(tmp_path / "mosquitto", tls=True).start()
    try:
        yield broker
    finally:
        broker.stop()


def test_runtime_reads_and_publishes_over_tls(tls_broker, mlflow_server, unique_name):
    b = tls_broker
    assert b.tls_port is not None and b.ca_file is not None
    version = testing.publish_model(mlflow_server.uri, unique_name)
    settings = testing.for_broker(
        b,
        mlflow_server.uri,
        unique_name,
        broker_port=b.tls_port,
        broker_tls=True,
        broker_ca_file=str(b.ca_file),
    )
    assert settings.config.broker_port == b.tls_port
    collector = testing.collector_for(b, unique_name)
    publisher = testing.publisher_for(b, unique_name)
    runtime = app.App(settings).start()
    try:
        assert runtime.wait_connected(30)
        testing.wait_for(lambda: runtime.holder.state.version == version, timeout=60, what="model load")
        devices, per_device = 4, 500
        data = testing.readings(devices, per_device, seed=11)
        infos = [publisher.publish(f"{unique_name}/sensors/{p['device']}", json.dumps(p)) for p in data]
        for info in infos:
            info.wait_for_publish(30)
        expected = devices * (per_device - settings.config.lags)
        testing.wait_for(lambda: len(collector) >= expected, timeout=60, what="predictions over TLS")
        reg = runtime.metrics.registry
        assert testing.sample(reg, "edgemodel_readings_total") == len(data)
        assert testing.sample(reg, "edgemodel_predictions_total") == expected
        predictions = collector.snapshot()
        assert len(predictions) == expected
        for device in range(devices):
            ts = [p["ts"] for p in predictions if p["device"] == f"dev-{device}"]
            assert ts == sorted(ts) and len(ts) == per_device - settings.config.lags
    finally:
        runtime.stop()
        publisher.close()
        collector.close()


def test_runtime_refuses_a_broker_its_ca_did_not_sign(tls_broker, mlflow_server, unique_name, tmp_path):
    b = tls_broker
    assert b.tls_port is not None
    other_ca = pki.Pki(tmp_path / "other-ca").ca_cert
    settings = testing.for_broker(
        b,
        None,
        unique_name,
        broker_port=b.tls_port,
        broker_tls=True,
        broker_ca_file=str(other_ca),
    )
    runtime = app.App(settings).start()
    try:
        assert not runtime.wait_connected(5)
    finally:
        runtime.stop()
