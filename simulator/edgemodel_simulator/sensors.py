"""A plant-floor sensor simulator: devices publishing JSON readings over MQTT, with drift on command.

Each device reports ``{"device_id", "ts", "temperature", "humidity"}``. Per step ``k``
(``rate`` steps per simulated second) and device:

- humidity follows a slow sine (period 120 s) plus AR(1) noise;
- temperature follows its own past and the humidity, with noise::

      T[k] = mu + PHI * (T[k-1] - mu) + BETA * (h[k] - 50) + drift[k] + N(0, NOISE)

  with ``mu`` the line's setpoint of 22 °C (± 0.3 per device), so a ridge model on
  temperature, humidity and 3 lags predicts the next temperature with an RMSE of about
  0.27.

Drift changes that relationship from a change point on (``drift[k]``, in the
temperature equation; ``size`` is therefore the one-step error a model trained before
the change makes, and the temperature level moves by ``size / (1 - PHI)``):

- ``abrupt``: a step: ``size`` from the change point on;
- ``gradual``: a ramp from 0 to ``size`` over ``ramp_seconds``;
- ``seasonal``: a daily-like sine component of amplitude ``size`` and period
  ``period_seconds`` appears.

:class:`Plant` is the pure generator (deterministic for a seed; no I/O, no clock beyond
the ``start_ts`` it is given). :func:`write_history` and :func:`read_replay` read and
write CSV (columns ``device``, ``ts``, then the fields, as training windows have).
:class:`Publisher` and :func:`publish` are the thin MQTT layer (paho, QoS 1, username
and password, optional TLS). ``main`` is the ``edgemodel-simulator`` CLI.

Drift on command while running: publish ``{"drift": "abrupt"}`` (optionally with
``"size"``) to the control topic ``edgemodel/simulator/control``.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import json
import logging
import math
import pathlib
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import paho.mqtt.client as paho

from edgemodel_runtime import mqtt

__all__ = [
    "CONTROL_TOPIC",
    "DRIFT_KINDS",
    "Broker",
    "Drift",
    "Plant",
    "Publisher",
    "Simulator",
    "main",
    "publish",
    "read_replay",
    "to_payload",
    "write_history",
]

log = logging.getLogger(__name__)

DriftKind = Literal["none", "abrupt", "gradual", "seasonal"]
DRIFT_KINDS: tuple[DriftKind, ...] = ("none", "abrupt", "gradual", "seasonal")
CONTROL_TOPIC = "edgemodel/simulator/control"
DEFAULT_TOPIC = "plant/line1/{device}/telemetry"
FIELDS = ("temperature", "humidity")

SETPOINT = 22.0
SETPOINT_SPREAD = 0.3
"""Devices on a line share its setpoint, give or take this. With a wide spread (19-25 °C), a
model pooled over devices learns a near random walk (lag coefficients summing to ~1.07)
that follows any level change, so an abrupt drift of 3 would raise its RMSE only from
0.29 to 0.39; with 0.3 it learns PHI and BETA and the same drift raises it to 2.7."""
PHI = 0.8
"""How much of the temperature's deviation from its mean carries over to the next step."""
BETA = -0.12
"""Degrees per percent of relative humidity above 50."""
NOISE = 0.25
"""Standard deviation of the temperature's innovation."""
HUMIDITY_PERIOD = 120.0
HUMIDITY_AMPLITUDE = 12.0
HUMIDITY_NOISE = 0.8


@dataclasses.dataclass(frozen=True)
class Drift:
    """A change of the temperature equation from step ``start`` on."""

    kind: DriftKind = "none"
    start: int = 0
    """The step (per device) of the change point."""
    size: float = 3.0
    ramp_steps: int = 300
    """``gradual``: steps from 0 to ``size``."""
    period_steps: int = 1500
    """``seasonal``: steps of one period."""

    def offset(self, step: int) -> float:
        """The drift term at ``step``.

        >>> d = Drift("gradual", start=10, size=2.0, ramp_steps=4)
        >>> [d.offset(k) for k in (9, 10, 12, 14, 20)]
        [0.0, 0.0, 1.0, 2.0, 2.0]
        >>> Drift("abrupt", start=5, size=3.0).offset(5)
        3.0
        """
        if self.kind == "none" or step < self.start:
            return 0.0
        elapsed = step - self.start
        if self.kind == "abrupt":
            return self.size
        if self.kind == "gradual":
            return self.size * min(1.0, elapsed / max(self.ramp_steps, 1))
        return self.size * math.sin(2 * math.pi * elapsed / max(self.period_steps, 1))


