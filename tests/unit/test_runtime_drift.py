"""Drift detectors and the replica drift rule, on synthetic error streams (no I/O).

The numbers asserted here are the tuning documented in docs/runtime.md.
"""

from __future__ import annotations

import typing

import numpy as np
import pydantic
import pytest

from edgemodel import api
from edgemodel_runtime import drift

THRESHOLD = 1.0


def errors(seed: int, n: int, rmse: float, *, shift_at: int | None = None, after: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.normal(0.0, rmse, n)
    if shift_at is not None:
        e[shift_at:] = rng.normal(0.0, after, n - shift_at)
    return e


@pytest.mark.parametrize("name", ["page_hinkley", "adaptive_window_rise"])
@pytest.mark.parametrize("seed", range(5))
def test_stationary_error_stream_gives_no_alarm(name, seed):
    detector = drift.make_detector(name)
    stream = np.abs(errors(seed, 20_000, 0.5 * THRESHOLD)) / THRESHOLD
    assert not any(detector.update(float(x)).drift_detected for x in stream)


@pytest.mark.parametrize(("name", "max_delay"), [("page_hinkley", 15), ("adaptive_window_rise", 24)])
def test_abrupt_rise_is_caught_quickly(name, max_delay):
    delays = []
    for seed in range(20):
        detector = drift.make_detector(name)
        stream = np.abs(errors(100 + seed, 1000, 0.3, shift_at=500, after=2.0))
        hits = [i for i, x in enumerate(stream) if detector.update(float(x)).drift_detected]
        assert hits and hits[0] >= 500, f"seed {seed}: false alarm or no detection: {hits[:3]}"
        delays.append(hits[0] - 500)
    assert max(delays) <= max_delay, delays


def test_falling_error_is_not_drift():
    for name in ("page_hinkley", "adaptive_window_rise"):
        detector = drift.make_detector(name)
        stream = np.abs(errors(7, 2000, 0.8, shift_at=1000, after=0.1))
        assert not any(detector.update(float(x)).drift_detected for x in stream), name


def test_adwin_is_two_sided_and_the_adaptive_window_is_not():
    """The measured reason for the name: river's ADWIN also signals a falling error."""
    river_drift = pytest.importorskip("river.drift")
    stream = np.abs(errors(7, 2000, 0.8, shift_at=1000, after=0.1))
    adwin = river_drift.ADWIN()
    falls = []
    for i, x in enumerate(stream):
        adwin.update(float(x))  # river's update returns None
        if adwin.drift_detected:
            falls.append(i)
    assert falls and falls[0] >= 1000, falls[:3]
    rise = drift.make_detector("adaptive_window_rise")
    assert not any(rise.update(float(x)).drift_detected for x in stream)


def test_no_detector_is_called_adwin():
    assert "adwin" not in typing.get_args(drift.DetectorName)
    with pytest.raises(pydantic.ValidationError):
        api.DriftSpec(threshold=1.0, detector="adwin")


def test_river_style_api():
    ph = drift.PageHinkley()
    assert ph.update(0.1) is ph
    assert ph.drift_detected is False
    ph.reset()
    assert ph.statistic == 0.0


def test_rolling_rmse_matches_numpy():
    e = errors(3, 500, 1.3)
    r = drift.RollingRMSE(100)
    for x in e:
        r.update(float(x))
    assert r.rmse == pytest.approx(float(np.sqrt(np.mean(e[-100:] ** 2))))
    assert r.samples == 100


def test_threshold_rule_needs_a_full_window():
    monitor = drift.DriftMonitor(threshold=1.0, window=50, detector="none")
    for _ in range(49):
        monitor.update(3.0)
    assert not monitor.detected and monitor.rmse == 3.0
    monitor.update(3.0)
    assert monitor.detected and monitor.reason == "Threshold"
    monitor.reset()
    assert not monitor.detected and monitor.samples == 0 and monitor.rmse is None


def test_change_detector_fires_before_threshold_then_threshold_confirms():
    monitor = drift.DriftMonitor(threshold=THRESHOLD, window=100, detector="page_hinkley")
    stream = errors(11, 1000, 0.3, shift_at=500, after=2.0)
    reasons = []
    for e in stream:
        reasons.append(monitor.update(float(e)).reason)
    first = next(i for i, r in enumerate(reasons) if r is not None)
    first_threshold = next(i for i, r in enumerate(reasons) if r == "Threshold")
    assert 500 <= first < first_threshold
    assert reasons[first] == "ChangeDetector"
    assert monitor.detected


def test_change_alarm_clears_when_the_window_stays_below_threshold():
    monitor = drift.DriftMonitor(threshold=THRESHOLD, window=50, detector="page_hinkley")
    # A burst of large errors the detector sees, then back to normal for long.
    stream = np.r_[errors(1, 200, 0.2), np.full(10, 3.0), errors(2, 300, 0.2)]
    seen = [monitor.update(float(e)).reason for e in stream]
    assert "ChangeDetector" in seen
    assert not monitor.detected


def test_psi_flags_a_shifted_feature_only():
    rng = np.random.default_rng(0)
    psi = drift.PSIMonitor(("a", "b"), reference_size=500, window=500)
    for _ in range(500):
        psi.update([rng.normal(), rng.normal()])
    assert psi.psi() == {}
    for _ in range(500):
        psi.update([rng.normal(), rng.normal(3.0)])
    values = psi.psi()
    assert values["a"] < 0.1 < 0.25 < values["b"]


@pytest.mark.parametrize(("reference", "window"), [(5, 3), (50, 7), (500, 500)])
def test_psi_of_batches_equals_psi_row_by_row(reference, window):
    rng = np.random.default_rng(reference + window)
    one = drift.PSIMonitor(("a", "b"), reference_size=reference, window=window)
    many = drift.PSIMonitor(("a", "b"), reference_size=reference, window=window)
    for step, size in enumerate([1, 2, 37, 256, 600, 5, 1, 300] * 3):
        rows = rng.normal([step * 0.05, 3.0], [1.0, 2.0], size=(size, 2)).tolist()
        for row in rows:
            one.update(row)
        many.update_many(rows)
        assert one.psi().keys() == many.psi().keys()
        for name, value in one.psi().items():
            assert many.psi()[name] == pytest.approx(value, abs=1e-12)
