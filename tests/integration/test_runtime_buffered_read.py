"""The runtime's buffered MQTT reads stop at the first full buffer once reads are held.

Over a real socket pair, three reads' worth of PUBLISH packets wait in the kernel. The
client's ``hold_reads`` says "full" after the first message. One ``loop_read`` may hand on
the messages of the read it already made (they are in memory), but must not read again,
not even to finish a packet that straddles the end of that read: before the fix each
straddling packet pulled in a whole new read, and the queue in
test_runtime_backpressure grew past its bound (833 readings against 20 + 697).
"""

from __future__ import annotations

import select
import socket
import threading

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edgemodel_runtime import mqtt

TOPIC = b"plant/sensors/d1"


def _publish(payload: bytes) -> bytes:
    """An MQTT 5 PUBLISH at QoS 0: topic, empty properties, payload."""
    body = len(TOPIC).to_bytes(2, "big") + TOPIC + b"\x00" + payload
    length, remaining = b"", len(body)
    while True:
        byte, remaining = remaining % 128, remaining // 128
        length += bytes([byte | (0x80 if remaining else 0)])
        if not remaining:
            break
    return b"\x30" + length + body


def test_a_held_client_reads_no_further_than_the_buffer_it_has() -> None:
    # 1,000-byte payloads: a 64 KiB read ends inside a packet.
    packet = _publish(b"x" * 1000)
    count = 3 * mqtt.BufferedClient.READ_SIZE // len(packet)
    per_read = mqtt.BufferedClient.READ_SIZE // len(packet) + 1
    ours, broker = socket.socketpair()
    client = mqtt.BufferedClient(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id="held", protocol=paho.MQTTv5
    )
    received: list[bytes] = []
    client.on_message = lambda c, u, m: received.append(m.payload)
    try:
        # The "broker" writes everything, blocking while the socket pair's buffers are full.
        sender = threading.Thread(target=broker.sendall, args=(packet * count,), daemon=True)
        sender.start()
        ours.setblocking(False)
        client._sock = ours  # as paho's connect leaves it; the handshake is not under test
        client.hold_reads = lambda timeout: len(received) >= 1
        while not received:  # until the first message is in (the sender may start late)
            assert select.select([ours], [], [], 10)[0], "nothing arrived"
            client.loop_read()
        for _ in range(5):
            client.loop_read()
        # At most the rest of the read that completed the first message (and that message).
        assert len(received) <= per_read + 1, (len(received), per_read)
        # Let go: everything else arrives, in order, nothing lost.
        client.hold_reads = None
        while len(received) < count:
            assert client.loop_read() == paho.MQTT_ERR_SUCCESS
        assert received == [b"x" * 1000] * count
        sender.join(10)
        assert not sender.is_alive()
    finally:
        client._sock = None
        ours.close()
        broker.close()
