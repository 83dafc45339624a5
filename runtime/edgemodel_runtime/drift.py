"""Drift measurement: rolling RMSE, change detectors on the error stream, input drift (PSI).

The detectors follow river's small API: ``update(x)`` returns the detector,
``drift_detected`` says whether that update signalled a change, ``reset()`` starts over.

Why they are written here rather than taken from river (measured on the dev venv, river
0.26.1, Python 3.11, on top of this module's own imports):

- **Footprint.** ``import river.drift`` pulls in scikit-learn, scipy and pandas: +156 MB
  RSS, +1,453 modules and 3.4 to 7 s of import time on two shared cores. This module
  needs numpy only. river stays a development dependency (``bench/drift_bench.py``
  compares both) and is not installed with the runtime.
- **One-sided tests.** A falling error is no drift. river's ``ADWIN`` is two-sided: it
  signals any change of the mean, so a model that gets *better* would raise an alarm.
  :class:`AdaptiveWindowRise` uses ADWIN's bound but signals only a rise; it is therefore
  not ADWIN and is not called so. river's ``PageHinkley(mode="up")`` is one-sided, and
  :class:`PageHinkley` here is the same test (the drift benchmark runs both).

:class:`DriftMonitor` combines them into the rule a replica reports:

- ``Threshold``: the rolling RMSE over the last ``window`` outcomes is above
  ``threshold``, once ``window`` outcomes have been seen;
- ``ChangeDetector``: the change detector saw the absolute error rise. The detector reads
  ``|error| / threshold``, so its tuning is in units of the configured threshold and
  holds for any target scale. The alarm is latched until the next model swap, or until
  ``window`` further outcomes show a rolling RMSE below the threshold again.

Page-Hinkley's tuning (:class:`Tuning`) comes from the serving model's own errors:
:func:`calibrated_tuning` turns the residual statistics the trainer measured on the
version's holdout (:class:`edgemodel.contracts.DetectorCalibration`) and the threshold into
``delta`` and ``threshold``; :func:`resolve_tuning` lets hand-set values win.

Pure and stateful; no I/O here.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from edgemodel import api, contracts

__all__ = [
    "DEFAULT_TUNING",
    "AdaptiveWindowRise",
    "DetectorName",
    "DriftMonitor",
    "PSIMonitor",
    "PageHinkley",
    "RollingRMSE",
    "Tuning",
    "calibrated_tuning",
    "make_detector",
    "population_stability_index",
    "resolve_tuning",
]

DetectorName = api.DetectorName
"""The detector names, defined once in :mod:`edgemodel.api`."""


class Detector(Protocol):
    def update(self, x: float) -> Detector: ...

    @property
    def drift_detected(self) -> bool: ...

    @property
    def statistic(self) -> float: ...

    def reset(self) -> None: ...


class RollingRMSE:
    """Root mean squared error over the last ``window`` errors.

    >>> r = RollingRMSE(window=2)
    >>> r.update(3.0).update(4.0).update(0.0).rmse
    2.8284271247461903
    >>> r.samples
    2
    """

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self._squares: collections.deque[float] = collections.deque(maxlen=window)
        self._sum = 0.0
        self._updates = 0

    def update(self, error: float) -> RollingRMSE:
        square = error * error
        if len(self._squares) == self.window:
            self._sum -= self._squares[0]
        self._squares.append(square)
        self._sum += square
        self._updates += 1
        if self._updates % 4096 == 0:  # wash out floating-point drift of the running sum
            self._sum = math.fsum(self._squares)
        return self

    @property
    def samples(self) -> int:
        return len(self._squares)

    @property
    def rmse(self) -> float | None:
        if not self._squares:
            return None
        return math.sqrt(max(self._sum, 0.0) / len(self._squares))

    def reset(self) -> None:
        self._squares.clear()
        self._sum = 0.0


class PageHinkley:
    """One-sided Page-Hinkley test for a rise in the mean of a stream.

    Parameters
    ----------
    min_instances
        Updates before the test may signal.
    delta
        Rises of the mean smaller than this are tolerated.
    threshold
        The cumulative excess over ``mean + delta`` that signals a change (lambda).

    After a signal the detector starts over, as river's does.

    >>> ph = PageHinkley(min_instances=10, delta=0.1, threshold=5.0)
    >>> [i for i, x in enumerate([0.2] * 50 + [2.0] * 10) if ph.update(x).drift_detected]
    [53]
    """

    def __init__(self, min_instances: int = 30, delta: float = 0.1, threshold: float = 8.0) -> None:
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self._n = 0
        self._mean = 0.0
        self._sum = 0.0
        self._min = 0.0
        self._drift = False

    def update(self, x: float) -> PageHinkley:
        if self._drift:
            self.reset()
        self._n += 1
        self._mean += (x - self._mean) / self._n
        self._sum += x - self._mean - self.delta
        self._min = min(self._min, self._sum)
        self._drift = self._n >= self.min_instances and self.statistic > self.threshold
        return self

    @property
    def statistic(self) -> float:
        """The current excess ``m_t - min m_t``, compared with ``threshold``."""
        return self._sum - self._min

    @property
    def drift_detected(self) -> bool:
        return self._drift


class AdaptiveWindowRise:
    """A one-sided adaptive window: signals when its recent part has a higher mean.

    Every ``clock`` updates, every split of the window into an older and a newer part is
    tested with the variance-aware bound of ADWIN (Bifet and Gavaldà, 2007); when the
    newer part's mean exceeds the older one's by more than the bound, the older part is
    dropped. Only a rise signals (a falling error is no drift), though any change shrinks
    the window. Unlike ADWIN it keeps the raw values (at most ``max_window``) rather than
    an exponential histogram, and tests every split rather than bucket boundaries: exact,
    and about 10 µs per update against river ADWIN's 0.3 µs (``bench/results/drift.md``).

    >>> w = AdaptiveWindowRise(delta=0.002)
    >>> hits = [i for i, x in enumerate([0.2, 0.3] * 200 + [2.0, 2.2] * 50) if w.update(x).drift_detected]
    >>> 400 <= hits[0] < 450
    True
    """

    def __init__(
        self, delta: float = 0.002, clock: int = 8, min_window: int = 10, max_window: int = 2000
    ) -> None:
        self.delta = delta
        self.clock = clock
        self.min_window = min_window
        self.max_window = max_window
        self.reset()

    def reset(self) -> None:
        self._values: collections.deque[float] = collections.deque(maxlen=self.max_window)
        self._since_check = 0
        self._drift = False
        self._gap = 0.0

    def update(self, x: float) -> AdaptiveWindowRise:
        self._values.append(x)
        self._since_check += 1
        self._drift = False
        if self._since_check >= self.clock and len(self._values) >= 2 * self.min_window:
            self._since_check = 0
            self._check()
        return self

    def _check(self) -> None:
        values = np.fromiter(self._values, dtype=np.float64, count=len(self._values))
        n = values.size
        variance = float(values.var())
        log_term = math.log(2.0 * math.log(max(n, 2)) / self.delta)
        prefix = np.cumsum(values)
        total = float(prefix[-1])
        cuts = np.arange(self.min_window, n - self.min_window + 1)
        n0 = cuts.astype(np.float64)
        n1 = n - n0
        mean0 = prefix[cuts - 1] / n0
        mean1 = (total - prefix[cuts - 1]) / n1
        m = 1.0 / (1.0 / n0 + 1.0 / n1)
        bound = np.sqrt(2.0 / m * variance * log_term) + 2.0 / (3.0 * m) * log_term
        gaps = mean1 - mean0
        self._gap = float(np.max(gaps - bound)) if gaps.size else 0.0
        changed = np.abs(gaps) > bound
        if not changed.any():
            return
        first = int(np.argmax(changed))
        rose = bool(gaps[first] > 0)
        for _ in range(int(cuts[first])):
            self._values.popleft()
        self._drift = rose

    @property
    def statistic(self) -> float:
        """How far the largest rise between the window's parts exceeds its bound (last check)."""
        return self._gap

    @property
    def width(self) -> int:
        return len(self._values)

    @property
    def drift_detected(self) -> bool:
        return self._drift


