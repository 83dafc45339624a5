"""The simulator's generator: predictable by a ridge model, changed by drift, deterministic, replayable."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from edgemodel import features
from edgemodel_simulator import sensors

SPEC = features.FeatureSpec(features=("temperature", "humidity"), target="temperature", horizon=1, lags=3)
CHANGE = 1000  # steps per device before the change point


def _frame(readings: list[dict]) -> features.TrainingFrame:
    return features.build_training_frame(
        SPEC, [(r["device_id"], r["ts"], {f: r[f] for f in SPEC.fields}) for r in readings]
    )


def _rmse(model: Ridge, readings: list[dict]) -> float:
    frame = _frame(readings)
    return float(np.sqrt(np.mean((model.predict(frame.x) - frame.y) ** 2)))


def _split(kind: str, *, size: float = 3.0, after: int = 600) -> tuple[Ridge, float, float]:
    """Train on the steps before the change; RMSE on the last 200 before, and on ``after`` steps after."""
    plant = sensors.Plant(
        devices=3,
        rate=5.0,
        seed=11,
        start_ts=0.0,
        drift=sensors.Drift(kind, start=CHANGE, size=size, ramp_steps=300, period_steps=500),
    )
    before = plant.readings(CHANGE)
    later = plant.readings(after)
    split = (CHANGE - 200) * 3
    frame = _frame(before[:split])
    model = Ridge(alpha=1e-3).fit(frame.x, frame.y)
    return model, _rmse(model, before[split:]), _rmse(model, later)


def test_a_ridge_model_on_temperature_humidity_and_lags_predicts_well():
    _, holdout, same = _split("none")
    assert holdout < 0.4 and same < 0.4  # the innovation noise is 0.25; humidity adds a little


@pytest.mark.parametrize("kind", ["abrupt", "gradual", "seasonal"])
def test_drift_changes_the_relationship_after_the_change_point(kind):
    _, before, after = _split(kind)
    assert before < 0.4
    assert after > 1.5 > 4 * before, (kind, before, after)  # e.g. abrupt, size 3: 0.27 -> 2.7


def test_drift_starts_exactly_at_the_change_point():
    kwargs = {"devices": 2, "rate": 5.0, "seed": 3, "start_ts": 0.0}
    clean = sensors.Plant(**kwargs).readings(CHANGE + 50)
    drifted = sensors.Plant(**kwargs, drift=sensors.Drift("abrupt", start=CHANGE, size=2.0)).readings(
        CHANGE + 50
    )
    assert clean[: CHANGE * 2] == drifted[: CHANGE * 2]
    first = CHANGE * 2  # the first reading at the change point: its equation gets +2.0
    assert drifted[first]["temperature"] == pytest.approx(clean[first]["temperature"] + 2.0, abs=1e-3)
    assert drifted[first]["humidity"] == clean[first]["humidity"]  # humidity is untouched


def test_abrupt_drift_moves_the_level_by_size_over_one_minus_phi():
    drift = sensors.Drift("abrupt", start=500, size=1.0)
    clean = [r["temperature"] for r in sensors.Plant(devices=1, seed=5, start_ts=0.0).readings(1000)]
    drifted = [
        r["temperature"] for r in sensors.Plant(devices=1, seed=5, start_ts=0.0, drift=drift).readings(1000)
    ]
    shift = np.mean(drifted[600:]) - np.mean(clean[600:])  # same noise: the difference is the drift
    assert shift == pytest.approx(1.0 / (1 - sensors.PHI), rel=0.01)


def test_same_seed_same_readings_other_seed_other_readings():
    def run(seed: int) -> list[dict]:
        return sensors.Plant(devices=3, seed=seed, start_ts=1_700_000_000.0).readings(100)

    assert run(1) == run(1)
    assert run(1) != run(2)
    # a device's stream does not depend on how many devices there are
    two = sensors.Plant(devices=2, seed=1, start_ts=0.0).readings(50)
    five = sensors.Plant(devices=5, seed=1, start_ts=0.0).readings(50)
    assert [r for r in two if r["device_id"] == "dev-02"] == [r for r in five if r["device_id"] == "dev-02"]


def test_readings_are_interleaved_in_time_order_with_the_payload_fields():
    plant = sensors.Plant(devices=3, rate=4.0, start_ts=100.0)
    out = plant.readings(2)
    assert [r["device_id"] for r in out] == ["dev-01", "dev-02", "dev-03"] * 2
    assert [r["ts"] for r in out] == [100.0] * 3 + [100.25] * 3
    assert all(set(r) == {"device_id", "ts", "temperature", "humidity"} for r in out)
    assert all(math.isfinite(r["temperature"]) and 0 < r["humidity"] < 100 for r in out)


def test_inject_starts_a_drift_now_with_seconds_converted_to_steps():
    plant = sensors.Plant(devices=1, rate=10.0, start_ts=0.0)
    plant.readings(30)
    drift = plant.inject("gradual", size=2.0, ramp_seconds=6.0)
    assert (drift.kind, drift.start, drift.size, drift.ramp_steps) == ("gradual", 30, 2.0, 60)
    assert plant.inject("none").kind == "none"
    with pytest.raises(ValueError, match="drift must be one of"):
        plant.inject("sideways")


def test_history_ends_before_the_start_and_leaves_the_plant_alone(tmp_path):
    plant = sensors.Plant(devices=2, rate=5.0, seed=1, start_ts=1000.0)
    path = sensors.write_history(plant, tmp_path / "h.csv", readings_per_device=50)
    assert plant.steps == 0
    rows = sensors.read_replay(path.read_text().splitlines())
    assert len(rows) == 100
    assert rows[0]["ts"] == pytest.approx(990.0) and rows[-1]["ts"] < 1000.0
    assert path.read_text().splitlines()[0] == "device,ts,temperature,humidity"
    assert {r["device_id"] for r in rows} == {"dev-01", "dev-02"}


def test_history_is_good_training_data_for_the_live_stream(tmp_path):
    plant = sensors.Plant(devices=3, rate=5.0, seed=2, start_ts=0.0)
    history = sensors.read_replay(
        sensors.write_history(plant, tmp_path / "h.csv", readings_per_device=800).read_text().splitlines()
    )
    frame = _frame(history)
    model = Ridge(alpha=1e-3).fit(frame.x, frame.y)
    assert _rmse(model, plant.readings(400)) < 0.4


def test_replay_parses_and_sorts_and_refuses_bad_files():
    rows = sensors.read_replay(
        ["device,ts,temperature,humidity,extra", "m7,20.5,21,44,1", "00042,3,20.5,,", "m7,3,19,40,2"]
    )
    assert rows == [
        {"device_id": "00042", "ts": 3.0, "temperature": 20.5},
        {"device_id": "m7", "ts": 3.0, "temperature": 19.0, "humidity": 40.0, "extra": 2.0},
        {"device_id": "m7", "ts": 20.5, "temperature": 21.0, "humidity": 44.0, "extra": 1.0},
    ]
    with pytest.raises(ValueError, match="device and ts"):
        sensors.read_replay(["sensor,time", "a,1"])
    with pytest.raises(ValueError, match="line 3"):
        sensors.read_replay(["device,ts,temperature", "a,1,2", "a,2,warm"])


def test_cli_flags_build_the_configured_drift():
    args = sensors.parser().parse_args(
        ["--devices", "4", "--rate", "10", "--drift", "seasonal", "--drift-at", "30", "--drift-size", "2"]
    )
    plant = sensors._plant(args)
    assert plant.devices == ["dev-01", "dev-02", "dev-03", "dev-04"]
    assert plant.drift == sensors.Drift("seasonal", start=300, size=2.0, ramp_steps=600, period_steps=3000)
    args = sensors.parser().parse_args(["--drift", "abrupt", "--drift-after-readings", "7"])
    assert sensors._plant(args).drift.start == 7


def test_cli_writes_history(tmp_path, capsys):
    assert sensors.main(["--history", str(tmp_path / "h.csv"), "--count", "10", "--devices", "2"]) == 0
    assert len((tmp_path / "h.csv").read_text().splitlines()) == 21


def test_docstring_examples():
    assert doctest.testmod(sensors).failed == 0
