"""Issue 12, item 6: the managed broker's ACL (two users), limits and TLS, on the real Mosquitto.

The broker runs with what the operator renders: its ConfigMap's ``mosquitto.conf`` and ACL
sections, and the password and ACL files its init container's script writes from the
credentials Secret (run here with the system ``sh``). Only the paths and the listener are
moved into a temporary directory on 127.0.0.1. Clients speak MQTT 5, as the runtime, the
simulator and the devices built on the project's client factory do: a refused QoS 1 PUBLISH
gets a PUBACK with a failure reason code. With ``tlsSecretRef`` the Secret's files come from
a throwaway CA, and the runtime's own client factory connects as the runtime would.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edgemodel_dev.harness import mosquitto, pki, processes
from edgemodel_operator.render import broker
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings
from edgemodel_runtime import mqtt as runtime_mqtt
from tests import specs

pytestmark = pytest.mark.mqtt

RUNTIME = ("edgemodel", "rt-" + uuid.uuid4().hex)
DEVICE = ("device", "dev-" + uuid.uuid4().hex)
SENSOR = "plant/m7/telemetry"  # VALID_SPEC's topics: plant/+/telemetry
PREDICTION = "edgemodel/ns/em/predictions/m7"
NOT_AUTHORIZED = 0x87
IMPLEMENTATION_SPECIFIC = 0x83


def _rendered(broker_spec: dict[str, Any] | None = None) -> tuple[dict[str, str], str]:
    spec = {**specs.VALID_SPEC, "broker": broker_spec or {}}
    em = EdgeModel.from_body({"metadata": {"name": "em", "namespace": "ns", "uid": "u"}, "spec": spec})
    creds = broker.managed_credentials({}, fresh=("unused", "unused"))
    objs = broker.objects(em, Settings(), generated_password=None, credentials=creds)
    config_map = next(o for o in objs if o["kind"] == "ConfigMap")
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    [init] = deployment["spec"]["template"]["spec"]["initContainers"]
    return config_map["data"], str(init["command"][2])


class Client:
    """One MQTT 5 client that records PUBACK and SUBACK reason codes and the messages it gets."""

    def __init__(
        self, port: int, username: str, password: str, *, ca_file: pathlib.Path | None = None
    ) -> None:
        self.acks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self._lock = threading.Lock()
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:10]}", protocol=mqtt.MQTTv5
        )
        c.username_pw_set(username, password)
        if ca_file is not None:
            c.tls_set(ca_certs=str(ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *_: self.disconnected.set()
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self.rc: ReasonCode | None = None
        self.client = c
        c.connect("127.0.0.1", port)
        c.loop_start()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self.rc = rc
        self.connected.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        with self._lock:
            self.acks[mid] = rc.value

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, rcs: list[ReasonCode], _p: Any) -> None:
        with self._lock:
            self.subacks[mid] = [r.value for r in rcs]

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def publish(self, topic: str, payload: bytes) -> int:
        """PUBLISH at QoS 1; the PUBACK's reason code."""
        mid = self.client.publish(topic, payload, qos=1).mid
        processes.wait_until(lambda: mid in self.acks, timeout=10, what=f"a PUBACK for {topic}")
        return self.acks[mid]

    def subscribe(self, topic: str) -> int:
        """SUBSCRIBE at QoS 1; the SUBACK's reason code (0 to 2: granted)."""
        _rc, mid = self.client.subscribe(topic, qos=1)
        processes.wait_until(lambda: mid in self.subacks, timeout=10, what=f"a SUBACK for {topic}")
        return self.subacks[mid][0]

    def got(self, payload: bytes) -> list[str]:
        with self._lock:
            return [t for t, p in self.messages if p == payload]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _start_rendered(root: pathlib.Path, broker_spec: dict[str, Any] | None = None) -> mosquitto.Mosquitto:
    """The real Mosquitto with the operator's rendered configuration and init script; with
    ``tlsSecretRef``, the Secret's three files come from a throwaway CA for 127.0.0.1."""
    data, script = _rendered(broker_spec)
    config_dir, auth_dir, tls_dir = root / "config", root / "auth", root / "tls"
    for d in (config_dir, auth_dir, tls_dir, root / "data"):
        d.mkdir()
    for key, text in data.items():
        (config_dir / key).write_text(text)
    moves = {
        broker.AUTH_FILE: str(auth_dir / "passwd"),
        broker.ACL_FILE: str(auth_dir / "acl"),
        broker.CONFIG_DIR: str(config_dir),
        broker.TLS_DIR: str(tls_dir),
        "/mosquitto/data/": f"{root / 'data'}/",
    }
    for old, new in moves.items():
        script = script.replace(old, new)
    env = {
        "PATH": os.environ["PATH"],
        "MQTT_USERNAME": RUNTIME[0],
        "MQTT_PASSWORD": RUNTIME[1],
        "MQTT_DEVICE_USERNAME": DEVICE[0],
        "MQTT_DEVICE_PASSWORD": DEVICE[1],
    }
    done = subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    acl = (auth_dir / "acl").read_text()
    assert acl.startswith(f"user {RUNTIME[0]}\n") and f"user {DEVICE[0]}\n" in acl

    server = mosquitto.Mosquitto(root / "broker")
    conf = data["mosquitto.conf"]
    for old, new in moves.items():
        conf = conf.replace(old, new)
    if broker_spec and broker_spec.get("tlsSecretRef"):
        authority = pki.Pki(root / "pki")
        cert, key = authority.issue("broker", common_name="em-broker", server_ips=("127.0.0.1",))
        shutil.copyfile(cert, tls_dir / "tls.crt")
        shutil.copyfile(key, tls_dir / "tls.key")
        shutil.copyfile(authority.ca_cert, tls_dir / "ca.crt")
        server.ca_file = tls_dir / "ca.crt"
        conf = conf.replace(f"listener {broker.TLS_PORT}\n", f"listener {server.port} 127.0.0.1\n")
    else:
        conf = conf.replace(f"listener {broker.MQTT_PORT}\n", f"listener {server.port} 127.0.0.1\n")
    # The image runs Mosquitto as its own user; here it stays the test's user.
    return server.start_with(conf + f"user {os.environ.get('USER') or 'root'}\n")


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mosquitto.Mosquitto]:
    server = _start_rendered(tmp_path_factory.mktemp("hardened"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clients(hardened: mosquitto.Mosquitto) -> Iterator[dict[str, Client]]:
    made = {
        "runtime": Client(hardened.port, *RUNTIME),
        "device": Client(hardened.port, *DEVICE),
    }
    try:
        for c in made.values():
            processes.wait_until(c.connected.is_set, timeout=10, what="a CONNACK")
            assert c.rc is not None and not c.rc.is_failure, c.rc
        yield made
    finally:
        for c in made.values():
            c.close()


def _marker() -> bytes:
    return uuid.uuid4().hex.encode()


def test_the_normal_path_flows_device_to_runtime_and_runtime_to_predictions(clients):
    runtime, device = clients["runtime"], clients["device"]
    assert runtime.subscribe("plant/+/telemetry") <= 2
    assert runtime.subscribe("edgemodel/ns/em/predictions/+") <= 2
    reading, prediction = b'{"temperature": 21.5, "humidity": 40}' + _marker(), _marker()
    assert device.publish(SENSOR, reading) == 0
    processes.wait_until(lambda: runtime.got(reading) == [SENSOR], timeout=10, what="the reading")
    assert runtime.publish(PREDICTION, prediction) == 0
    processes.wait_until(lambda: runtime.got(prediction) == [PREDICTION], timeout=10, what="the prediction")


def _nothing_delivered(client: Client) -> list[tuple[str, bytes]]:
    """What ``client`` was sent so far: after one PUBACK of its own, since a broker writes a
    connection's packets in order, anything it had queued for the client has arrived."""
    assert client.publish(SENSOR, b'{"temperature": 1}') == 0
    return list(client.messages)


def test_the_devices_user_can_neither_read_nor_write_anything_but_its_sensor_topics(clients):
    runtime, device = clients["runtime"], clients["device"]
    assert runtime.subscribe("edgemodel/ns/em/predictions/+") <= 2
    # Mosquitto grants a SUBSCRIBE and checks "read" on each message it would deliver
    # (or refuses outright with 0x87): either way nothing readable reaches the device.
    for topic in ("edgemodel/ns/em/predictions/+", "plant/+/telemetry", "#", "$SYS/#"):
        assert device.subscribe(topic) in (0, 1, NOT_AUTHORIZED), topic
    # No writing of predictions (a forged one) or of any other topic.
    forged = _marker()
    assert device.publish(PREDICTION, forged) == NOT_AUTHORIZED
    assert device.publish("plant/m7/commands", _marker()) == NOT_AUTHORIZED
    assert device.publish("elsewhere", _marker()) == NOT_AUTHORIZED
    # The forged prediction reached no one: a real one published after it arrives alone.
    real = _marker()
    assert runtime.publish(PREDICTION, real) == 0
    processes.wait_until(lambda: runtime.got(real), timeout=10, what="the real prediction")
    assert runtime.got(forged) == []
    # The device was sent neither the prediction nor its own and others' readings.
    assert _nothing_delivered(device) == []


def test_the_runtimes_user_cannot_forge_readings_or_leave_its_topics(clients):
    runtime, device = clients["runtime"], clients["device"]
    assert runtime.subscribe("plant/+/telemetry") <= 2
    forged = _marker()
    assert runtime.publish(SENSOR, forged) == NOT_AUTHORIZED
    assert runtime.publish("elsewhere", _marker()) == NOT_AUTHORIZED
    real = _marker()
    assert device.publish(SENSOR, real) == 0
    processes.wait_until(lambda: runtime.got(real), timeout=10, what="the device's reading")
    assert runtime.got(forged) == []


def test_wrong_or_no_credentials_are_refused(hardened):
    for username, password in ((DEVICE[0], RUNTIME[1]), (RUNTIME[0], DEVICE[1]), ("", "")):
        c = Client(hardened.port, username, password)
        try:
            processes.wait_until(
                lambda c=c: c.connected.is_set() or c.disconnected.is_set(), timeout=10, what="an answer"
            )
            assert c.rc is None or c.rc.is_failure, (username, c.rc)
        finally:
            c.close()


@pytest.mark.parametrize(
    "excess",
    [
        pytest.param(1, id="over-message_size_limit"),
        pytest.param(broker.PACKET_OVERHEAD + 1, id="over-max_packet_size"),
    ],
)
def test_a_payload_over_the_limit_is_refused_and_normal_readings_still_flow(hardened, clients, excess):
    runtime, device = clients["runtime"], clients["device"]
    assert runtime.subscribe("plant/+/telemetry") <= 2
    limit = broker.limits(broker.MEMORY_LIMIT, 3).message_size_limit
    # A payload at the limit passes.
    at = b"y" * limit
    assert device.publish(SENSOR, at) == 0
    processes.wait_until(lambda: runtime.got(at), timeout=10, what="a payload at the limit")
    # Over it, the publisher's connection is dropped. Past message_size_limit Mosquitto 2.0.11
    # answers with a PUBACK whose reason code (0x95) MQTT 5 does not allow in a PUBACK, so
    # paho drops the connection itself; past max_packet_size Mosquitto disconnects it.
    big = Client(hardened.port, *DEVICE)
    over = b"z" * (limit + excess)
    try:
        processes.wait_until(big.connected.is_set, timeout=10, what="a CONNACK")
        big.client.publish(SENSOR, over, qos=1)
        processes.wait_until(big.disconnected.is_set, timeout=10, what="the oversized publisher dropped")
    finally:
        big.close()
    # Normal readings still flow, and the oversized one reached no one: had the broker passed
    # it on, it would have arrived before this reading, published after the drop.
    reading = b'{"temperature": 21.5}' + _marker()
    assert device.publish(SENSOR, reading) == 0
    processes.wait_until(lambda: runtime.got(reading), timeout=10, what="a normal reading")
    assert runtime.got(over) == []


def test_the_rendered_broker_listens_as_configured(hardened):
    conf = (pathlib.Path(hardened.workdir) / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "acl_file" in conf


def test_with_tls_only_the_tls_listener_answers_and_the_runtimes_client_reaches_it(tmp_path):
    server = _start_rendered(tmp_path, {"tlsSecretRef": {"name": "broker-tls"}})
    try:
        assert server.ca_file is not None
        device = Client(server.port, *DEVICE, ca_file=server.ca_file)
        # The runtime's own client factory, as the runtime builds it with EDGEMODEL_BROKER_CA_FILE.
        got: list[bytes] = []
        subscribed = threading.Event()
        runtime = runtime_mqtt.client(
            "t-runtime-tls", username=RUNTIME[0], password=RUNTIME[1], tls=True, ca_file=str(server.ca_file)
        )
        runtime.on_connect = lambda c, *_: c.subscribe("plant/+/telemetry", qos=1)
        runtime.on_subscribe = lambda *_: subscribed.set()
        runtime.on_message = lambda _c, _u, msg: got.append(msg.payload)
        runtime.connect("127.0.0.1", server.port)
        runtime.loop_start()
        try:
            processes.wait_until(subscribed.is_set, timeout=10, what="the runtime subscribed over TLS")
            processes.wait_until(device.connected.is_set, timeout=10, what="the device's CONNACK over TLS")
            reading = b'{"temperature": 20}' + _marker()
            assert device.publish(SENSOR, reading) == 0
            processes.wait_until(lambda: reading in got, timeout=10, what="the reading over TLS")
        finally:
            runtime.disconnect()
            runtime.loop_stop()
            device.close()

        # Plain MQTT to the TLS port gets no CONNACK: no password crosses in clear text.
        plain = Client(server.port, *DEVICE)
        try:
            processes.wait_until(
                lambda: plain.connected.is_set() or plain.disconnected.is_set(), timeout=10, what="an answer"
            )
            assert not plain.connected.is_set()
        finally:
            plain.close()

        # A client that trusts another CA refuses the broker's certificate.
        other = pki.Pki(tmp_path / "other-ca")
        stranger = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-stranger", protocol=mqtt.MQTTv5)
        stranger.tls_set(ca_certs=str(other.ca_cert), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        with pytest.raises(ssl.SSLError):
            stranger.connect("127.0.0.1", server.port)
    finally:
        server.stop()
