"""The MQTT connection: paho-mqtt I/O only.

MQTT 5 with ``clean_start=False`` and a session expiry, under a stable client id, so the
broker keeps the subscriptions and queues QoS 1 readings while the runtime is away (a
restart of either side loses nothing). paho reconnects with exponential backoff
(1 s doubling up to 30 s); subscriptions are renewed on every connect in case the broker
lost the session.

Two connections, each with its own paho network thread: readings come in on the session
connection, predictions go out on a second one (client id ``<client id>-out``, clean
session), so their PUBACKs never queue behind readings and the output never waits for
the input.

A reading is acknowledged only once it is done: the consumer has handled it and the
broker has taken every prediction made from it (:meth:`Connection.done`). Until then the
broker keeps it in the session, so a runtime that dies at any moment, even by SIGKILL,
loses no reading the broker has acknowledged to a device: the next process with the same
client id is sent it again. Acknowledgements go out in the order the readings came, as
MQTT requires. This is also the back pressure: the broker sends at most
:data:`RECEIVE_MAXIMUM` unacknowledged readings; a broker that sends more (Mosquitto 2.0
sends a queued backlog beyond it) finds the socket no longer read once ``max_pending``
readings wait. Memory stays bounded and nothing is lost.

Predictions are published without paho's in-flight limit (paho would otherwise queue
them behind 20 unacknowledged ones and rescan its whole queue on every PUBACK);
:meth:`Connection.wait_for_window` lets the publisher wait while too many are unacknowledged.

paho reads each packet with three or more ``recv`` calls, writes each packet with its
own ``send``, and wakes its network thread with one more ``send`` for every packet queued
from another thread; :class:`BufferedClient` reads 64 KiB at a time, writes what one loop
turn queued with one ``send``, and wakes the network thread once until it has woken.
"""

from __future__ import annotations

import collections
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["BufferedClient", "Connection", "client"]

log = logging.getLogger(__name__)

PUBLISH_WINDOW = 10_000
"""Predictions published and not yet acknowledged before :meth:`Connection.wait_for_window` waits
(paho's message ids wrap at 65,535)."""
RECEIVE_MAXIMUM = 1_000
"""Readings the broker sends without their acknowledgement (MQTT 5 Receive Maximum). A
reading stays unacknowledged until its predictions are with the broker, so this is the
stream's pipeline depth."""
MAX_PENDING = 10_000
"""Default of readings handed to the consumer and not yet done beyond which the client
stops reading the socket (it still writes) until the consumer catches up: the last resort
against a broker that sends more than its window (Mosquitto 2.0 does, to a client it had
queued messages for)."""
MAX_QUEUED = 60_000
"""Predictions paho holds while disconnected; beyond this ``publish`` refuses them."""


class _Flag:
    __slots__ = ("set",)

    def __init__(self) -> None:
        self.set = False


class _WakeSocket(socket.socket):
    """One end of the network thread's wake-up pair: a byte is sent only if none is unread.

    ``flag.set`` means a wake-up byte was sent and the network thread has not read it yet;
    it is cleared *after* the read, so a publisher that skips its byte has queued its
    packet before the network thread reads and then writes the queue.
    """

    flag: _Flag

    def send(self, data: ReadableBuffer, flags: int = 0, /) -> int:
        if self.flag.set:
            return len(memoryview(data))
        self.flag.set = True
        return super().send(data, flags)

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        try:
            return super().recv(bufsize, flags)
        finally:
            self.flag.set = False


def _wake_pair() -> tuple[socket.socket, socket.socket]:
    flag = _Flag()
    ends = []
    for end in socket.socketpair():
        wake = _WakeSocket(fileno=end.detach())
        wake.flag = flag
        wake.setblocking(False)
        ends.append(wake)
    return ends[0], ends[1]


