"""A history of readings: rows checked with the runtime's own payload rules, put in time order.

Each row must carry ``ts`` (epoch seconds or ISO 8601) and every field of the feature
spec; a ``device`` column is optional (without it, one device named ``default``, as the
trainer reads a window). A row is checked by
:func:`edgemodel_runtime.payloads.parse_object`, the function the runtime applies to an
MQTT payload, so a row the backtest accepts is one the runtime would accept. A bad row is
counted by the runtime's reason and skipped; a repeat of a ``(device, ts)`` pair keeps
the first copy, as the trainer does. Rows may come in any order: they are replayed by
timestamp (a stable sort, so one device's readings at one time keep their file order).

Pure functions and value types; no I/O here.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from edgemodel import features
from edgemodel_runtime import payloads

__all__ = ["DEFAULT_DEVICE", "DEVICE", "TIMESTAMP", "History", "HistoryError", "parse"]

DEVICE = "device"
TIMESTAMP = "ts"
DEFAULT_DEVICE = "default"
GAP_FACTOR = 5.0
"""An interval longer than this many times the device's median interval counts as a gap."""
MAX_EXAMPLES = 5


class HistoryError(ValueError):
    """The history as a whole cannot be used (a missing column, no valid reading)."""


@dataclasses.dataclass(frozen=True)
class History:
    """The valid readings in time order, and what was wrong with the rest."""

    readings: tuple[payloads.Reading, ...]
    rows: int
    """Data rows read, good and bad."""
    bad: Mapping[str, int]
    """Skipped rows by reason (the runtime's :data:`~edgemodel_runtime.payloads.REASONS`)."""
    examples: tuple[str, ...]
    """The first few skipped rows: ``line N: reason: detail``."""
    unsorted: int
    """Rows whose timestamp is before an earlier row's of the same device (replayed in order)."""
    gaps: int
    """Intervals longer than :data:`GAP_FACTOR` times their device's median interval."""
    devices: tuple[str, ...]

    @property
    def skipped(self) -> int:
        return sum(self.bad.values())

    def message(self) -> str:
        """One line on what was skipped, for a person."""
        if not self.skipped:
            return f"read {self.rows} rows: all valid"
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.bad.items()))
        return (
            f"read {self.rows} rows: skipped {self.skipped} bad rows ({reasons}); first: {self.examples[0]}"
        )


def _cell(row: Mapping[str, str | None], name: str) -> str | None:
    value = row.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _row_object(row: Mapping[str, str | None], fields: Sequence[str]) -> dict[str, object]:
    """The row as the JSON object a sensor would publish: numbers as numbers."""
    obj: dict[str, object] = {DEVICE: _cell(row, DEVICE) if DEVICE in row else DEFAULT_DEVICE}
    ts = _cell(row, TIMESTAMP)
    if ts is None:
        raise payloads.PayloadError("bad_timestamp", "timestamp is empty")
    try:
        obj[TIMESTAMP] = float(ts)
    except ValueError:
        obj[TIMESTAMP] = ts  # an ISO 8601 time, or garbage the runtime's parser names
    for name in fields:
        cell = _cell(row, name)
        if cell is None:
            continue  # the runtime reports the missing field
        try:
            obj[name] = float(cell)
        except ValueError:
            obj[name] = cell  # not a number: the runtime names it
    return obj


def _gaps(readings: Sequence[payloads.Reading]) -> int:
    by_device: dict[str, list[float]] = collections.defaultdict(list)
    for r in readings:
        by_device[r.device].append(r.ts)
    gaps = 0
    for times in by_device.values():
        if len(times) < 3:
            continue
        steps = np.diff(np.asarray(times, dtype=np.float64))
        median = float(np.median(steps))
        if median > 0:
            gaps += int(np.sum(steps > GAP_FACTOR * median))
    return gaps


def parse(
    rows: Iterable[Mapping[str, str | None]],
    spec: features.FeatureSpec,
    *,
    columns: Sequence[str],
    first_line: int = 2,
) -> History:
    """Check and order the rows of a CSV history (``columns`` from its header line).

    >>> spec = features.FeatureSpec(features=("v",), target="v", lags=0)
    >>> rows = [{"ts": "2", "v": "1.5"}, {"ts": "1", "v": "x"},
    ...         {"ts": "1", "v": "0.5"}, {"ts": "2", "v": "9"}]
    >>> h = parse(rows, spec, columns=["ts", "v"])
    >>> [(r.ts, r.values["v"]) for r in h.readings], dict(h.bad), h.unsorted
    ([(1.0, 0.5), (2.0, 1.5)], {'wrong_type': 1, 'duplicate': 1}, 1)
    >>> h.examples[0]
    "line 3: wrong_type: field 'v' must be a number, not str"
    """
    if TIMESTAMP not in columns:
        raise HistoryError(f"the history has no {TIMESTAMP!r} column; columns: {list(columns)}")
    missing = [f for f in spec.fields if f not in columns]
    if missing:
        raise HistoryError(f"the history lacks the fields {missing} of the spec; columns: {list(columns)}")
    schema = payloads.Schema(fields=spec.fields, device_field=DEVICE, timestamp_field=TIMESTAMP)
    bad: collections.Counter[str] = collections.Counter()
    examples: list[str] = []
    good: list[payloads.Reading] = []
    seen: set[tuple[str, float]] = set()
    latest: dict[str, float] = {}
    unsorted = 0
    count = 0

    def skip(line: int, reason: str, detail: str) -> None:
        bad[reason] += 1
        if len(examples) < MAX_EXAMPLES:
            examples.append(f"line {line}: {reason}: {detail}")

    for count, row in enumerate(rows, start=1):
        line = first_line + count - 1
        try:
            # received=inf: a history is in the past; no timestamp is "ahead of" it.
            reading = payloads.parse_object(
                _row_object(row, spec.fields), schema, topic=None, received=math.inf
            )
        except payloads.PayloadError as exc:
            skip(line, exc.reason, exc.detail)
            continue
        key = (reading.device, reading.ts)
        if key in seen:
            skip(line, "duplicate", f"device {reading.device} already has a reading at ts {reading.ts}")
            continue
        seen.add(key)
        if reading.ts < latest.get(reading.device, -math.inf):
            unsorted += 1
        latest[reading.device] = max(reading.ts, latest.get(reading.device, -math.inf))
        good.append(reading)
    if not good:
        raise HistoryError(
            f"the history holds no valid reading ({count} rows"
            + (f"; first: {examples[0]}" if examples else "")
            + ")"
        )
    good.sort(key=lambda r: r.ts)
    return History(
        readings=tuple(good),
        rows=count,
        bad=dict(bad),
        examples=tuple(examples),
        unsorted=unsorted,
        gaps=_gaps(good),
        devices=tuple(sorted(latest)),
    )
