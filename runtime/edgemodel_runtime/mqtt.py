"""The MQTT connection: paho-mqtt I/O only.

MQTT 5 with ``clean_start=False`` and a session expiry, under a stable client id, so the
broker keeps the subscriptions and queues QoS 1 readings while the runtime is away (a
restart of either side loses nothing). paho reconnects with exponential backoff
(1 s doubling up to 30 s); subscriptions are renewed on every connect in case the broker
lost the session. Incoming messages go to ``on_message`` in paho's network thread,
which must return quickly; it may block briefly to push back when the consumer is behind.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

__all__ = ["Connection"]

log = logging.getLogger(__name__)


class Connection:
    """One MQTT client subscribed to ``topics`` at QoS 1."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        topics: Sequence[str],
        on_message: Callable[[str, bytes], None],
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        session_expiry: int = 3600,
        keepalive: int = 30,
        on_connection_change: Callable[[bool], None] = lambda connected: None,
    ) -> None:
        self.host = host
        self.port = port
        self.topics = list(topics)
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        self._on_message = on_message
        self._on_connection_change = on_connection_change
        self._connected = threading.Event()
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set(
                ca_certs=ca_file, certfile=cert_file, keyfile=key_file, tls_version=ssl.PROTOCOL_TLS_CLIENT
            )
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.max_queued_messages_set(100_000)
        self.client.on_connect = self._handle_connect
        self.client.on_disconnect = self._handle_disconnect
        self.client.on_message = self._handle_message

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> Connection:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.session_expiry
        self.client.connect_async(
            self.host, self.port, keepalive=self.keepalive, clean_start=False, properties=props
        )
        self.client.loop_start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Disconnect (the broker keeps the session) and stop the network thread."""
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
            self._set_connected(False)

    def publish(self, topic: str, payload: bytes) -> bool:
        """Queue a QoS 1 message; False if the client refused it (queue full, bad topic)."""
        try:
            info = self.client.publish(topic, payload, qos=1)
        except ValueError:  # a topic paho refuses
            return False
        return info.rc in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN)

    def _set_connected(self, value: bool) -> None:
        if value == self._connected.is_set():
            return
        if value:
            self._connected.set()
        else:
            self._connected.clear()
        self._on_connection_change(value)

    def _handle_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            log.warning("Failed to connect to MQTT broker %s:%s: %s", self.host, self.port, reason_code)
            return
        client.subscribe([(t, SubscribeOptions(qos=1)) for t in self.topics])
        log.info(
            "Connected to MQTT broker %s:%s",
            self.host,
            self.port,
            extra={"session_present": bool(getattr(flags, "session_present", False)), "topics": self.topics},
        )
        self._set_connected(True)

    def _handle_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if self.connected:
            log.warning("Lost connection to MQTT broker %s:%s: %s", self.host, self.port, reason_code)
        self._set_connected(False)

    def _handle_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            try:
                topic = message.topic
            except UnicodeDecodeError:  # the broker should refuse such topics; be safe anyway
                topic = bytes(message._topic).decode("utf-8", "replace")
            self._on_message(topic, bytes(message.payload))
        except Exception:
            log.exception("Failed to queue an MQTT message")