class _NoDetector:
    drift_detected = False
    statistic = 0.0

    def update(self, x: float) -> _NoDetector:
        return self

    def reset(self) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class Tuning:
    """Page-Hinkley's tuning, in units of the drift threshold (the detector reads ``|error| / threshold``)."""

    delta: float
    """Rises of the mean ``|error| / threshold`` smaller than this are tolerated."""
    threshold: float
    """The cumulative excess over ``mean + delta`` that signals a change (lambda)."""
    source: str = "default"
    """Where the values came from: ``default``, ``calibrated``, ``spec`` or a mix (``spec+calibrated``)."""


DEFAULT_TUNING = Tuning(delta=0.1, threshold=8.0)
"""For a model with no recorded calibration (a version trained before calibrations were
recorded). :func:`calibrated_tuning` gives a model whose errors are normal with an RMSE of half
the threshold about the same ``delta`` (0.0995) and a ``threshold`` of 9.95."""

RISE_READINGS = 100.0
"""A sustained rise of the mean ``|error|`` of ``2 * delta`` is signalled within about this many outcomes."""
FALSE_ALARM_EXPONENT = 14.0
"""``2 * delta * threshold / variance`` is at least this: the stationary false-alarm rate of
the test falls like ``exp(-that)`` (about one in a million outcomes)."""
MIN_DELTA = 0.02
_DRIFTED_MEAN_ABS = math.sqrt(2.0 / math.pi)
"""Mean ``|error| / threshold`` of normal errors whose RMSE equals the threshold."""


