"""The training window: the last valid raw readings, handed to the trainer through MLflow.

On drift, the replica logs its window as a run in the experiment
:func:`edgemodel.contracts.window_experiment`, with the CSV artifact
:data:`edgemodel.contracts.WINDOW_ARTIFACT` (columns ``device``, ``ts``, then the fields
of the feature spec, oldest reading first) and the tags of
:data:`edgemodel.contracts.WINDOW_TAGS`; only then does it report the drift.

A window logged the moment drift is detected holds almost nothing of the changed plant.
So the replica marks the change (``change_ts``, the newest reading time at detection) and,
once :class:`FreshReadings` says enough readings of the changed plant have arrived, logs
the window again with the same mark and their count (metric ``readings_after_change``).
The trainer waits for that second window.

Pure: no I/O here (:class:`TrainingWindow` is shared between threads under a lock);
:func:`edgemodel_runtime.windowlog.upload` logs a window to MLflow.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import threading
from collections.abc import Iterable, Sequence

from edgemodel_runtime import payloads

__all__ = ["FreshReadings", "TrainingWindow", "fresh_target", "to_csv"]


class TrainingWindow:
    """The last ``size`` valid readings of this replica; appended by one thread, copied by others."""

    def __init__(self, size: int) -> None:
        self._readings: collections.deque[payloads.Reading] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._readings)

    def extend(self, readings: Iterable[payloads.Reading]) -> None:
        with self._lock:
            self._readings.extend(readings)

    def snapshot(self) -> list[payloads.Reading]:
        with self._lock:
            return list(self._readings)

    def newest_ts(self) -> float | None:
        """The latest reading time in the window, or None when it is empty."""
        with self._lock:
            return max((r.ts for r in self._readings), default=None)


FRESH_MIN_READINGS = 200
"""Readings of the changed plant the second drift window holds at least (when it can)."""


def fresh_target(*, training_window: int, drift_window: int) -> int:
    """How many post-change readings to wait for: enough to train on, never more than fit.

    >>> fresh_target(training_window=2000, drift_window=100)
    200
    >>> fresh_target(training_window=2000, drift_window=500)
    1000
    >>> fresh_target(training_window=300, drift_window=100)
    150
    """
    return max(1, min(training_window // 2, max(FRESH_MIN_READINGS, 2 * drift_window)))


@dataclasses.dataclass
class FreshReadings:
    """Counts the readings that arrive after drift was detected, until the window is handed over.

    >>> fresh = FreshReadings(change_ts=100.0, started=0.0, target=3, max_seconds=60.0)
    >>> fresh.add(2); fresh.ready(now=1.0)
    False
    >>> fresh.add(1); fresh.ready(now=1.0)
    True
    >>> FreshReadings(change_ts=100.0, started=0.0, target=3, max_seconds=60.0).ready(now=60.0)
    True
    """

    change_ts: float
    """Reading time from which the window shows the changed plant."""
    started: float
    """Monotonic time of the detection."""
    target: int
    max_seconds: float
    """Hand the window over after this long even with fewer readings (a slow stream)."""
    count: int = 0

    def add(self, n: int) -> None:
        self.count += n

    def ready(self, *, now: float) -> bool:
        return self.count >= self.target or now - self.started >= self.max_seconds


def to_csv(readings: Sequence[payloads.Reading], fields: Sequence[str]) -> str:
    """The window as CSV text.

    >>> print(to_csv([payloads.Reading("d1", 10.0, {"temp": 21.5})], ["temp"]), end="")
    device,ts,temp
    d1,10.0,21.5
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["device", "ts", *fields])
    for r in readings:
        writer.writerow([r.device, repr(r.ts), *(repr(r.values[f]) for f in fields)])
    return out.getvalue()
