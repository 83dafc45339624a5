"""Load generator and sink for the runtime benchmark, each run as its own process.

``python -m bench.mqttclient publish ...`` publishes synthetic readings, paced to a rate or
as fast as it can; ``python -m bench.mqttclient subscribe ...`` receives messages and
records when each arrived (and, with ``--latency``, ``arrival - payload["ts"]``). Both print
one JSON line with what they measured; the subscriber prints ``ready`` first, once
subscribed. Running them as processes keeps them off the measured process' GIL.

I/O: MQTT, stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import random
import signal
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edgemodel_runtime import mqtt

__all__ = ["main", "payload"]

MAX_OUTSTANDING = 20_000
"""Unacknowledged QoS 1 messages before the publisher waits (paho's message ids wrap at 65,535)."""


def payload(device: int, step: int, ts: float, rng: random.Random) -> bytes:
    """One reading shaped like ``edgemodel_dev.testing.readings`` (the model's training data)."""
    phase = device * 0.7
    temp = 20 + 5 * math.sin(2 * math.pi * step / 50 + phase) + rng.gauss(0, 0.3)
    humidity = 50 + 10 * math.cos(2 * math.pi * step / 50 + phase) + rng.gauss(0, 0.3)
    return json.dumps({"device": f"dev-{device}", "ts": ts, "temp": temp, "humidity": humidity}).encode()


def _client(args: argparse.Namespace) -> paho.Client:
    return mqtt.client(args.client_id, username=args.username, password=args.password)


def _connect(c: paho.Client, args: argparse.Namespace, *, persistent: bool) -> None:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if persistent:
        props.SessionExpiryInterval = 3600
    c.connect(args.host, args.port, keepalive=120, clean_start=not persistent, properties=props)


def publish(args: argparse.Namespace) -> dict[str, Any]:
    c = _client(args)
    c.max_inflight_messages_set(args.inflight)
    c.max_queued_messages_set(0)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    _connect(c, args, persistent=False)
    c.loop_start()
    if not connected.wait(10):
        raise SystemExit("publisher did not connect")
    rng = random.Random(args.seed)
    infos: collections.deque[paho.MQTTMessageInfo] = collections.deque()
    start = time.monotonic()
    sent = 0
    tick = 0.001
    while sent < args.count:
        if args.rate > 0:
            due = min(args.count, int((time.monotonic() - start) * args.rate) + 1)
            if sent >= due:
                time.sleep(tick)
                continue
        else:
            due = args.count
        while sent < due:
            d = sent % args.devices
            step = args.step0 + sent // args.devices
            info = c.publish(
                f"{args.prefix}/sensors/dev-{d}", payload(d, step, time.time(), rng), qos=args.qos
            )
            if args.qos:
                infos.append(info)
                if len(infos) > MAX_OUTSTANDING:
                    # Back pressure: the broker is behind. Offered load then exceeds what is achieved.
                    infos.popleft().wait_for_publish(60)
            sent += 1
            if args.rate > 0 and sent % 50 == 0:
                break  # back to pacing
    publish_done = time.monotonic() - start
    while infos:
        infos.popleft().wait_for_publish(60)
    # The last message must be acknowledged too.
    last = c.publish(f"{args.prefix}/control", b"end", qos=1)
    last.wait_for_publish(60)
    elapsed = time.monotonic() - start
    c.disconnect()
    c.loop_stop()
    return {
        "sent": sent,
        "seconds": elapsed,
        "publish_seconds": publish_done,
        "offered_rate": args.rate,
        "achieved_rate": sent / publish_done if publish_done else math.nan,
        "cpu_seconds": time.process_time(),
    }


def subscribe(args: argparse.Namespace) -> dict[str, Any]:
    c = _client(args)
    arrivals: list[float] = []
    latencies: list[float] = []
    lock = threading.Lock()
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        now = time.time()
        if args.latency:
            try:
                ts = float(json.loads(msg.payload)["ts"])
            except (ValueError, KeyError, TypeError):
                return
            with lock:
                latencies.append(now - ts)
                arrivals.append(time.monotonic())
        else:
            with lock:
                arrivals.append(time.monotonic())
        if args.count and len(arrivals) >= args.count:
            done.set()

    c.on_message = on_message
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe([(args.topic, SubscribeOptions(qos=args.qos))])
    c.on_subscribe = lambda *a: subscribed.set()
    _connect(c, args, persistent=args.persistent)
    c.loop_start()
    if not subscribed.wait(10):
        raise SystemExit("subscriber did not subscribe")
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    deadline = time.monotonic() + args.timeout
    last_n, last_change = 0, time.monotonic()
    while not (done.is_set() or stop.is_set()) and time.monotonic() < deadline:
        time.sleep(0.05)
        n = len(arrivals)
        if n != last_n:
            last_n, last_change = n, time.monotonic()
        elif n and args.idle and time.monotonic() - last_change > args.idle:
            break
    c.disconnect()
    c.loop_stop()
    with lock:
        out: dict[str, Any] = {"received": len(arrivals), "cpu_seconds": time.process_time()}
        if arrivals:
            out["first"] = arrivals[0]
            out["last"] = arrivals[-1]
            out["arrivals"] = arrivals if args.keep_arrivals else []
        if args.latency:
            out["latencies"] = latencies
    return out


def subscribe_gmqtt(args: argparse.Namespace) -> dict[str, Any]:
    """The bare subscriber with gmqtt (asyncio, its own MQTT codec) instead of paho.

    Same contract as :func:`subscribe` (``ready`` once subscribed, then one JSON line), so the
    benchmark can set the two clients' ceilings side by side in one run. gmqtt acknowledges a
    QoS 1 message when ``on_message`` returns.
    """
    import gmqtt  # noqa: PLC0415 - optional: only this subscriber needs it

    arrivals: list[float] = []

    async def run() -> None:
        done = asyncio.Event()
        subscribed = asyncio.Event()
        c = gmqtt.Client(args.client_id, clean_session=not args.persistent)
        c.set_auth_credentials(args.username, args.password)

        def on_message(client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
            arrivals.append(time.monotonic())
            if args.count and len(arrivals) >= args.count:
                done.set()
            return 0  # PUBACK reason: success

        c.on_message = on_message
        c.on_subscribe = lambda *a: subscribed.set()
        await c.connect(args.host, args.port, keepalive=120)
        c.subscribe(args.topic, qos=args.qos)
        await asyncio.wait_for(subscribed.wait(), 10)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        deadline = time.monotonic() + args.timeout
        last_n, last_change = 0, time.monotonic()
        while not (done.is_set() or stop.is_set()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            n = len(arrivals)
            if n != last_n:
                last_n, last_change = n, time.monotonic()
            elif n and args.idle and time.monotonic() - last_change > args.idle:
                break
        await c.disconnect()

    asyncio.run(run())
    out: dict[str, Any] = {"received": len(arrivals), "cpu_seconds": time.process_time(), "library": "gmqtt"}
    if arrivals:
        out["first"] = arrivals[0]
        out["last"] = arrivals[-1]
        out["arrivals"] = arrivals if args.keep_arrivals else []
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mqttclient")
    p.add_argument("mode", choices=["publish", "subscribe"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--username", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--qos", type=int, default=1)
    # publish
    p.add_argument("--prefix", default="bench")
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--rate", type=float, default=0.0, help="readings/s; 0 = as fast as possible")
    p.add_argument("--inflight", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step0", type=int, default=0, help="first per-device step (continues a stream)")
    # subscribe
    p.add_argument("--topic", default="bench/#")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--idle", type=float, default=0.0, help="stop after this long without a message")
    p.add_argument("--latency", action="store_true")
    p.add_argument("--persistent", action="store_true")
    p.add_argument("--keep-arrivals", action="store_true")
    p.add_argument(
        "--library", choices=["paho", "gmqtt"], default="paho", help="the subscriber's MQTT client"
    )
    args = p.parse_args(argv)
    if args.mode == "publish":
        out = publish(args)
    else:
        out = subscribe_gmqtt(args) if args.library == "gmqtt" else subscribe(args)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
