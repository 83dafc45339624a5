"""The figures of one replayed system: RMSE over time, overall, and what happened when.

A :class:`Figures` is plain data, built from a replica's outcomes and the events of the
run; the text table, the JSON file and the HTML report are all rendered from it. The
rolling RMSE is the runtime's own :class:`edgemodel_runtime.drift.RollingRMSE` over the
last ``window`` outcomes, whichever version made them, so the curve runs on across swaps.

Pure functions and value types; no I/O here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from edgemodel_runtime import drift

__all__ = ["EVENT_KINDS", "Event", "Figures", "build", "from_series"]

EVENT_KINDS = ("detection", "retrain", "promotion", "rejection", "rollback", "failure")
"""``detection``: drift started on the replica; ``retrain``: a retraining Job started;
``promotion``/``rejection``/``failure``: a Job's outcome; ``rollback``: a version was rolled back."""
MAX_POINTS = 800
"""The rolling-RMSE curve is sampled to at most this many points."""


@dataclasses.dataclass(frozen=True)
class Event:
    time: float
    """Virtual time: epoch seconds of the data."""
    kind: str
    """One of :data:`EVENT_KINDS`."""
    detail: str = ""
    version: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time": self.time, "kind": self.kind, "detail": self.detail}
        if self.version is not None:
            out["version"] = self.version
        return out


@dataclasses.dataclass(frozen=True)
class Figures:
    """What one system did with the history."""

    name: str
    """Short id: ``loop``, ``static``, ``naive``, ``periodic``."""
    label: str
    """A person's description."""
    outcomes: int
    overall_rmse: float | None
    rolling: tuple[tuple[float, float], ...]
    """``(time, rolling RMSE)``, sampled."""
    final_rolling_rmse: float | None
    max_rolling_rmse: float | None
    share_over_threshold: float | None
    """Share of outcomes at which the rolling RMSE (over a full window) was above the threshold."""
    events: tuple[Event, ...]
    threshold: float
    window: int
    tunings: tuple[tuple[str, drift.Tuning], ...] = ()
    """``(version, tuning)`` of the change detector each time a version started serving
    (the calibrated tuning of :func:`edgemodel_runtime.drift.resolve_tuning`)."""

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e.kind == kind)

    def times(self, kind: str) -> list[float]:
        return [e.time for e in self.events if e.kind == kind]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "outcomes": self.outcomes,
            "overallRmse": self.overall_rmse,
            "finalRollingRmse": self.final_rolling_rmse,
            "maxRollingRmse": self.max_rolling_rmse,
            "shareOverThreshold": self.share_over_threshold,
            **{f"{kind}s": self.count(kind) for kind in EVENT_KINDS},
            "events": [e.to_json() for e in self.events],
            "detectorTunings": [
                {"version": v, "source": t.source, "delta": t.delta, "threshold": t.threshold}
                for v, t in self.tunings
            ],
            "rolling": [[t, r] for t, r in self.rolling],
        }


def from_series(
    *,
    name: str,
    label: str,
    rolling: Sequence[tuple[float, float]],
    events: Sequence[Event],
    threshold: float,
    window: int,
) -> Figures:
    """Figures from a rolling-RMSE series someone else measured (a live run's status), not from errors.

    There are no outcomes to count, so the overall RMSE is unknown; ``share_over_threshold``
    is the share of the series' samples above the threshold.

    >>> f = from_series(name="live", label="L", rolling=[(0.0, 0.5), (1.0, 2.0)], events=[],
    ...                 threshold=1.0, window=10)
    >>> f.overall_rmse, f.final_rolling_rmse, f.max_rolling_rmse, f.share_over_threshold
    (None, 2.0, 2.0, 0.5)
    """
    values = [v for _, v in rolling]
    stride = max(1, math.ceil(len(rolling) / MAX_POINTS))
    sampled = [p for i, p in enumerate(rolling) if i % stride == 0 or i == len(rolling) - 1]
    return Figures(
        name=name,
        label=label,
        outcomes=0,
        overall_rmse=None,
        rolling=tuple(sampled),
        final_rolling_rmse=values[-1] if values else None,
        max_rolling_rmse=max(values, default=None),
        share_over_threshold=sum(v > threshold for v in values) / len(values) if values else None,
        events=tuple(sorted(events, key=lambda e: e.time)),
        threshold=threshold,
        window=window,
    )


def build(
    *,
    name: str,
    label: str,
    times: Sequence[float],
    errors: Sequence[float],
    events: Sequence[Event],
    threshold: float,
    window: int,
    tunings: Sequence[tuple[str, drift.Tuning]] = (),
) -> Figures:
    """Figures from outcome ``times`` and ``errors`` (prediction minus truth) and the run's events.

    >>> f = build(name="s", label="S", times=[1.0, 2.0, 3.0], errors=[1.0, 1.0, 4.0], events=[],
    ...           threshold=2.0, window=2)
    >>> round(f.overall_rmse, 4), round(f.final_rolling_rmse, 4), f.share_over_threshold
    (2.4495, 2.9155, 0.5)
    """
    if len(times) != len(errors):
        raise ValueError("one time per error")
    rolling = drift.RollingRMSE(window)
    n = len(errors)
    stride = max(1, math.ceil(n / MAX_POINTS))
    curve: list[tuple[float, float]] = []
    total = 0.0
    full = over = 0
    peak: float | None = None
    value: float | None = None
    for i, (t, e) in enumerate(zip(times, errors, strict=True)):
        total += e * e
        value = rolling.update(e).rmse
        assert value is not None
        if i + 1 >= window:
            full += 1
            over += value > threshold
            peak = value if peak is None else max(peak, value)
        if i % stride == stride - 1 or i == n - 1:
            curve.append((t, value))
    return Figures(
        name=name,
        label=label,
        outcomes=n,
        overall_rmse=math.sqrt(total / n) if n else None,
        rolling=tuple(curve),
        final_rolling_rmse=value,
        max_rolling_rmse=peak,
        share_over_threshold=over / full if full else None,
        events=tuple(sorted(events, key=lambda e: e.time)),
        threshold=threshold,
        window=window,
        tunings=tuple(tunings),
    )
