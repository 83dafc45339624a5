"""The drift detector's calibration travels with the version, on a real MLflow and a real Mosquitto.

The trainer measures each version's errors on its holdout and records them in the version's
metadata; a runtime tunes its Page-Hinkley test from the calibration of the version it
serves: after the first load, after a hot swap, and after a rollback (the version rolled
back to carries its own). Hand-set values in the config win.
"""

from __future__ import annotations

import pathlib

import pandas as pd
import pytest

from edgemodel import contracts, registry
from edgemodel_dev import testing
from edgemodel_runtime import app, drift
from edgemodel_trainer import pipeline

pytestmark = [pytest.mark.mqtt, pytest.mark.mlflow]

THRESHOLD = 1.5


def _train(uri: str, name: str, path: pathlib.Path, rows: list[dict[str, float]]) -> contracts.TrainingResult:
    pd.DataFrame(rows).to_csv(path, index=False)
    result = pipeline.run_training(
        contracts.TrainerConfig(
            model_name=name,
            tracking_uri=uri,
            features=list(testing.FEATURES),
            target=testing.TARGET,
            lags=testing.SPEC.lags,
            data=str(path),
        )
    )
    assert result.outcome == "Promoted", result
    return result


def _calibration(uri: str, name: str, result: contracts.TrainingResult) -> contracts.DetectorCalibration:
    """The calibration recorded with the version, checked against what the trainer reported."""
    assert result.version is not None and result.holdout_rmse is not None
    client = registry.client(uri)
    loaded = registry.load_version(client, name, result.version)
    cal = loaded.meta.calibration
    assert cal is not None, f"version {result.version} carries no calibration"
    assert cal.rmse == pytest.approx(result.holdout_rmse, rel=1e-9)
    assert result.run_id is not None
    holdout_rows = client.get_run(result.run_id).data.metrics["rows_holdout"]
    assert cal.samples == int(holdout_rows)
    assert 0 < cal.mean_abs <= cal.rmse
    return cal


def _serving(runtime: app.App, version: str, tuning: drift.Tuning) -> bool:
    return runtime.holder.state.version == version and runtime.drift.tuning == tuning


def test_the_runtime_tunes_its_detector_from_the_version_it_serves(
    mosquitto_broker, mlflow_server, unique_name, tmp_path
):
    uri, name = mlflow_server.uri, unique_name
    first = _train(uri, name, tmp_path / "a.csv", testing.readings(3, 400, seed=1, noise=0.2))
    # A plant with a fault the first model never saw: the second version's errors are larger.
    fault = testing.readings(3, 400, seed=2, shift_at=0, shift_size=1.0, start_ts=1_700_100_000.0)
    second = _train(uri, name, tmp_path / "b.csv", fault)
    cal1, cal2 = _calibration(uri, name, first), _calibration(uri, name, second)
    assert cal2.mean_abs > cal1.mean_abs
    tuned1, tuned2 = drift.calibrated_tuning(cal1, THRESHOLD), drift.calibrated_tuning(cal2, THRESHOLD)
    assert tuned1 != tuned2 and tuned1 != drift.DEFAULT_TUNING
    assert first.version is not None and second.version is not None

    runtime = app.App(testing.for_broker(mosquitto_broker, uri, name, drift_threshold=THRESHOLD)).start()
    try:
        testing.wait_for(lambda: _serving(runtime, second.version, tuned2), timeout=60, what="v2 tuning")
        assert runtime.drift.detector_name == "page_hinkley"

        back = pipeline.rollback(
            model_name=name, tracking_uri=uri, alias="champion", to_version=first.version
        )
        assert back.outcome == "RolledBack", back
        testing.wait_for(
            lambda: _serving(runtime, first.version, tuned1),
            timeout=60,
            what="v1's own tuning after rollback",
        )
    finally:
        runtime.stop()

    # A hand-set threshold wins; the delta still comes from the serving version's calibration.
    settings = testing.for_broker(
        mosquitto_broker,
        uri,
        name,
        drift_threshold=THRESHOLD,
        drift_detector_threshold=12.0,
        client_id=f"{name}-runtime-2",
    )
    hand = drift.Tuning(delta=tuned1.delta, threshold=12.0, source="spec+calibrated")
    runtime = app.App(settings).start()
    try:
        testing.wait_for(lambda: _serving(runtime, first.version, hand), timeout=60, what="hand-set tuning")
    finally:
        runtime.stop()
