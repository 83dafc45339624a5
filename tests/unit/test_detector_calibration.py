"""The drift detector's calibration: measured by the trainer, turned into tuning by the runtime (no I/O).

``edgemodel_trainer.calibration.measure`` (holdout residuals -> DetectorCalibration) and
``edgemodel_runtime.drift.calibrated_tuning`` / ``resolve_tuning`` (calibration + threshold +
hand-set values -> Page-Hinkley's tuning) are pure; so is everything here.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pydantic
import pytest

from edgemodel import api, contracts, registry
from edgemodel_operator.render import inference
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings as OperatorSettings
from edgemodel_runtime import config, drift
from edgemodel_trainer import calibration


def _stream(seed: int, n: int, sigma: float) -> np.ndarray:
    return np.abs(np.random.default_rng(seed).normal(0.0, sigma, n))


def _alarms(tuning: drift.Tuning, stream: np.ndarray) -> list[int]:
    detector = drift.make_detector("page_hinkley", tuning)
    return [i for i, x in enumerate(stream) if detector.update(float(x)).drift_detected]


def test_measure_takes_the_statistics_of_the_absolute_errors():
    residuals = np.array([0.5, -0.5, 1.5, -2.5])
    c = calibration.measure(residuals)
    assert c is not None
    assert c.mean_abs == pytest.approx(1.25)
    assert c.std_abs == pytest.approx(np.std([0.5, 0.5, 1.5, 2.5]))
    assert c.rmse == pytest.approx(math.sqrt((0.25 + 0.25 + 2.25 + 6.25) / 4))
    assert c.samples == 4


@pytest.mark.parametrize("bad", [[], [1.0, math.inf], [math.nan]])
def test_measure_gives_nothing_for_no_or_non_finite_residuals(bad):
    assert calibration.measure(bad) is None


def test_the_calibration_contract_refuses_nonsense():
    with pytest.raises(pydantic.ValidationError):
        contracts.DetectorCalibration(mean_abs=-1.0, std_abs=0.0, rmse=0.0, samples=1)
    with pytest.raises(pydantic.ValidationError):
        contracts.DetectorCalibration(mean_abs=math.nan, std_abs=0.0, rmse=0.0, samples=1)
    with pytest.raises(pydantic.ValidationError):
        contracts.DetectorCalibration(mean_abs=1.0, std_abs=0.0, rmse=1.0, samples=0)


def test_the_tuning_is_in_units_of_the_threshold():
    """The same errors relative to the threshold give the same tuning, whatever the target's scale."""
    residuals = np.random.default_rng(1).normal(0.0, 0.5, 400)
    c1 = calibration.measure(residuals)
    c1000 = calibration.measure(residuals * 1000.0)
    assert c1 is not None and c1000 is not None
    a = drift.calibrated_tuning(c1, 1.0)
    b = drift.calibrated_tuning(c1000, 1000.0)
    assert a.delta == pytest.approx(b.delta)
    assert a.threshold == pytest.approx(b.threshold)


def test_a_model_with_small_errors_tolerates_more_than_one_near_the_threshold():
    small = calibration.measure(np.random.default_rng(2).normal(0.0, 0.1, 400))
    near = calibration.measure(np.random.default_rng(2).normal(0.0, 0.8, 400))
    assert small is not None and near is not None
    t_small, t_near = drift.calibrated_tuning(small, 1.0), drift.calibrated_tuning(near, 1.0)
    assert t_small.delta > drift.DEFAULT_TUNING.delta > t_near.delta
    assert t_small.threshold == pytest.approx(drift.RISE_READINGS * t_small.delta)
    # Near the threshold the noise sets lambda: 2 delta lambda / variance stays at the bound.
    var = (near.std_abs / 1.0) ** 2
    assert 2 * t_near.delta * t_near.threshold / var == pytest.approx(drift.FALSE_ALARM_EXPONENT)


def test_a_model_at_or_over_the_threshold_keeps_a_positive_delta():
    c = contracts.DetectorCalibration(mean_abs=2.0, std_abs=1.0, rmse=2.2, samples=100)
    t = drift.calibrated_tuning(c, 1.0)
    assert t.delta == drift.MIN_DELTA
    assert math.isfinite(t.threshold) and t.threshold > 0
    with pytest.raises(ValueError, match="positive"):
        drift.calibrated_tuning(c, 0.0)


@pytest.mark.parametrize("sigma", [0.5, 0.7, 0.9])
def test_calibrated_page_hinkley_raises_no_false_alarm_on_its_own_level(sigma):
    """Stationary errors at the level the model was calibrated on: 5 x 20,000 outcomes, no alarm.

    The default tuning raises false alarms at 0.9 (the second half of this test; at 0.7, a few per
    100,000 outcomes, which these seeds do not show).
    """
    c = calibration.measure(np.random.default_rng(10).normal(0.0, sigma, 400))
    assert c is not None
    tuning = drift.calibrated_tuning(c, 1.0)
    default_alarms = 0
    for seed in range(5):
        stream = _stream(20 + seed, 20_000, sigma)
        assert _alarms(tuning, stream) == [], f"seed {seed}"
        default_alarms += len(_alarms(drift.DEFAULT_TUNING, stream))
    if sigma == 0.9:
        assert default_alarms > 0


