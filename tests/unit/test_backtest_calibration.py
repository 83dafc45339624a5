"""The backtest tunes each served version's change detector as the runtime does: from its calibration.

The trainer measures a calibration on every version's holdout
(:func:`edgemodel_trainer.calibration.on_holdout`); the runtime tunes Page-Hinkley from
the calibration of the version it serves (``Settings.detector_tuning``, then
``DriftMonitor.retune``), and hand-set ``spec.drift.detectorTuning`` values win. These
tests check that the backtest's replicas do the same, and that it changes what they
detect: a model with small errors tolerates a short sub-threshold burst that the fixed
default tuning flags. No I/O.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from edgemodel import api, contracts
from edgemodel_backtest import loop, stream, training
from edgemodel_runtime import drift, payloads

START = 1_767_225_600.0
THRESHOLD = 0.5
SPEC: dict[str, Any] = {
    "sensors": {"topics": ["plant/+/t"], "features": ["x"], "target": "y", "lags": 0},
    "drift": {"threshold": THRESHOLD, "window": 50},
    "retraining": {"trainingWindow": 1000, "cooldownSeconds": 60},
    "model": {"algorithm": "ridge"},
    "broker": {"host": "broker.example"},
}
CALIBRATION = contracts.DetectorCalibration(mean_abs=0.04, std_abs=0.03, rmse=0.05, samples=200)
BOOTSTRAP = 600
BURST = (1200, 1240)
"""Readings whose truth is off by half the threshold: under it, and too short for the calibrated test."""


def spec(**drift_fields: Any) -> api.EdgeModelSpec:
    doc = {**SPEC, "drift": {**SPEC["drift"], **drift_fields}}
    return api.EdgeModelSpec.model_validate(doc)


def readings(n: int = 2000, seed: int = 3) -> list[payloads.Reading]:
    """One device at 1 Hz: y follows x closely, except for a short burst of errors under the threshold."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        x = math.sin(2 * math.pi * i / 600)
        bump = 0.5 * THRESHOLD if BURST[0] <= i < BURST[1] else 0.0
        y = 2.0 * math.sin(2 * math.pi * (i - 1) / 600) + bump + rng.gauss(0, 0.02)
        out.append(payloads.Reading(device="d", ts=START + i, values={"x": x, "y": y}))
    return out


def replay(the_spec: api.EdgeModelSpec) -> loop.Loop:
    """The loop from version 1 (trained on the first readings), over the rest."""
    history = readings()
    the_loop = loop.Loop(the_spec, name="calibrated")
    messages = stream.encode(history[BOOTSTRAP:])
    the_loop.prime(stream.encode(history[:BOOTSTRAP]))
    the_loop.bootstrap(history[:BOOTSTRAP], now=messages[0][2])
    the_loop.run(messages)
    return the_loop


def detections(errors: list[float], tuning: drift.Tuning) -> int:
    """Starts of drift by the runtime's monitor with ``tuning`` over the same errors, by hand."""
    monitor = drift.DriftMonitor(threshold=THRESHOLD, window=50, detector="page_hinkley", tuning=tuning)
    count, was = 0, False
    for error in errors:
        now = monitor.update(error).detected
        count += now and not was
        was = now
    return count


@pytest.mark.parametrize(
    ("hand_set", "calibration", "expected"),
    [
        ({}, CALIBRATION, drift.calibrated_tuning(CALIBRATION, THRESHOLD)),
        ({}, None, drift.DEFAULT_TUNING),
        (
            {"detectorTuning": {"threshold": 12.0}},
            CALIBRATION,
            drift.Tuning(drift.calibrated_tuning(CALIBRATION, THRESHOLD).delta, 12.0, "spec+calibrated"),
        ),
        ({"detectorTuning": {"delta": 0.3, "threshold": 12.0}}, CALIBRATION, drift.Tuning(0.3, 12.0, "spec")),
    ],
    ids=["calibrated", "no-calibration", "spec-threshold-wins", "spec-wins"],
)
def test_a_served_version_tunes_the_detector_from_its_calibration_and_hand_set_values_win(
    hand_set: dict[str, Any], calibration: contracts.DetectorCalibration | None, expected: drift.Tuning
):
    replica = stream.Replica(spec(**hand_set))
    replica.serve(stream.Served("1", model=None, calibration=calibration))
    assert replica.pipeline.drift.tuning == expected
    assert replica.tunings == [("1", expected)]
    replica.serve(stream.Served("1", model=None, calibration=None))  # the same version: no new tuning
    assert replica.pipeline.drift.tuning == expected and len(replica.tunings) == 1


def test_each_new_version_is_tuned_from_its_own_calibration():
    replica = stream.Replica(spec())
    other = contracts.DetectorCalibration(mean_abs=0.3, std_abs=0.2, rmse=0.36, samples=50)
    replica.serve(stream.Served("1", model=None, calibration=CALIBRATION))
    replica.serve(stream.Served("2", model=None, calibration=other))
    assert replica.pipeline.drift.tuning == drift.calibrated_tuning(other, THRESHOLD)
    assert [v for v, _ in replica.tunings] == ["1", "2"]


def test_a_trained_version_carries_the_calibration_of_its_holdout():
    verdict = training.train_on(readings()[:BOOTSTRAP], spec=spec(), champion=None)
    assert verdict.outcome == "Promoted" and verdict.calibration is not None
    # Measured on the gate's holdout: the same errors as the holdout RMSE.
    assert verdict.holdout_rmse is not None
    assert math.isclose(verdict.calibration.rmse, verdict.holdout_rmse, rel_tol=1e-12)
    assert 0 < verdict.calibration.samples < verdict.samples


def test_the_loop_detects_with_the_served_versions_calibration():
    calibrated = replay(spec())
    version1 = calibrated.versions["1"]
    assert version1.calibration is not None
    tuning = drift.calibrated_tuning(version1.calibration, THRESHOLD)
    assert calibrated.replica.tunings[0] == ("1", tuning)
    errors = calibrated.replica.outcomes.errors
    # The small-error model tolerates the short burst; the fixed default tuning would flag it.
    assert detections(errors, tuning) == 0
    assert detections(errors, drift.DEFAULT_TUNING) >= 1
    figures = calibrated.figures()
    assert figures.count("detection") == 0 and figures.count("retrain") == 0

    # Hand-set values win: the same history with the default tuning set in the spec detects the burst.
    d = drift.DEFAULT_TUNING
    hand_set = replay(spec(detectorTuning={"delta": d.delta, "threshold": d.threshold}))
    assert hand_set.replica.tunings[0] == ("1", drift.Tuning(d.delta, d.threshold, "spec"))
    detected = hand_set.figures().times("detection")
    assert detected and BURST[0] <= detected[0] - START <= BURST[1] + 1
