"""The runtime counts as connected only once the broker has acknowledged its subscription.

Before, it said connected as soon as the CONNACK came and the SUBSCRIBE was sent. A reading
published in between reached a broker that did not know the subscription yet (a new
session) and was dropped; under load, the fuzz test's burst then never all arrived.

Here a relay on 127.0.0.1 stands between the runtime's connection and a real Mosquitto and
holds the SUBSCRIBE back: while it is held, the connection must not say connected.
"""

from __future__ import annotations

import pathlib
import socket
import threading
from collections.abc import Iterator

import pytest

from edgemodel_dev import testing
from edgemodel_dev.harness import mosquitto
from edgemodel_runtime import mqtt

pytestmark = [pytest.mark.mqtt]

SUBSCRIBE = 0x8


def _packets(buf: bytearray) -> Iterator[bytes]:
    """Whole MQTT packets at the front of ``buf`` (taken out of it)."""
    while len(buf) >= 2:
        length, shift, i = 0, 0, 1
        while True:
            if i >= len(buf):
                return
            length |= (buf[i] & 0x7F) << shift
            shift += 7
            i += 1
            if not buf[i - 1] & 0x80:
                break
        if len(buf) < i + length:
            return
        packet = bytes(buf[: i + length])
        del buf[: i + length]
        yield packet


class SubscribeRelay:
    """Relays TCP to the broker, holding each client's packets from its first SUBSCRIBE on
    until :meth:`release`."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held = threading.Event()  # a SUBSCRIBE arrived and is being held
        self.released = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.broker_port))
            self.sockets += [client, upstream]
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()

    def _up(self, src: socket.socket, dst: socket.socket) -> None:
        buf = bytearray()
        try:
            while data := src.recv(65536):
                buf += data
                for packet in _packets(buf):
                    if packet[0] >> 4 == SUBSCRIBE and not self.released.is_set():
                        self.held.set()
                        self.released.wait()
                    dst.sendall(packet)
        except OSError:
            pass
        finally:
            dst.close()

    def _down(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.listener.close()
        for s in self.sockets:
            s.close()


def test_connected_only_once_the_broker_has_acknowledged_the_subscription(tmp_path: pathlib.Path) -> None:
    broker = mosquitto.Mosquitto(tmp_path / "broker").start()
    relay = SubscribeRelay(broker.port)
    received: list[str] = []
    conn = mqtt.Connection(
        host="127.0.0.1",
        port=relay.port,
        client_id="subscribe-probe",
        topics=["plant/sensors/#"],
        on_message=lambda topic, payload: received.append(topic),
        username=broker.username,
        password=broker.password,
    )
    publisher = testing.publisher_for(broker, "subscribe-probe")
    try:
        conn.start()
        # The CONNACK came (the client sends its SUBSCRIBE from the CONNACK's callback) ...
        assert relay.held.wait(30)
        # ... but the broker has not seen the subscription: a reading now would be dropped.
        # (Before the fix, connected was set right after the SUBSCRIBE was sent.)
        assert not conn.wait_connected(2)
        relay.release()
        assert conn.wait_connected(30)
        # Connected means subscribed: a reading published at once arrives.
        publisher.publish("plant/sensors/d1", b'{"t": 1}', wait=True)
        testing.wait_for(lambda: received == ["plant/sensors/d1"], timeout=30, what="the reading")
    finally:
        publisher.close()
        conn.stop()
        relay.close()
        broker.stop()
