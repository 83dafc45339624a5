"""The trainer's pure learning code: time-ordered split, scoring, estimators. No I/O."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgemodel import api, features
from edgemodel_trainer import train


def frame_of(n: int, *, timestamps: list[float] | None = None, width: int = 2) -> features.TrainingFrame:
    ts = np.asarray(timestamps if timestamps is not None else range(n), dtype=np.float64)
    x = np.arange(n * width, dtype=np.float64).reshape(n, width)
    return features.TrainingFrame(
        x=x, y=np.arange(n, dtype=np.float64), timestamps=ts, columns=tuple(f"c{i}" for i in range(width))
    )


def test_holdout_is_the_most_recent_slice_in_order() -> None:
    train_part, holdout = train.time_split(frame_of(100), fraction=0.2)
    assert holdout.y.tolist() == list(range(80, 100))
    assert train_part.y.tolist() == list(range(80))


def test_gap_drops_rows_between_training_and_holdout() -> None:
    train_part, holdout = train.time_split(frame_of(100), fraction=0.2, gap=3)
    assert train_part.y.tolist() == list(range(77))
    assert holdout.y[0] == 80


def test_rows_sharing_a_timestamp_stay_on_one_side() -> None:
    ts = [float(i // 2) for i in range(100)]  # two devices reporting at the same instants
    train_part, holdout = train.time_split(frame_of(100, timestamps=ts), fraction=0.25)
    assert train_part.timestamps.max() < holdout.timestamps.min()
    assert not set(train_part.timestamps) & set(holdout.timestamps)


@given(n=st.integers(30, 500), fraction=st.floats(0.05, 0.5), gap=st.integers(0, 4))
def test_split_never_overlaps_and_keeps_order(n: int, fraction: float, gap: int) -> None:
    try:
        train_part, holdout = train.time_split(frame_of(n), fraction=fraction, gap=gap)
    except train.NotEnoughDataError:
        return
    assert len(holdout) >= max(train.MIN_HOLDOUT_ROWS, math.ceil(fraction * n))
    assert len(train_part) + gap + len(holdout) == n
    assert train_part.timestamps[-1] < holdout.timestamps[0]
    assert np.all(np.diff(holdout.timestamps) >= 0)


@pytest.mark.parametrize("n", [0, 10, 24])
def test_too_few_rows_are_refused(n: int) -> None:
    with pytest.raises(train.NotEnoughDataError):
        train.time_split(frame_of(n), fraction=0.2)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_fraction_must_be_a_proper_share(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        train.time_split(frame_of(100), fraction=fraction)


def test_rmse() -> None:
    assert train.rmse([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 0.0
    assert train.rmse([0.0, 0.0], [3.0, 4.0]) == pytest.approx(math.sqrt(12.5))
    assert train.rmse([0.0], [float("nan")]) == math.inf
    with pytest.raises(ValueError):
        train.rmse([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        train.rmse([], [])


@pytest.mark.parametrize("algorithm", api.ALGORITHMS)
def test_every_algorithm_learns_a_linear_signal(algorithm: api.Algorithm) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = 2.0 * x[:, 0] - x[:, 1] + rng.normal(0, 0.05, 400)
    frame = features.TrainingFrame(x=x, y=y, timestamps=np.arange(400.0), columns=("a", "b", "c"))
    train_part, holdout = train.time_split(frame)
    model = train.fit(algorithm, train_part, seed=1)
    assert train.evaluate(model, holdout) < 0.5 * float(np.std(holdout.y))


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown algorithm"):
        train.make_estimator("svm")  # type: ignore[arg-type]


def test_last_value_baseline_needs_the_target_among_the_features() -> None:
    spec = features.FeatureSpec(features=("h", "t"), target="t", lags=1)
    frame = features.build_training_frame(
        spec, [("d", float(i), {"h": 0.0, "t": float(i * i)}) for i in range(6)]
    )
    naive = train.last_value_predictions(frame, spec)
    assert naive is not None
    assert naive.tolist() == [1.0, 4.0, 9.0, 16.0]
    other = features.FeatureSpec(features=("h",), target="t", lags=1)
    assert train.last_value_predictions(frame, other) is None
