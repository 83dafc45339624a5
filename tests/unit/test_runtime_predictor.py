"""The runtime's prediction path: the trainer's ridge model without scikit-learn's input checks, same floats.

:func:`edgemodel_runtime.inference.linear_predict` repeats a fitted ``StandardScaler`` +
``Ridge`` pipeline's arithmetic; :class:`~edgemodel_runtime.inference.Predictor` uses it
only once it matched the model's own ``predict`` exactly on a batch. Real fitted models,
no I/O.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from edgemodel import features
from edgemodel_runtime import inference, payloads, pipeline
from edgemodel_trainer import train


@dataclasses.dataclass(frozen=True)
class Served:
    version: str
    model: Any


def fitted(model: Any, columns: int = 4, seed: int = 0) -> Any:
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, size=(500, columns))
    y = x @ rng.normal(size=columns) + rng.normal(0, 0.1, size=500) + 7.0
    return model.fit(x, y)


def batches(columns: int = 4, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(3.0, 5.0, size=(n, columns)) for n in (1, 2, 7, 20, 64, 20, 3)]


@pytest.mark.parametrize(
    "scaler",
    [StandardScaler(), StandardScaler(with_mean=False), StandardScaler(with_std=False)],
    ids=["default", "no-mean", "no-std"],
)
def test_the_ridge_path_gives_exactly_the_models_predictions(scaler: StandardScaler):
    model = fitted(Pipeline([("scale", scaler), ("ridge", Ridge(alpha=1.0))]))
    fast = inference.linear_predict(model)
    assert fast is not None
    for x in batches():
        assert np.array_equal(fast(x), model.predict(x))


def test_the_trainers_ridge_qualifies_and_its_other_models_do_not():
    assert inference.linear_predict(fitted(train.make_estimator("ridge"))) is not None
    for algorithm in ("random_forest", "gradient_boosting"):
        model = fitted(train.make_estimator(algorithm))  # type: ignore[arg-type]
        assert inference.linear_predict(model) is None
        predictor = inference.Predictor(model)
        x = batches()[3]
        assert not predictor.fast and np.array_equal(predictor(x), model.predict(x))
    assert inference.linear_predict(fitted(Ridge())) is None  # not the trainer's pipeline
    three = Pipeline([("a", StandardScaler()), ("b", StandardScaler()), ("ridge", Ridge())])
    assert inference.linear_predict(fitted(three)) is None


def test_rows_of_the_wrong_width_are_refused_like_scikit_learn_refuses_them():
    fast = inference.linear_predict(fitted(train.make_estimator("ridge")))
    assert fast is not None
    with pytest.raises(ValueError, match="4 columns"):
        fast(np.zeros((2, 3)))


def test_the_predictor_falls_back_for_good_when_the_fast_path_differs():
    model = fitted(train.make_estimator("ridge"))
    predictor = inference.Predictor(model)
    assert predictor.fast
    model.steps[1][1].coef_ = model.steps[1][1].coef_ * 2.0  # the model changed under the fast path
    x = batches()[3]
    assert np.array_equal(predictor(x), model.predict(x))
    assert not predictor.fast


def test_the_pipeline_predicts_through_it_with_the_models_own_results():
    spec = features.FeatureSpec(features=("v",), target="v", horizon=1, lags=2)
    model = fitted(train.make_estimator("ridge"), columns=len(spec.columns))

    p = pipeline.Pipeline(
        spec, payloads.Schema(fields=("v",), device_field="d"), threshold=1.0, drift_window=10,
        detector="none", training_window=100, fresh_max_seconds=60.0,
    )  # fmt: skip
    messages = [("t", f'{{"d": "a", "ts": {t}, "v": {t % 7}}}'.encode(), 0.0, float(t)) for t in range(40)]
    step = p.process(messages, Served("1", model), owns=None, now=0.0)
    assert step.predictions is not None and step.prediction_error is None
    expected = model.predict(step.plan.matrix(len(spec.columns)))
    assert np.array_equal(step.predictions, expected)
    assert p._predictor is not None and p._predictor.fast