class BufferedClient(paho.Client):
    """A paho client whose socket I/O is buffered; the MQTT protocol is paho's.

    It hooks paho's ``_sock_recv`` and ``_sock_send`` (paho-mqtt 2.2). Plain-TCP reads
    are served from one 64 KiB ``recv`` (TLS reads are paho's own); :meth:`loop_read`
    goes on while buffered bytes are left, so ``select`` never waits with data already
    read. Writes are collected and sent at the end of :meth:`loop_write`;
    :meth:`want_write` stays true while some are left, so ``select`` waits for the socket
    to take them. The buffers belong to one socket and are dropped with it on a
    reconnect. :meth:`loop_start` is paho's, with a wake-up socket
    pair that sends one byte per wake-up instead of one per packet.

    Why hook paho's private methods at all (issue 13 asks for a same-run A/B): ``python -m
    bench runtime`` drains the same 60,000-reading backlog with this class and with paho as it
    is (``bench/runtime_plain.py``, only the public ``loop_read`` overridden). On 2026-11-30
    the hooks gave **1.87×** the throughput at half the CPU per reading (159 against 315 µs;
    2.23× on a loaded machine; ``bench/results/runtime.md``). The hooks pin paho to 2.2.x;
    a paho upgrade must re-run that A/B before it may drop them.
    """

    READ_SIZE = 65_536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold_reads: Callable[[float], bool] | None = None
        """If set and true (it may wait up to the given seconds), :meth:`loop_read` reads nothing."""
        self._io_sock: object | None = None
        self._rbuf = b""
        self._rpos = 0
        self._wbuf = bytearray()

    def loop_start(self) -> MQTTErrorCode:
        if self._thread is not None:
            return MQTTErrorCode.MQTT_ERR_INVAL
        self._sockpairR, self._sockpairW = _wake_pair()
        self._thread_terminate = False
        self._thread = threading.Thread(
            target=self._thread_main, name=f"paho-mqtt-client-{self._client_id.decode()}", daemon=True
        )
        self._thread.start()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _io_check(self) -> None:
        if self._sock is not self._io_sock:
            self._io_sock = self._sock
            self._rbuf = b""
            self._rpos = 0
            self._wbuf = bytearray()

    def _sock_recv(self, bufsize: int) -> bytes:
        self._io_check()
        if isinstance(self._sock, ssl.SSLSocket):
            # TLS buffers itself. A large read returns one record, and the next may already
            # sit decrypted-to-be inside OpenSSL, where neither select() nor pending() sees
            # it: the loop would wait for bytes it already has. paho's small reads keep
            # pending() true instead (tests/integration/test_runtime_tls.py).
            return super()._sock_recv(bufsize)
        if self._rpos >= len(self._rbuf):
            if self.hold_reads is not None and self.hold_reads(0.0):
                # Held: no new read, not even to finish a packet that began at the end of the
                # last one (paho keeps the part it has and asks again later). Without this a
                # packet straddling the end of each read chained read after read, and the
                # queue grew past its capacity by more than one read (833 of 20 + 697 seen).
                raise BlockingIOError
            data = super()._sock_recv(max(bufsize, self.READ_SIZE))
            if len(data) <= bufsize:
                return data
            self._rbuf, self._rpos = data, 0
        start = self._rpos
        self._rpos = min(start + bufsize, len(self._rbuf))
        return self._rbuf[start : self._rpos]

    def _sock_send(self, buf: bytes | bytearray) -> int:
        self._io_check()
        self._wbuf += buf
        if buf[:1] == b"\xe0":  # DISCONNECT: paho closes the socket right after writing it
            self._flush()
        return len(buf)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        if self.hold_reads is not None and self.hold_reads(0.005):
            # The socket stays readable, so the loop comes back here after its writes.
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        rc = super().loop_read(max_packets)
        ok = MQTTErrorCode.MQTT_ERR_SUCCESS
        while rc == ok and self._sock is not None and self._rpos < len(self._rbuf):
            rc = super().loop_read(max_packets)
        return rc

    def loop_write(self) -> MQTTErrorCode:
        rc = super().loop_write()
        self._flush()
        return rc

    def want_write(self) -> bool:
        return super().want_write() or bool(self._wbuf)

    def _flush(self) -> None:
        self._io_check()
        if not self._wbuf or self._sock is None:
            return
        try:
            sent = super()._sock_send(self._wbuf)
        except BlockingIOError:
            return  # want_write() holds: select waits until the socket takes more
        except OSError as exc:
            # The socket is gone; the read side notices and paho reconnects. QoS 1 messages
            # are sent again then; the readings whose PUBACK is lost come again.
            log.debug("Failed to write to the MQTT socket: %s", exc)
            return
        del self._wbuf[:sent]