@dataclasses.dataclass
class _Device:
    name: str
    rng: np.random.Generator
    mean: float
    phase: float
    temperature: float
    humidity_noise: float = 0.0


class Plant:
    """Devices on one line; :meth:`step` gives each device's next reading, in device order.

    Deterministic for a ``seed``: each device draws from its own stream, so adding a
    device does not change the others.

    >>> a, b = Plant(devices=2, seed=1, start_ts=0.0), Plant(devices=2, seed=1, start_ts=0.0)
    >>> a.readings(3) == b.readings(3)
    True
    >>> [r["device_id"] for r in a.step()], a.step()[0]["ts"]  # 5 steps per second
    (['dev-01', 'dev-02'], 0.8)
    """

    def __init__(
        self,
        *,
        devices: int = 3,
        rate: float = 5.0,
        seed: int = 0,
        start_ts: float | None = None,
        drift: Drift | None = None,
        device_prefix: str = "dev-",
    ) -> None:
        if devices < 1 or rate <= 0:
            raise ValueError("devices must be at least 1 and rate positive")
        self.rate = rate
        self.seed = seed
        self.start_ts = time.time() if start_ts is None else start_ts
        self.drift = drift or Drift()
        self.steps = 0
        """Steps taken per device so far."""
        self._devices = []
        for d in range(devices):
            rng = np.random.default_rng([seed, d])
            mean = SETPOINT + float(rng.uniform(-SETPOINT_SPREAD, SETPOINT_SPREAD))
            self._devices.append(
                _Device(
                    name=f"{device_prefix}{d + 1:02d}",
                    rng=rng,
                    mean=mean,
                    phase=float(rng.uniform(0, 2 * math.pi)),
                    temperature=mean,
                )
            )

    @property
    def devices(self) -> list[str]:
        return [d.name for d in self._devices]

    @property
    def elapsed(self) -> float:
        """Simulated seconds since ``start_ts``."""
        return self.steps / self.rate

    def seconds_to_steps(self, seconds: float) -> int:
        return round(seconds * self.rate)

    def inject(
        self,
        kind: DriftKind | str,
        *,
        size: float | None = None,
        at_step: int | None = None,
        ramp_seconds: float | None = None,
        period_seconds: float | None = None,
    ) -> Drift:
        """Start a drift now (or at ``at_step``); ``none`` ends one. Returns the new drift."""
        if kind not in DRIFT_KINDS:
            raise ValueError(f"drift must be one of {', '.join(DRIFT_KINDS)}, got {kind!r}")
        old = self.drift
        self.drift = Drift(
            kind=next(k for k in DRIFT_KINDS if k == kind),
            start=self.steps if at_step is None else at_step,
            size=old.size if size is None else size,
            ramp_steps=old.ramp_steps if ramp_seconds is None else self.seconds_to_steps(ramp_seconds),
            period_steps=old.period_steps
            if period_seconds is None
            else self.seconds_to_steps(period_seconds),
        )
        return self.drift

    def step(self) -> list[dict[str, Any]]:
        """The next reading of every device, all with the same timestamp."""
        k = self.steps
        ts = self.start_ts + k / self.rate
        offset = self.drift.offset(k)
        out = []
        for dev in self._devices:
            dev.humidity_noise = 0.9 * dev.humidity_noise + float(dev.rng.normal(0, HUMIDITY_NOISE))
            humidity = (
                50.0
                + HUMIDITY_AMPLITUDE * math.sin(2 * math.pi * (k / self.rate) / HUMIDITY_PERIOD + dev.phase)
                + dev.humidity_noise
            )
            dev.temperature = (
                dev.mean
                + PHI * (dev.temperature - dev.mean)
                + BETA * (humidity - 50.0)
                + offset
                + float(dev.rng.normal(0, NOISE))
            )
            out.append(
                {
                    "device_id": dev.name,
                    "ts": round(ts, 6),
                    "temperature": round(dev.temperature, 4),
                    "humidity": round(humidity, 4),
                }
            )
        self.steps += 1
        return out

    def stream(self) -> Iterator[list[dict[str, Any]]]:
        """Steps without end."""
        while True:
            yield self.step()

    def readings(self, n: int) -> list[dict[str, Any]]:
        """The next ``n`` steps of every device, interleaved in time order (``n × devices`` readings)."""
        return [r for _ in range(n) for r in self.step()]

    def history(self, n: int) -> list[dict[str, Any]]:
        """``n`` steps per device that end just before ``start_ts``, without drift; ``self`` is unchanged."""
        past = Plant(
            devices=len(self._devices),
            rate=self.rate,
            seed=self.seed + 1_000_003,
            start_ts=self.start_ts - n / self.rate,
        )
        for mine, theirs in zip(self._devices, past._devices, strict=True):
            theirs.name = mine.name
        return past.readings(n)


