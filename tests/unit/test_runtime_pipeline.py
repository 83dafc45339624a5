"""The pure pipeline: raw messages in; rejections, rows, predictions and drift hand-offs out.

No broker, model server or clock: the model is a plain object and the time is passed in.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edgemodel import features
from edgemodel_runtime import payloads, pipeline

SPEC = features.FeatureSpec(features=("v",), target="v", horizon=1, lags=0)
SCHEMA = payloads.Schema(fields=("v",), device_field="device")


@dataclasses.dataclass
class Constant:
    value: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.value)


@dataclasses.dataclass
class Broken:
    def predict(self, x: np.ndarray) -> np.ndarray:
        raise RuntimeError("no")


@dataclasses.dataclass
class Model:
    version: str
    model: object


def make(**overrides: object) -> pipeline.Pipeline:
    options: dict = {
        "threshold": 1.0,
        "drift_window": 10,
        "detector": "none",
        "training_window": 100,
        "fresh_max_seconds": 60.0,
        "bootstrap_min": 5,
        "bootstrap_period": 30.0,
    } | overrides
    return pipeline.Pipeline(SPEC, SCHEMA, **options)


def messages(device: str, values: list[float], start: int = 0) -> list[pipeline.Message]:
    return [
        ("t", json.dumps({"device": device, "ts": start + i, "v": v}).encode(), float(start + i), 0.0)
        for i, v in enumerate(values)
    ]


def test_rejections_and_other_replicas_devices_are_reported_not_planned():
    p = make()
    batch = [*messages("a", [1.0, 2.0]), ("t", b"not json", 0.0, 0.0), *messages("b", [1.0])]
    batch.append(batch[0])  # a duplicate of device a's first reading, after a newer one
    step = p.process(batch, None, owns=lambda d: d == "a", now=0.0)
    assert step.messages == 5
    assert [r.reason for r in step.rejected] == ["not_json", "out_of_order"]
    assert step.others == 1
    assert [r.device for r in step.plan.accepted] == ["a", "a"]
    assert step.unpredicted == 2 and step.predictions is None and step.outcomes == 0


def test_bootstrap_is_due_once_the_window_holds_enough_then_once_per_period():
    p = make()
    assert not p.process(messages("a", [1.0] * 4), None, owns=None, now=0.0, may_bootstrap=True).bootstrap
    assert not p.process(messages("a", [1.0], 4), None, owns=None, now=0.0, may_bootstrap=False).bootstrap
    assert p.process(messages("a", [1.0], 5), None, owns=None, now=1.0, may_bootstrap=True).bootstrap
    assert not p.process(messages("a", [1.0], 6), None, owns=None, now=30.0, may_bootstrap=True).bootstrap
    assert p.process(messages("a", [1.0], 7), None, owns=None, now=31.0, may_bootstrap=True).bootstrap


def test_predictions_become_outcomes_and_drift_starts_then_hands_over_the_changed_plant():
    p = make(drift_window=10, training_window=40)
    model = Model("1", Constant(0.0))
    assert p.adopt_model("1") and not p.adopt_model("1")
    step = p.process(messages("a", [0.1] * 10), model, owns=None, now=0.0)
    assert step.version == "1" and step.predictions is not None and len(step.predictions) == 10
    assert step.outcomes == 9 and step.report and step.drift_started is None and step.window_reason is None
    step = p.process(messages("a", [5.0] * 10, 10), model, owns=None, now=1.0)
    assert step.drift_started == "Threshold" and step.window_reason == "drift"
    assert step.fresh is not None and step.fresh.change_ts == 19.0 and step.fresh.count == 0
    # fresh_target(training_window=40, drift_window=10) is 20 readings of the changed plant
    step = p.process(messages("a", [5.0] * 19, 20), model, owns=None, now=2.0)
    assert step.window_reason is None and p.fresh is not None and p.fresh.count == 19
    step = p.process(messages("a", [5.0], 39), model, owns=None, now=3.0)
    assert step.window_reason == "drift" and step.fresh is not None and step.fresh.count == 20
    assert p.fresh is None and p.drift.detected


def test_a_slow_stream_hands_the_window_over_after_max_seconds():
    p = make(drift_window=10, training_window=40, fresh_max_seconds=5.0)
    model = Model("1", Constant(0.0))
    p.adopt_model("1")
    assert p.process(messages("a", [5.0] * 11), model, owns=None, now=0.0).drift_started == "Threshold"
    assert p.process(messages("a", [5.0], 11), model, owns=None, now=4.9).window_reason is None
    assert p.process(messages("a", [5.0], 12), model, owns=None, now=5.0).window_reason == "drift"


def test_a_drift_that_outlasts_a_retrain_hands_the_changed_plant_over_again_until_a_new_model():
    """A rejected challenger leaves the drift on: the next retrain reads only windows logged since it
    started, so the window with the changed plant is handed over again every fresh_max_seconds."""
    p = make(drift_window=10, training_window=40, fresh_max_seconds=60.0)
    model = Model("1", Constant(0.0))
    p.adopt_model("1")
    first = p.process(messages("a", [0.1] * 10 + [5.0] * 10), model, owns=None, now=0.0)
    assert first.drift_started == "Threshold" and first.fresh is not None
    change_ts = first.fresh.change_ts
    handed = p.process(messages("a", [5.0] * 20, 20), model, owns=None, now=1.0)
    assert handed.window_reason == "drift" and handed.fresh is not None and handed.fresh.count == 20
    assert p.process(messages("a", [5.0] * 5, 40), model, owns=None, now=60.9).window_reason is None
    again = p.process(messages("a", [5.0] * 5, 45), model, owns=None, now=61.0)
    assert again.window_reason == "drift" and again.drift_started is None and again.fresh is not None
    assert again.fresh.change_ts == change_ts and again.fresh.count == 30  # every reading since the change
    assert p.process(messages("a", [5.0] * 5, 50), model, owns=None, now=62.0).window_reason is None
    assert p.process(messages("a", [5.0] * 5, 55), model, owns=None, now=121.0).window_reason == "drift"
    # A new model serves: its drift, if any, is a new episode; nothing more is handed over meanwhile.
    p.adopt_model("2")
    fitted = Model("2", Constant(5.0))
    assert p.process(messages("a", [5.0] * 10, 60), fitted, owns=None, now=500.0).window_reason is None
    assert p.episode is None


def test_outcomes_of_another_model_are_not_this_ones_drift():
    p = make()
    p.adopt_model("2")
    step = p.process(messages("a", [5.0] * 5), Model("1", Constant(0.0)), owns=None, now=0.0)
    assert step.outcomes == 0 and not step.report and p.drift.seen == 0


def test_a_failing_model_keeps_the_stream_going():
    p = make()
    p.adopt_model("1")
    step = p.process(messages("a", [1.0, 2.0]), Model("1", Broken()), owns=None, now=0.0)
    assert step.predictions is None and step.prediction_error == "no"
    assert len(step.plan.accepted) == 2 and len(p.window) == 2


def test_a_new_model_starts_drift_over():
    p = make()
    p.adopt_model("1")
    p.process(messages("a", [5.0] * 11), Model("1", Constant(0.0)), owns=None, now=0.0)
    assert p.drift.detected
    assert p.adopt_model("2")
    assert not p.drift.detected and p.drift.seen == 0


@pytest.mark.parametrize("lags", [0, 2])
def test_predict_one_builds_the_row_from_a_fresh_history(lags):
    spec = features.FeatureSpec(features=("v",), target="v", horizon=1, lags=lags)
    p = pipeline.Pipeline(
        spec,
        SCHEMA,
        threshold=1.0,
        drift_window=10,
        detector="none",
        training_window=10,
        fresh_max_seconds=1.0,
    )

    class Sum:
        def predict(self, x: np.ndarray) -> np.ndarray:
            return x.sum(axis=1)

    readings = [payloads.Reading("a", float(i), {"v": float(i + 1)}) for i in range(lags + 1)]
    assert p.predict_one(Model("1", Sum()), readings) == sum(range(1, lags + 2))