def calibrated_tuning(calibration: contracts.DetectorCalibration, drift_threshold: float) -> Tuning:
    """Page-Hinkley's tuning from the model's own holdout errors and the drift threshold.

    With ``m`` the model's mean ``|error| / threshold`` on its holdout and ``M`` the mean
    ``|error| / threshold`` of a model at the threshold (``sqrt(2 / pi)`` for normal
    errors), a rise of the mean under a quarter of the way from ``m`` to ``M`` is tolerated
    (``delta``), and a rise of half the way is signalled within about
    :data:`RISE_READINGS` outcomes (``threshold = RISE_READINGS * delta``). A noisy model
    gets a higher ``threshold``, so that ``2 * delta * threshold / variance`` stays at least
    :data:`FALSE_ALARM_EXPONENT`. A model with small errors therefore tolerates bursts that
    a model near the threshold would not, and a model near the threshold leaves the
    verdict to the rolling-RMSE rule rather than raising false alarms.

    >>> cal = contracts.DetectorCalibration(mean_abs=0.4, std_abs=0.3, rmse=0.5, samples=400)
    >>> t = calibrated_tuning(cal, 1.0)
    >>> round(t.delta, 3), round(t.threshold, 2), t.source
    (0.099, 9.95, 'calibrated')
    """
    if drift_threshold <= 0:
        raise ValueError("drift_threshold must be positive")
    mean = calibration.mean_abs / drift_threshold
    std = calibration.std_abs / drift_threshold
    delta = max(0.25 * (_DRIFTED_MEAN_ABS - mean), MIN_DELTA)
    threshold = max(RISE_READINGS * delta, FALSE_ALARM_EXPONENT * std * std / (2.0 * delta))
    return Tuning(delta=delta, threshold=threshold, source="calibrated")


def resolve_tuning(
    *,
    calibration: contracts.DetectorCalibration | None,
    drift_threshold: float,
    delta: float | None = None,
    threshold: float | None = None,
) -> Tuning:
    """The tuning a monitor runs with: each hand-set value wins, then the calibration, then the default.

    >>> resolve_tuning(calibration=None, drift_threshold=1.0, threshold=12.0)
    Tuning(delta=0.1, threshold=12.0, source='spec+default')
    """
    base = DEFAULT_TUNING if calibration is None else calibrated_tuning(calibration, drift_threshold)
    if delta is None and threshold is None:
        return base
    source = "spec" if delta is not None and threshold is not None else f"spec+{base.source}"
    return Tuning(
        delta=base.delta if delta is None else delta,
        threshold=base.threshold if threshold is None else threshold,
        source=source,
    )