Simulator = Plant
"""The same class under the name the CLI uses."""


# --------------------------------------------------------------------------- CSV


def write_history(plant: Plant, path: str | pathlib.Path, *, readings_per_device: int = 1000) -> pathlib.Path:
    """Write ``readings_per_device`` steps of history before ``plant.start_ts`` as a training CSV."""
    return write_csv(plant.history(readings_per_device), path)


def write_csv(readings: Iterable[dict[str, Any]], path: str | pathlib.Path) -> pathlib.Path:
    """Readings as CSV with the columns ``device``, ``ts``, ``temperature``, ``humidity``."""
    location = pathlib.Path(path)
    location.parent.mkdir(parents=True, exist_ok=True)
    with location.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["device", "ts", *FIELDS])
        for r in readings:
            writer.writerow([r["device_id"], repr(float(r["ts"])), *(repr(float(r[k])) for k in FIELDS)])
    return location


def read_replay(lines: Iterable[str]) -> list[dict[str, Any]]:
    """Payloads from CSV text with the columns ``device``, ``ts`` and fields, sorted by ``ts``.

    Numbers stay numbers, empty cells are left out, device ids stay strings.

    >>> for p in read_replay(["device,ts,temperature,humidity", "7,2,21.5,40", "a,1,20,"]):
    ...     print(p)
    {'device_id': 'a', 'ts': 1.0, 'temperature': 20.0}
    {'device_id': '7', 'ts': 2.0, 'temperature': 21.5, 'humidity': 40.0}
    """
    reader = csv.DictReader(lines)
    if reader.fieldnames is None or "device" not in reader.fieldnames or "ts" not in reader.fieldnames:
        raise ValueError("replay CSV needs the columns device and ts")
    out = []
    for number, row in enumerate(reader, start=2):
        try:
            payload: dict[str, Any] = {"device_id": str(row["device"]), "ts": float(row["ts"])}
            for key, value in row.items():
                if key in ("device", "ts") or key is None or value in (None, ""):
                    continue
                payload[key] = float(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"replay CSV line {number}: {exc}") from exc
        out.append(payload)
    out.sort(key=lambda p: p["ts"])  # stable: equal timestamps keep their file order
    return out


# --------------------------------------------------------------------------- MQTT


def to_payload(reading: dict[str, Any]) -> bytes:
    return json.dumps(reading, separators=(",", ":")).encode()