def test_calibrated_page_hinkley_still_catches_an_abrupt_rise_quickly():
    c = calibration.measure(np.random.default_rng(11).normal(0.0, 0.5, 400))
    assert c is not None
    tuning = drift.calibrated_tuning(c, 1.0)
    delays = []
    for seed in range(20):
        stream = np.concatenate([_stream(40 + seed, 1000, 0.5), _stream(80 + seed, 200, 2.0)])
        hits = _alarms(tuning, stream)
        assert hits and hits[0] >= 1000, f"seed {seed}: {hits[:3]}"
        delays.append(hits[0] - 1000)
    assert max(delays) <= 20, delays


def test_a_short_burst_that_the_default_flags_is_tolerated_by_a_calibrated_small_error_model():
    """The WaterFlow case in miniature: small errors, then 19 readings of spikes, then small again."""
    rng = np.random.default_rng(3)
    c = calibration.measure(rng.normal(0.0, 0.08, 400))
    assert c is not None
    tuning = drift.calibrated_tuning(c, 1.0)
    burst = [1.15, 3.38, 1.99, 0.66, 0.08, 0.46, *[0.51] * 7, 2.49, 1.92, 0.14, 0.09, 0.86, 0.49]
    stream = np.concatenate([np.abs(rng.normal(0.0, 0.08, 500)), burst, np.abs(rng.normal(0.0, 0.08, 500))])
    assert _alarms(drift.DEFAULT_TUNING, stream) != []
    assert _alarms(tuning, stream) == []
    # A sustained fault of the same size is still caught, within about 20 readings.
    fault = np.concatenate([np.abs(rng.normal(0.0, 0.08, 500)), np.abs(rng.normal(1.2, 0.3, 200))])
    hits = _alarms(tuning, fault)
    assert hits and 500 <= hits[0] <= 520, hits[:3]


def test_hand_set_values_win_one_by_one():
    c = contracts.DetectorCalibration(mean_abs=0.1, std_abs=0.1, rmse=0.14, samples=400)
    calibrated = drift.calibrated_tuning(c, 1.0)
    assert drift.resolve_tuning(calibration=c, drift_threshold=1.0) == calibrated
    both = drift.resolve_tuning(calibration=c, drift_threshold=1.0, delta=0.3, threshold=5.0)
    assert (both.delta, both.threshold, both.source) == (0.3, 5.0, "spec")
    one = drift.resolve_tuning(calibration=c, drift_threshold=1.0, threshold=5.0)
    assert (one.delta, one.threshold, one.source) == (calibrated.delta, 5.0, "spec+calibrated")
    none = drift.resolve_tuning(calibration=None, drift_threshold=1.0)
    assert none == drift.DEFAULT_TUNING


def test_the_monitor_retunes_and_starts_over():
    m = drift.DriftMonitor(threshold=1.0, window=10, detector="page_hinkley")
    assert m.tuning == drift.DEFAULT_TUNING
    m.update_many([0.1] * 40 + [3.0] * 10)
    assert m.detected
    tuned = drift.Tuning(delta=0.5, threshold=50.0, source="spec")
    m.retune(tuned)
    assert m.tuning is tuned and not m.detected and m.seen == 0
    m.update_many([0.1] * 40 + [1.5] * 5)  # caught by the default tuning; not by this one
    assert m.changes == 0


def test_a_version_carries_its_calibration_in_its_metadata():
    c = contracts.DetectorCalibration(mean_abs=0.25, std_abs=0.5, rmse=0.6, samples=80)
    meta = registry.ModelMeta(
        columns=("a",), algorithm="ridge", features=("a",), target="a", horizon=1, lags=0, calibration=c
    )
    assert registry.ModelMeta.from_json(meta.to_json()) == meta
    old = registry.ModelMeta(
        columns=("a",), algorithm="ridge", features=("a",), target="a", horizon=1, lags=0
    )
    assert registry.ModelMeta.from_json(old.to_json()).calibration is None  # versions from before
    with pytest.raises(pydantic.ValidationError):
        registry.ModelMeta.from_json(meta.to_json().replace('"meanAbs": 0.25', '"meanAbs": -1'))


def test_the_spec_s_tuning_is_bounded_and_optional():
    spec = api.DriftSpec.model_validate({"threshold": 1.0, "detectorTuning": {"threshold": 12}})
    assert spec.detector_tuning is not None
    assert (spec.detector_tuning.delta, spec.detector_tuning.threshold) == (None, 12.0)
    assert api.DriftSpec(threshold=1.0).detector_tuning is None
    for bad in ({"delta": -0.1}, {"threshold": 0}, {"lambda": 3}):
        with pytest.raises(pydantic.ValidationError):
            api.DriftSpec.model_validate({"threshold": 1.0, "detectorTuning": bad})


def test_hand_set_tuning_travels_from_the_spec_through_the_runtime_config():
    spec = {
        "sensors": {"topics": ["plant/+/t"], "features": ["t"], "target": "t"},
        "drift": {"threshold": 2.0, "detectorTuning": {"delta": 0.25}},
    }
    em = EdgeModel.from_body(
        {
            "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": spec,
            "status": {},
        }
    )
    rendered = inference.runtime_config(em, OperatorSettings(mlflow_tracking_uri="http://mlflow:5000"))
    wire = json.loads(rendered.to_json())
    assert wire["driftDetectorDelta"] == 0.25 and "driftDetectorThreshold" not in wire
    settings = config.Settings(config=contracts.RuntimeConfig.model_validate(wire))
    c = contracts.DetectorCalibration(mean_abs=0.2, std_abs=0.2, rmse=0.3, samples=100)
    tuning = settings.detector_tuning(c)
    assert tuning.delta == 0.25
    assert tuning.threshold == drift.calibrated_tuning(c, 2.0).threshold
    assert tuning.source == "spec+calibrated"