def make_detector(name: DetectorName, tuning: Tuning = DEFAULT_TUNING) -> Detector:
    """The change detector for ``RuntimeConfig.drift_detector``, with ``tuning`` for Page-Hinkley.

    Both read ``|error| / threshold`` and are one-sided. With the default tuning,
    Page-Hinkley tolerates a rise of the mean absolute error of 0.1 threshold and signals
    at a cumulative excess of 8 thresholds: an error that jumps from 0.3 to 2 thresholds is
    caught after about 5 outcomes, and stationary streams of 100,000 outcomes with an RMSE
    of half the threshold give no alarm (see ``tests/unit/test_runtime_drift.py``). The
    adaptive window needs no calibration: its bound scales with the variance of its own
    window.
    """
    if name == "page_hinkley":
        return PageHinkley(min_instances=30, delta=tuning.delta, threshold=tuning.threshold)
    if name == "adaptive_window_rise":
        return AdaptiveWindowRise(delta=0.002)
    return _NoDetector()


class DriftMonitor:
    """The drift state of one model on one replica.

    >>> m = DriftMonitor(threshold=1.0, window=20, detector="none")
    >>> for _ in range(20):
    ...     _ = m.update(2.0)
    >>> m.detected, m.reason, m.rmse
    (True, 'Threshold', 2.0)
    """

    def __init__(
        self, *, threshold: float, window: int, detector: DetectorName, tuning: Tuning = DEFAULT_TUNING
    ) -> None:
        if threshold <= 0:
            raise ValueError("threshold must be positive")
        self.threshold = threshold
        self.window = window
        self.detector_name: DetectorName = detector
        self.tuning = tuning
        """The change detector's tuning (Page-Hinkley's; see :func:`resolve_tuning`)."""
        self._rolling = RollingRMSE(window)
        self._detector = make_detector(detector, tuning)
        self._seen = 0
        self._latched_at: int | None = None
        self.changes = 0
        """How many times the change detector signalled since the last reset."""

    def update(self, error: float) -> DriftMonitor:
        """Record one outcome: prediction minus true value."""
        self._seen += 1
        self._rolling.update(error)
        self._detector.update(abs(error) / self.threshold)
        if self._detector.drift_detected:
            self.changes += 1
            self._latched_at = self._seen
        elif (
            self._latched_at is not None
            and self._seen - self._latched_at >= self.window
            and not self._threshold_exceeded
        ):
            self._latched_at = None
        return self

    def update_many(self, errors: Iterable[float]) -> DriftMonitor:
        for error in errors:
            self.update(error)
        return self

    @property
    def _threshold_exceeded(self) -> bool:
        rmse = self._rolling.rmse
        return self._seen >= self.window and rmse is not None and rmse > self.threshold

    @property
    def rmse(self) -> float | None:
        return self._rolling.rmse

    @property
    def samples(self) -> int:
        """Outcomes in the rolling window."""
        return self._rolling.samples

    @property
    def seen(self) -> int:
        """Outcomes since the last reset."""
        return self._seen

    @property
    def statistic(self) -> float:
        return float(self._detector.statistic)

    @property
    def reason(self) -> str | None:
        if self._threshold_exceeded:
            return "Threshold"
        if self._latched_at is not None:
            return "ChangeDetector"
        return None

    @property
    def detected(self) -> bool:
        return self.reason is not None

    def retune(self, tuning: Tuning) -> None:
        """Start over with a new change-detector tuning, for a new model with its own calibration."""
        self.tuning = tuning
        self._detector = make_detector(self.detector_name, tuning)
        self.reset()

    def reset(self) -> None:
        """Start over, for a new model."""
        self._rolling.reset()
        self._detector.reset()
        self._seen = 0
        self._latched_at = None
        self.changes = 0


def population_stability_index(expected: np.ndarray, actual: np.ndarray, eps: float = 1e-4) -> float:
    """PSI between two histograms of counts over the same bins.

    Below 0.1 is usually read as stable, above 0.25 as a shift.

    >>> round(population_stability_index(np.array([50, 50]), np.array([50, 50])), 6)
    0.0
    >>> population_stability_index(np.array([90, 10]), np.array([10, 90])) > 1
    True
    """
    e = np.maximum(expected / max(expected.sum(), 1), eps)
    a = np.maximum(actual / max(actual.sum(), 1), eps)
    return float(np.sum((a - e) * np.log(a / e)))


