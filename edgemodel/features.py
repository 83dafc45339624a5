"""Feature building shared by the runtime and the trainer, so serving and training never disagree.

A *reading* is one validated sensor payload: a mapping from field name to float, plus a
device id and a timestamp held outside it. For a reading at position ``t`` of one
device's stream, the model's input row is:

- the configured ``features`` of reading ``t``, in order; then
- ``lags`` past values of the ``target``: reading ``t-1``, ``t-2``, ... ``t-lags``.

Its label is the ``target`` of reading ``t + horizon`` of the same device. A row is
only built once ``lags`` earlier readings exist for that device.

Pure functions and small value types; no I/O here.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["DeviceHistory", "FeatureSpec", "TrainingFrame", "build_training_frame", "feature_row"]

Reading = Mapping[str, float]


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """What the model reads and predicts."""

    features: tuple[str, ...]
    """Payload fields used as inputs, in column order."""
    target: str
    """Payload field the model predicts."""
    horizon: int = 1
    """How many readings ahead the prediction is for."""
    lags: int = 3
    """How many past target values are inputs too."""

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("features must not be empty")
        if self.horizon < 1:
            raise ValueError("horizon must be at least 1")
        if self.lags < 0:
            raise ValueError("lags must not be negative")

    @property
    def columns(self) -> tuple[str, ...]:
        """Names of the model's input columns, in order."""
        return self.features + tuple(f"{self.target}_lag{i}" for i in range(1, self.lags + 1))

    @property
    def fields(self) -> tuple[str, ...]:
        """Every payload field a reading must carry: the features and the target."""
        return self.features + (() if self.target in self.features else (self.target,))


def feature_row(spec: FeatureSpec, current: Reading, previous: Sequence[Reading]) -> list[float] | None:
    """The input row for ``current`` given the device's earlier readings, oldest first.

    Returns ``None`` while fewer than ``spec.lags`` earlier readings exist.

    >>> spec = FeatureSpec(features=("temp",), target="temp", lags=2)
    >>> feature_row(spec, {"temp": 3.0}, [{"temp": 1.0}, {"temp": 2.0}])
    [3.0, 2.0, 1.0]
    >>> feature_row(spec, {"temp": 3.0}, [{"temp": 2.0}]) is None
    True
    """
    if len(previous) < spec.lags:
        return None
    row = [float(current[f]) for f in spec.features]
    for i in range(1, spec.lags + 1):
        row.append(float(previous[-i][spec.target]))
    return row


class DeviceHistory:
    """The last readings of one device: enough to build the next row, and no more."""

    __slots__ = ("_readings", "_spec")

    def __init__(self, spec: FeatureSpec) -> None:
        self._spec = spec
        self._readings: collections.deque[Reading] = collections.deque(maxlen=max(spec.lags, 1))

    def row_for(self, reading: Reading) -> list[float] | None:
        """The input row for ``reading``, which is then remembered as the newest reading."""
        row = feature_row(self._spec, reading, self._readings)
        self._readings.append(reading)
        return row


@dataclasses.dataclass(frozen=True)
class TrainingFrame:
    """Rows and labels built from a stream of readings, in time order."""

    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]
    timestamps: npt.NDArray[np.float64]
    """Timestamp of the reading each row was built from; rows are sorted by it."""
    columns: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.y.shape[0])


def build_training_frame(spec: FeatureSpec, readings: Iterable[tuple[str, float, Reading]]) -> TrainingFrame:
    """Build rows and labels from ``(device, timestamp, reading)`` triples.

    Readings of each device are ordered by timestamp; the result is ordered by timestamp
    across devices, so that a holdout taken from its end is the most recent slice.

    >>> spec = FeatureSpec(features=("v",), target="v", horizon=1, lags=1)
    >>> frame = build_training_frame(spec, [("d", float(t), {"v": float(t)}) for t in range(4)])
    >>> frame.x.tolist(), frame.y.tolist()
    ([[1.0, 0.0], [2.0, 1.0]], [2.0, 3.0])
    """
    by_device: dict[str, list[tuple[float, Reading]]] = collections.defaultdict(list)
    for device, ts, reading in readings:
        by_device[device].append((ts, reading))
    rows: list[tuple[float, list[float], float]] = []
    for stream in by_device.values():
        stream.sort(key=lambda item: item[0])
        values = [r for _, r in stream]
        for t in range(spec.lags, len(stream) - spec.horizon):
            row = feature_row(spec, values[t], values[t - spec.lags : t])
            assert row is not None
            rows.append((stream[t][0], row, float(values[t + spec.horizon][spec.target])))
    rows.sort(key=lambda item: item[0])
    width = len(spec.columns)
    return TrainingFrame(
        x=np.asarray([r for _, r, _ in rows], dtype=np.float64).reshape(len(rows), width),
        y=np.asarray([y for _, _, y in rows], dtype=np.float64),
        timestamps=np.asarray([ts for ts, _, _ in rows], dtype=np.float64),
        columns=spec.columns,
    )