@dataclasses.dataclass(frozen=True)
class Broker:
    """Where and how to connect: MQTT 5 with username and password, optional TLS."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None

    def client(self, client_id: str) -> paho.Client:
        """A paho client from the one factory, connecting in the background."""
        client = mqtt.client(
            client_id,
            username=self.username or None,
            password=self.password,
            tls=self.tls,
            ca_file=self.ca_file,
            reconnect_delay=(1, 10),
        )
        client.max_inflight_messages_set(100)
        client.connect_async(self.host, self.port)
        return client


class Publisher:
    """Publishes a :class:`Plant` (or replayed readings) at ``rate`` steps per second, in a thread.

    Listens on ``control_topic`` for ``{"drift": "<kind>", "size": <float>}`` commands;
    they are applied between steps. ``stop()`` ends the thread and disconnects.
    """

    def __init__(
        self,
        plant: Plant | None = None,
        *,
        broker: Broker | None = None,
        topic_template: str = DEFAULT_TOPIC,
        rate: float | None = None,
        count: int | None = None,
        duration: float | None = None,
        replay: Sequence[dict[str, Any]] | None = None,
        speedup: float = 1.0,
        control_topic: str | None = CONTROL_TOPIC,
        client_id: str | None = None,
    ) -> None:
        if (plant is None) == (replay is None):
            raise ValueError("give either a plant or readings to replay")
        self.plant = plant
        self.replay = replay
        self.topic_template = topic_template
        self.rate = rate if rate is not None else (plant.rate if plant is not None else 1.0)
        self.count = count
        self.duration = duration
        self.speedup = speedup
        self.control_topic = control_topic
        self.published = 0
        self._unacked: collections.deque[paho.MQTTMessageInfo] = collections.deque()
        self.commands: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self.run, name="simulator", daemon=True)
        self.client = (broker or Broker()).client(client_id or f"edgemodel-simulator-{id(self):x}")
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self._connected.clear()
        self.client.on_message = self._on_message

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            log.warning("MQTT connection refused: %s", rc)
            return
        if self.control_topic:
            client.subscribe(self.control_topic, qos=1)
        self._connected.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            command = json.loads(message.payload)
            if not isinstance(command, dict) or command.get("drift") not in DRIFT_KINDS:
                raise ValueError(f"expected {{'drift': one of {DRIFT_KINDS}}}")
        except ValueError as exc:
            log.warning("Ignored a control message: %s", exc)
            return
        self.commands.put(command)

    def connect(self, timeout: float = 30.0) -> bool:
        self.client.loop_start()
        return self._connected.wait(timeout)

    def start(self) -> Publisher:
        if not self.connect():
            self.client.loop_stop()
            raise ConnectionError("could not connect to the MQTT broker")
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop publishing, wait (up to ``timeout``) for the broker's acks, disconnect."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while self._unacked and time.monotonic() < deadline:
            self._unacked.popleft().wait_for_publish(max(deadline - time.monotonic(), 0.01))
        self.client.disconnect()
        self.client.loop_stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread to finish (``count``/``duration``/end of replay); True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _apply_commands(self) -> None:
        while not self.commands.empty():
            command = self.commands.get()
            if self.plant is None:
                log.warning("Ignored a drift command: replaying a file")
                continue
            size = command.get("size")
            drift = self.plant.inject(command["drift"], size=None if size is None else float(size))
            log.info("Injected drift", extra={"drift": dataclasses.asdict(drift)})

    def _send(self, readings: Iterable[dict[str, Any]]) -> None:
        for r in readings:
            topic = self.topic_template.replace("{device}", str(r["device_id"]))
            self._unacked.append(self.client.publish(topic, to_payload(r), qos=1))
            self.published += 1
        while self._unacked and self._unacked[0].is_published():
            self._unacked.popleft()

    def _batches(self) -> Iterator[tuple[float, list[dict[str, Any]]]]:
        """``(seconds after the start to send at, readings)``."""
        if self.plant is not None:
            plant = self.plant
            step = 0
            while self.count is None or step < self.count:
                if step == plant.drift.start and plant.drift.kind != "none":
                    log.info("Drift began", extra={"drift": dataclasses.asdict(plant.drift)})
                yield step / (self.rate * self.speedup if self.speedup > 0 else math.inf), plant.step()
                step += 1
            return
        assert self.replay is not None
        if not self.replay:
            return
        first = self.replay[0]["ts"]
        for r in self.replay[: self.count] if self.count is not None else self.replay:
            yield ((r["ts"] - first) / self.speedup if self.speedup > 0 else 0.0), [r]

    def run(self) -> None:
        began = time.monotonic()
        for at, readings in self._batches():
            self._apply_commands()
            if self.duration is not None and at >= self.duration:
                break
            delay = began + at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            if self._stop.is_set():
                break
            self._send(readings)


def publish(
    readings: Iterable[dict[str, Any]],
    *,
    broker: Broker | None = None,
    topic_template: str = DEFAULT_TOPIC,
    timeout: float = 60.0,
) -> int:
    """Publish ``readings`` at once, at QoS 1, and wait until the broker acknowledged them all."""
    client = (broker or Broker()).client(f"edgemodel-simulator-{time.monotonic_ns():x}")
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise ConnectionError("could not connect to the MQTT broker")
        infos = [
            client.publish(topic_template.replace("{device}", str(r["device_id"])), to_payload(r), qos=1)
            for r in readings
        ]
        for info in infos:
            info.wait_for_publish(timeout)
        return len(infos)
    finally:
        client.disconnect()
        client.loop_stop()


# --------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgemodel-simulator",
        description="Publish simulated plant-floor sensor readings over MQTT, with drift on command. "
        f'While running, publish {{"drift": "abrupt"}} to {CONTROL_TOPIC} to inject drift.',
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--username", help="default: $MQTT_USERNAME")
    p.add_argument("--password", help="default: $MQTT_PASSWORD")
    p.add_argument("--tls", action="store_true")
    p.add_argument("--ca-file", help="CA bundle for --tls (default: the system's)")
    p.add_argument("--topic-template", default=DEFAULT_TOPIC)
    p.add_argument("--control-topic", default=CONTROL_TOPIC, help="'' to ignore commands")
    p.add_argument("--devices", type=int, default=3)
    p.add_argument("--rate", type=float, default=5.0, help="readings per second per device")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--duration", type=float, help="seconds to run (default: until stopped)")
    stop.add_argument("--count", type=int, help="readings per device (or rows of --replay)")
    p.add_argument("--drift", choices=DRIFT_KINDS, default="none")
    at = p.add_mutually_exclusive_group()
    at.add_argument("--drift-at", type=float, help="simulated seconds after the start (default 60)")
    at.add_argument("--drift-after-readings", type=int, help="readings per device before the drift")
    p.add_argument("--drift-size", type=float, default=3.0, help="one-step error the drift causes")
    p.add_argument("--ramp-seconds", type=float, default=60.0, help="gradual: length of the ramp")
    p.add_argument("--period-seconds", type=float, default=300.0, help="seasonal: period of the sine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replay", help="CSV file with the columns device, ts and fields, published in ts order")
    p.add_argument("--speedup", type=float, default=1.0, help="time factor (0: as fast as possible)")
    p.add_argument("--history", help="write --count (default 1000) readings per device of history here, exit")
    p.add_argument("--log-level", default="INFO")
    return p


def _plant(args: argparse.Namespace) -> Plant:
    plant = Plant(devices=args.devices, rate=args.rate, seed=args.seed)
    if args.drift_after_readings is not None:
        start = args.drift_after_readings
    else:
        start = plant.seconds_to_steps(60.0 if args.drift_at is None else args.drift_at)
    plant.drift = Drift(
        kind=args.drift,
        start=start,
        size=args.drift_size,
        ramp_steps=plant.seconds_to_steps(args.ramp_seconds),
        period_steps=plant.seconds_to_steps(args.period_seconds),
    )
    return plant


def main(argv: Sequence[str] | None = None) -> int:
    import os  # noqa: PLC0415 - only the CLI reads the environment

    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    if args.devices < 1 or args.rate <= 0 or args.speedup < 0:
        print("--devices must be >= 1, --rate > 0 and --speedup >= 0", file=sys.stderr)
        return 2
    plant = _plant(args)
    if args.history:
        path = write_history(plant, args.history, readings_per_device=args.count or 1000)
        print(json.dumps({"history": str(path), "devices": args.devices, "readings": args.count or 1000}))
        return 0
    replay = None
    if args.replay:
        try:
            with open(args.replay, newline="") as f:
                replay = read_replay(f)
        except (OSError, ValueError) as exc:
            print(f"cannot replay {args.replay}: {exc}", file=sys.stderr)
            return 2
    publisher = Publisher(
        None if replay is not None else plant,
        broker=Broker(
            host=args.host,
            port=args.port,
            username=args.username or os.environ.get("MQTT_USERNAME"),
            password=args.password or os.environ.get("MQTT_PASSWORD"),
            tls=args.tls,
            ca_file=args.ca_file,
        ),
        topic_template=args.topic_template,
        rate=args.rate,
        count=args.count,
        duration=args.duration,
        replay=replay,
        speedup=args.speedup,
        control_topic=args.control_topic or None,
    )
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        publisher.start()
    except ConnectionError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    log.info(
        "Started publishing",
        extra={"devices": args.devices, "rate": args.rate, "drift": args.drift, "replay": args.replay},
    )
    while not stopping.is_set() and not publisher.wait(0.2):
        pass
    publisher.stop()
    print(json.dumps({"published": publisher.published, "steps": plant.steps if replay is None else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