class PSIMonitor:
    """Per-feature input drift: PSI of the last ``window`` values against a reference.

    The first ``reference_size`` rows after a reset are the reference; they fix the bin
    edges (deciles) and the expected proportions. ``psi()`` is empty until then.
    """

    def __init__(
        self, features: tuple[str, ...], *, reference_size: int = 500, window: int = 500, bins: int = 10
    ) -> None:
        self.features = features
        self.reference_size = reference_size
        self.window = window
        self.bins = bins
        self.reset()

    def reset(self) -> None:
        self._reference: list[list[float]] = []
        self._edges: np.ndarray | None = None
        self._expected: np.ndarray | None = None
        # The bins of the last ``window`` rows, a ring: ``_filled`` rows, the next goes to ``_pos``.
        self._ring = np.zeros((self.window, len(self.features)), dtype=np.int64)
        self._filled = 0
        self._pos = 0
        self._counts = np.zeros((len(self.features), self.bins), dtype=np.int64)

    @property
    def ready(self) -> bool:
        return self._edges is not None

    def update(self, row: Sequence[float]) -> PSIMonitor:
        """Add one reading's feature values, in the order of ``features``."""
        return self.update_many([row])

    def update_many(self, rows: Sequence[Sequence[float]]) -> PSIMonitor:
        """Add several readings' feature values, oldest first (one numpy pass for the lot).

        >>> m = PSIMonitor(("a",), reference_size=4, window=2, bins=2)
        >>> _ = m.update_many([[1.0], [2.0], [3.0], [4.0], [1.0], [9.0]])
        >>> m.psi()
        {'a': 0.0}
        """
        if not rows:
            return self
        width = len(self.features)
        if self._edges is None:
            need = self.reference_size - len(self._reference)
            self._reference.extend([list(r) for r in rows[:need]])
            if len(self._reference) < self.reference_size:
                return self
            self._freeze()
            rows = rows[need:]
            if not rows:
                return self
        idx = self._bin_many(np.asarray(rows, dtype=np.float64).reshape(len(rows), width))
        if len(idx) >= self.window:  # the batch alone fills the window
            idx = idx[-self.window :]
            self._ring[:] = idx
            self._filled, self._pos = self.window, 0
            self._counts = self._histogram(idx)
            return self
        slots = (self._pos + np.arange(len(idx))) % self.window
        occupied = slots[slots < self._filled]
        if occupied.size:
            self._counts -= self._histogram(self._ring[occupied])
        self._ring[slots] = idx
        self._counts += self._histogram(idx)
        self._filled = min(self.window, self._filled + len(idx))
        self._pos = int(slots[-1] + 1) % self.window
        return self

    def _histogram(self, idx: np.ndarray) -> np.ndarray:
        """Counts per feature and bin of rows of bin indices."""
        return np.stack([np.bincount(idx[:, i], minlength=self.bins) for i in range(len(self.features))])

    def _freeze(self) -> None:
        ref = np.asarray(self._reference, dtype=np.float64).reshape(len(self._reference), len(self.features))
        qs = np.linspace(0, 1, self.bins + 1)[1:-1]
        self._edges = np.quantile(ref, qs, axis=0).T  # (features, bins-1)
        self._expected = self._histogram(self._bin_many(ref))
        self._reference = []

    def _bin_many(self, rows: np.ndarray) -> np.ndarray:
        assert self._edges is not None
        return np.stack(
            [np.searchsorted(self._edges[i], rows[:, i], side="right") for i in range(len(self.features))],
            axis=1,
        ).astype(np.int64)

    def psi(self) -> dict[str, float]:
        """PSI per feature; empty until the reference and a full window exist."""
        if self._expected is None or self._filled < self.window:
            return {}
        return {
            f: population_stability_index(self._expected[i], self._counts[i])
            for i, f in enumerate(self.features)
        }
