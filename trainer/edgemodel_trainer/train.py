"""Build, fit and score models on a time-ordered training frame.

The holdout is always the most recent slice of the frame, never a shuffled sample: a
model is judged on the data that lies after everything it learned from, as it will be
in service. Between the two parts, ``gap`` rows are dropped so that no training label
is a value the holdout's rows are asked to predict (see :func:`time_split`).

Pure functions; no I/O here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from edgemodel import api, features, modelstore

__all__ = [
    "HOLDOUT_FRACTION",
    "MIN_HOLDOUT_ROWS",
    "MIN_TRAIN_ROWS",
    "NotEnoughDataError",
    "evaluate",
    "fit",
    "last_value_predictions",
    "make_estimator",
    "rmse",
    "time_split",
]

HOLDOUT_FRACTION = 0.2
"""The share of rows, the most recent ones, kept out of training to judge models on."""
MIN_TRAIN_ROWS = 20
MIN_HOLDOUT_ROWS = 5


class NotEnoughDataError(ValueError):
    """Too few rows to train and judge a model honestly."""


def make_estimator(algorithm: api.Algorithm, *, seed: int = 0) -> Any:
    """An unfitted scikit-learn regressor for ``algorithm``; every type loads under skops' allow-list.

    >>> type(make_estimator("ridge")).__name__
    'Pipeline'
    """
    if algorithm == "ridge":
        return Pipeline([("scale", StandardScaler()), ("ridge", Ridge(alpha=1.0))])
    if algorithm == "random_forest":
        # Bounded depth keeps the skops file small enough to hot-reload at the edge.
        return RandomForestRegressor(
            n_estimators=100, max_depth=12, min_samples_leaf=3, n_jobs=1, random_state=seed
        )
    if algorithm == "gradient_boosting":
        # Not HistGradientBoosting: its TreePredictor type is outside the skops allow-list.
        return GradientBoostingRegressor(
            n_estimators=200, max_depth=3, learning_rate=0.05, subsample=1.0, random_state=seed
        )
    raise ValueError(f"unknown algorithm {algorithm!r}; expected one of {api.ALGORITHMS}")


def time_split(
    frame: features.TrainingFrame,
    *,
    fraction: float = HOLDOUT_FRACTION,
    gap: int = 0,
    min_train: int = MIN_TRAIN_ROWS,
    min_holdout: int = MIN_HOLDOUT_ROWS,
) -> tuple[features.TrainingFrame, features.TrainingFrame]:
    """Split into (older training part, most recent holdout), in time order, never shuffled.

    The holdout takes the last ``ceil(fraction * n)`` rows (at least ``min_holdout``),
    moved back if needed so that rows sharing one timestamp stay on one side. ``gap`` rows
    just before the holdout are dropped: with ``horizon * devices`` of them, the label of
    a training row is never a reading that lies inside the holdout period.

    Raises :class:`NotEnoughDataError` when either part would be too small.

    >>> import numpy as np
    >>> f = features.TrainingFrame(np.zeros((10, 1)), np.arange(10.0), np.arange(10.0), ("a",))
    >>> train, hold = time_split(f, fraction=0.2, gap=1, min_train=2, min_holdout=1)
    >>> train.y.tolist(), hold.y.tolist()
    ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [8.0, 9.0])
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError("fraction must be between 0 and 1")
    if gap < 0:
        raise ValueError("gap must not be negative")
    n = len(frame)
    cut = n - max(min_holdout, math.ceil(fraction * n))
    while 0 < cut < n and frame.timestamps[cut - 1] == frame.timestamps[cut]:
        cut -= 1
    end = cut - gap
    if end < min_train or n - cut < min_holdout:
        raise NotEnoughDataError(
            f"{n} rows are too few: need {min_train} to train and {min_holdout} to judge "
            f"(holdout {fraction:.0%}, gap {gap})"
        )
    return _rows(frame, 0, end), _rows(frame, cut, n)


def _rows(frame: features.TrainingFrame, start: int, stop: int) -> features.TrainingFrame:
    return features.TrainingFrame(
        x=frame.x[start:stop],
        y=frame.y[start:stop],
        timestamps=frame.timestamps[start:stop],
        columns=frame.columns,
    )


def fit(algorithm: api.Algorithm, frame: features.TrainingFrame, *, seed: int = 0) -> Any:
    """A new model of ``algorithm`` fitted on all rows of ``frame``."""
    if len(frame) == 0:
        raise NotEnoughDataError("no rows to train on")
    model = make_estimator(algorithm, seed=seed)
    model.fit(frame.x, frame.y)
    return model


def rmse(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Root mean squared error; ``inf`` when any prediction is not finite.

    >>> rmse([1.0, 2.0], [1.0, 4.0])
    1.4142135623730951
    """
    truth = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if truth.shape != pred.shape:
        raise ValueError(f"{pred.shape[0]} predictions for {truth.shape[0]} labels")
    if truth.size == 0:
        raise ValueError("no labels to score")
    if not np.all(np.isfinite(pred)):
        return math.inf
    return float(np.sqrt(np.mean((truth - pred) ** 2)))


def evaluate(model: modelstore.Predictor, frame: features.TrainingFrame) -> float:
    """RMSE of ``model`` on the rows of ``frame``."""
    return rmse(frame.y, model.predict(frame.x))


def last_value_predictions(
    frame: features.TrainingFrame, spec: features.FeatureSpec
) -> npt.NDArray[np.float64] | None:
    """The naive forecast "the target stays where it is now", or ``None`` when the rows lack it.

    A row carries the current target value only when the target is also a feature.
    """
    if spec.target not in spec.features:
        return None
    return frame.x[:, spec.features.index(spec.target)]