def client(
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    tls: bool = False,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    reconnect_delay: tuple[int, int] = (1, 30),
    manual_ack: bool = False,
    kind: type[paho.Client] = paho.Client,
) -> paho.Client:
    """A paho client as every EdgeModel program builds it: MQTT 5, callback API 2, optional TLS.

    The one factory used by the runtime, the simulator, the test helpers and the benchmarks.
    ``kind`` is the client class (:class:`BufferedClient` for the runtime); credentials are
    set when ``username`` is given; paho reconnects with backoff between ``reconnect_delay``
    seconds. It does not connect: callers connect as their session needs.
    """
    c = kind(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5,
        manual_ack=manual_ack,
    )
    if username is not None:
        c.username_pw_set(username, password)
    if tls:
        c.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    c.reconnect_delay_set(min_delay=reconnect_delay[0], max_delay=reconnect_delay[1])
    return c


class Connection:
    """One MQTT client subscribed to ``topics`` at QoS 1, publishing at ``output_qos``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        topics: Sequence[str],
        on_message: Callable[[str, bytes], object],
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        session_expiry: int = 3600,
        keepalive: int = 30,
        output_qos: int = 1,
        publish_window: int = PUBLISH_WINDOW,
        max_pending: int = MAX_PENDING,
        on_connection_change: Callable[[bool], None] = lambda connected: None,
    ) -> None:
        self.host = host
        self.port = port
        self.topics = list(topics)
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        self.output_qos = output_qos
        self.publish_window = publish_window
        self.max_pending = max_pending
        self._on_message = on_message
        self._on_connection_change = on_connection_change
        self._connected = threading.Event()
        self._subscribe_mid: int | None = None
        # Readings handed to the consumer on this connection and not yet acknowledged, as
        # (message id, QoS), oldest first: MQTT wants PUBACKs in the order the PUBLISHes came.
        self._arrivals: collections.deque[tuple[int, int]] = collections.deque()
        # Readings handed over on an earlier connection and not yet done: their message ids
        # died with it (the broker sends them again), so they are done without a PUBACK.
        self._stale = 0
        # Batches the consumer is done with, oldest first, waiting for the broker to take their
        # predictions: [readings, prediction message ids, how many of those are acknowledged].
        self._finished: collections.deque[list[Any]] = collections.deque()
        self._ack_lock = threading.Lock()
        self._room = threading.Event()
        self._closing = False
        self._window_open = threading.Event()
        self._output_connected = threading.Event()

        def make(name: str, *, manual_ack: bool) -> BufferedClient:
            made = client(
                name,
                username=username,
                password=password,
                tls=tls,
                ca_file=ca_file,
                cert_file=cert_file,
                key_file=key_file,
                manual_ack=manual_ack,
                kind=BufferedClient,
            )
            return cast(BufferedClient, made)

        self.client = make(client_id, manual_ack=True)
        self.client.hold_reads = self._hold_reads
        self.client.on_connect = self._handle_connect
        self.client.on_disconnect = self._handle_disconnect
        self.client.on_subscribe = self._handle_subscribe
        self.client.on_message = self._handle_message
        # Predictions go out on a second connection: its PUBACKs never wait behind readings.
        self.output = make(f"{client_id}-out", manual_ack=False)
        self.output.max_inflight_messages_set(0)  # no limit: publish writes at once
        self.output.max_queued_messages_set(MAX_QUEUED)
        self.output.on_connect = self._handle_output_connect
        self.output.on_disconnect = self._handle_output_disconnect
        self.output.on_publish = self._handle_publish

    @property
    def connected(self) -> bool:
        """Connected and subscribed: the broker has acknowledged the subscription."""
        return self._connected.is_set()

    @property
    def pending(self) -> int:
        """Readings handed to the consumer and not yet acknowledged to the broker."""
        return self._stale + len(self._arrivals)

    @property
    def unacknowledged(self) -> int:
        """Predictions published at QoS 1 whose PUBACK has not come back yet."""
        # paho keeps each QoS > 0 message it sent in ``_out_messages`` until its PUBACK came.
        return len(self.output._out_messages)

    def start(self) -> Connection:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.session_expiry
        # Unacknowledged readings the broker may send: bounds what arrives beyond the queue.
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self.output.connect_async(self.host, self.port, keepalive=self.keepalive, clean_start=True)
        self.output.loop_start()
        self.client.connect_async(
            self.host, self.port, keepalive=self.keepalive, clean_start=False, properties=props
        )
        self.client.loop_start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        """Wait until both connections are up and the input is subscribed."""
        deadline = time.monotonic() + timeout
        return self._connected.wait(timeout) and self._output_connected.wait(
            max(0.0, deadline - time.monotonic())
        )

    def close_input(self) -> None:
        """Take no more readings: later ones stay unacknowledged, so the broker keeps them.

        The readings already with the consumer are acknowledged as it finishes them
        (:meth:`done`), before the process stops.
        """
        with self._ack_lock:
            self._closing = True
        self._room.set()

    def flush(self, timeout: float) -> bool:
        """Wait until every QoS 1 prediction is acknowledged (or ``timeout``); False if not."""
        deadline = time.monotonic() + timeout
        while self.unacknowledged > 0 and self._output_connected.is_set():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return self.unacknowledged <= 0

    def stop(self) -> None:
        """Disconnect (the broker keeps the session) and stop the network threads."""
        try:
            self.client.disconnect()
            self.output.disconnect()
        finally:
            self.client.loop_stop()
            self.output.loop_stop()
            self._set_connected(False)

    def done(self, readings: int, predictions: Sequence[int] = ()) -> None:
        """The consumer is done with its next ``readings`` readings, in arrival order.

        ``predictions`` are the message ids :meth:`publish` gave for what it made of them;
        the readings are acknowledged once the broker has acknowledged those (at once when
        the output is QoS 0, or nothing was published), after every earlier batch.
        """
        if readings <= 0 and not self._finished:
            return
        mids = list(predictions) if self.output_qos else []
        with self._ack_lock:
            self._finished.append([readings, mids, 0])
            self._settle_locked(None)

    def settle(self) -> None:
        """Acknowledge the readings whose predictions the broker has taken since the last call."""
        if self._finished:
            with self._ack_lock:
                self._settle_locked(None)

    def _settle_locked(self, acked: int | None) -> None:
        # A message id stays in paho's ``_out_messages`` until its PUBACK came (paho-mqtt 2.2;
        # ``unacknowledged`` reads the same); ``acked`` is the one paho is reporting right now,
        # before it drops it from there. Ids are unique among the unacknowledged ones.
        waiting = self.output._out_messages
        finished = self._finished
        while finished:
            batch = finished[0]
            mids, i = batch[1], batch[2]
            while i < len(mids) and (mids[i] == acked or mids[i] not in waiting):
                i += 1
            batch[2] = i
            if i < len(mids):
                break
            finished.popleft()
            self._acknowledge_locked(batch[0])
        if self.pending < self.max_pending:
            self._room.set()

    def _acknowledge_locked(self, readings: int) -> None:
        stale = min(readings, self._stale)
        self._stale -= stale
        readings -= stale
        arrivals = self._arrivals
        ack = self.client.ack
        while readings > 0 and arrivals:
            mid, qos = arrivals.popleft()
            if qos:
                ack(mid, qos)
            readings -= 1

    def publish(self, topic: str, payload: bytes) -> int | None:
        """Queue a message at ``output_qos``; its message id, or None if the client refused it
        (queue full, bad topic)."""
        try:
            info = self.output.publish(topic, payload, qos=self.output_qos)
        except ValueError:  # a topic paho refuses
            return None
        return info.mid if info.rc in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN) else None

    def wait_for_window(self, timeout: float) -> bool:
        """While connected, wait until fewer than ``publish_window`` predictions are unacknowledged.

        Returns False after ``timeout``. While disconnected it returns at once: paho keeps the
        predictions (up to :data:`MAX_QUEUED`) and sends them after the reconnect.
        """
        if self.unacknowledged < self.publish_window:
            return True
        deadline = time.monotonic() + timeout
        while self.unacknowledged >= self.publish_window and self._output_connected.is_set():
            self._window_open.clear()
            if self.unacknowledged < self.publish_window:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._window_open.wait(min(remaining, 0.05))
        return True

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
        with self._ack_lock:
            # Unacknowledged readings belong to the previous connection; the broker sends them
            # again (they are already queued here, and are refused as duplicates).
            self._stale += len(self._arrivals)
            self._arrivals.clear()
        session_present = bool(getattr(flags, "session_present", False))
        # Connected means subscribed: until the SUBACK, a reading published now may reach a
        # broker that does not know the subscription yet and be dropped (a new session).
        _, self._subscribe_mid = client.subscribe([(t, SubscribeOptions(qos=1)) for t in self.topics])
        log.info(
            "Connected to MQTT broker %s:%s",
            self.host,
            self.port,
            extra={"session_present": session_present, "topics": self.topics},
        )

    def _handle_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = {t: str(rc) for t, rc in zip(self.topics, reason_codes, strict=False) if rc.is_failure}
        if refused:
            # Still connected, for the topics granted; each refused one is named once here.
            log.error(
                "The MQTT broker refused the subscription to %s (%d of %d topics)",
                ", ".join(f"{t} ({rc})" for t, rc in refused.items()),
                len(refused),
                len(self.topics),
                extra={"refused": refused},
            )
        self._set_connected(True)

    def _handle_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if self.connected:
            log.warning("Lost connection to MQTT broker %s:%s: %s", self.host, self.port, reason_code)
        self._set_connected(False)
        self._window_open.set()

    def _handle_output_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            log.warning(
                "Failed to connect the output to MQTT broker %s:%s: %s", self.host, self.port, reason_code
            )
            return
        self._output_connected.set()

    def _handle_output_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if self._output_connected.is_set():
            log.warning(
                "Lost the output connection to MQTT broker %s:%s: %s", self.host, self.port, reason_code
            )
        self._output_connected.clear()
        self._window_open.set()

    def _handle_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        if self.output_qos and self._finished:
            with self._ack_lock:
                self._settle_locked(mid)
        if len(self.output._out_messages) < self.publish_window:
            self._window_open.set()

    def _handle_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        qos = message.qos
        with self._ack_lock:
            if self._closing:
                return  # not acknowledged: the broker delivers it again to the next session
            try:
                try:
                    topic = message.topic
                except UnicodeDecodeError:  # the broker should refuse such topics; be safe anyway
                    topic = bytes(message._topic).decode("utf-8", "replace")
                self._on_message(topic, bytes(message.payload))
            except Exception:
                # Not with the consumer, so not acknowledged: the broker sends it again
                # after a reconnect.
                log.exception("Failed to queue an MQTT message")
                return
            self._arrivals.append((message.mid, qos))
            if self.pending >= self.max_pending:
                self._room.clear()

    def _hold_reads(self, timeout: float) -> bool:
        """The broker sends beyond its window: read no more until the consumer catches up."""
        if self.pending < self.max_pending or self._closing:
            return False
        return not self._room.wait(timeout)
