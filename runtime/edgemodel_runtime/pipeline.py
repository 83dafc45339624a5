"""The message path as a pure pipeline: readings in; rows, predictions, rejections and drift out.

:meth:`Pipeline.process` takes one micro-batch of raw MQTT messages and the model to
use, and returns a :class:`Step`: what was refused and why, the rows predicted and their
predictions, how many outcomes reached the drift state, whether drift started or cleared,
and whether the training window is due to be handed over (on drift, once the changed
plant has filled it, or for a bootstrap when no model serves). The I/O shell
(:mod:`edgemodel_runtime.app`) publishes, counts, logs and reports from that.

State kept between batches: per-device history (:class:`~edgemodel_runtime.inference.Inference`),
the drift and input-drift monitors, the training window, and the hand-off state machine.

Pure and stateful: no sockets, threads, clocks, metrics or logging here; the caller
passes the time in. One thread uses a pipeline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edgemodel import features
from edgemodel_runtime import drift, inference, payloads, window

__all__ = ["Message", "Model", "Pipeline", "Rejection", "Step"]


class _Predictor(Protocol):
    def predict(self, x: npt.NDArray[np.float64], /) -> Any: ...


class Model(Protocol):
    """What the pipeline needs of a loaded model (:class:`edgemodel.Model`)."""

    @property
    def version(self) -> str: ...

    @property
    def model(self) -> _Predictor: ...


Message = tuple[str, bytes, float, float]
"""topic, payload, monotonic arrival time, wall-clock arrival time."""


@dataclasses.dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    """One of :data:`edgemodel_runtime.payloads.REASONS`."""
    detail: str
    topic: str | None


@dataclasses.dataclass
class Step:
    """What one batch produced."""

    messages: int
    plan: inference.Plan
    arrivals: dict[int, float]
    """Monotonic arrival time of each accepted reading, by ``id(reading)``."""
    rejected: list[Rejection] = dataclasses.field(default_factory=list)
    others: int = 0
    """Readings of devices another replica owns, skipped."""
    predictions: npt.NDArray[np.float64] | None = None
    """One per row of the plan; None when no model serves or the model failed."""
    prediction_error: str | None = None
    version: str | None = None
    """The model version that made ``predictions``."""
    unpredicted: int = 0
    """Readings accepted while no model serves."""
    bootstrap: bool = False
    """No model serves and the window is due to be handed over for a bootstrap."""
    outcomes: int = 0
    """Outcomes of the serving model that reached the drift state."""
    drift_started: str | None = None
    """The reason, when drift started with this batch."""
    drift_cleared: bool = False
    report: bool = False
    """The drift state may have changed: report it."""
    window_reason: str | None = None
    """``"drift"`` when the window is to be handed over with the report."""
    fresh: window.FreshReadings | None = None
    """With a drift hand-off: the change mark and the readings of the changed plant so far."""


class Pipeline:
    """The state and rules of one replica's message path.

    >>> spec = features.FeatureSpec(features=("v",), target="v", horizon=1, lags=0)
    >>> p = Pipeline(spec, payloads.Schema(fields=("v",), device_field="d"),
    ...              threshold=1.0, drift_window=10, detector="none", training_window=100,
    ...              fresh_max_seconds=60.0)
    >>> step = p.process([("t", b'{"d": "a", "ts": 1, "v": 2}', 0.0, 1.0),
    ...                   ("t", b'{"d": "a"}', 0.0, 1.0)], None, owns=None, now=0.0)
    >>> [r.reason for r in step.rejected], len(step.plan.accepted), step.unpredicted
    (['missing_field'], 1, 1)
    """

    def __init__(
        self,
        spec: features.FeatureSpec,
        schema: payloads.Schema,
        *,
        threshold: float,
        drift_window: int,
        detector: drift.DetectorName,
        training_window: int,
        fresh_max_seconds: float,
        max_devices: int = 100_000,
        bootstrap_min: int = 200,
        bootstrap_period: float = 60.0,
    ) -> None:
        self.spec = spec
        self.schema = schema
        self.inference = inference.Inference(spec, max_devices=max_devices)
        self.drift = drift.DriftMonitor(threshold=threshold, window=drift_window, detector=detector)
        self.psi = drift.PSIMonitor(tuple(spec.features))
        self.window = window.TrainingWindow(training_window)
        self.fresh: window.FreshReadings | None = None
        """Set from a detection until the window with the changed plant is handed over."""
        self.episode: window.FreshReadings | None = None
        """The readings since the change, for as long as this drift lasts on this model."""
        self._refresh_at: float | None = None
        self.serving: str | None = None
        """The model version whose outcomes count as drift."""
        self._drift_window = drift_window
        self._training_window = training_window
        self._fresh_max_seconds = fresh_max_seconds
        self._bootstrap_min = min(training_window, bootstrap_min)
        self._bootstrap_period = bootstrap_period
        self._bootstrap_next = 0.0
        self._predictor: inference.Predictor | None = None

    def adopt_model(self, version: str | None) -> bool:
        """A new model version serves (or none): start drift and PSI over; whether it changed."""
        if version == self.serving:
            return False
        self.serving = version
        self.drift.reset()
        self.psi.reset()
        self.episode = None
        self._refresh_at = None
        return True

    def forget(self, keep: Callable[[str], bool]) -> int:
        """Drop the devices ``keep`` refuses (they moved to another replica); return how many."""
        return self.inference.forget(keep)

    def process(
        self,
        batch: Sequence[Message],
        model: Model | None,
        *,
        owns: Callable[[str], bool] | None,
        now: float,
        may_bootstrap: bool = False,
    ) -> Step:
        """Parse, plan, predict and complete one batch, and update the drift state.

        ``owns`` says which devices this replica handles (None: all); ``now`` is the
        monotonic time; ``may_bootstrap`` says the model alias was looked up and is empty.
        """
        schema = self.schema
        parse = payloads.parse
        rejected: list[Rejection] = []
        readings: list[payloads.Reading] = []
        arrivals: dict[int, float] = {}
        others = 0
        for topic, payload, arrived, wall in batch:
            try:
                reading = parse(payload, schema, topic=topic, received=wall)
            except payloads.PayloadError as exc:
                rejected.append(Rejection(exc.reason, exc.detail, topic))
                continue
            if owns is not None and not owns(reading.device):
                others += 1
                continue
            readings.append(reading)
            arrivals[id(reading)] = arrived

        plan = self.inference.plan(readings, predicting=model is not None)
        rejected.extend(
            Rejection(reason, f"device {reading.device} at ts {reading.ts}", None)
            for reading, reason in plan.rejected
        )
        step = Step(messages=len(batch), plan=plan, arrivals=arrivals, rejected=rejected, others=others)
        self.window.extend(plan.accepted)
        if self.fresh is not None:
            self.fresh.add(len(plan.accepted))
        if self.episode is not None:
            self.episode.add(len(plan.accepted))
        names = self.spec.features
        self.psi.update_many([[reading.values[f] for f in names] for reading in plan.accepted])

        if model is None:
            step.unpredicted = len(plan.accepted)
            step.bootstrap = may_bootstrap and self._bootstrap_due(now)
        elif plan.rows:
            step.predictions, step.prediction_error = self._predict(model, plan)
            step.version = model.version
        outcomes = self.inference.complete(plan, step.predictions, None if model is None else model.version)
        self._record(outcomes, step, now)
        return step

    def _predict(
        self, model: Model, plan: inference.Plan
    ) -> tuple[npt.NDArray[np.float64] | None, str | None]:
        try:
            predictor = self._predictor
            if predictor is None or predictor.model is not model.model:
                predictor = self._predictor = inference.Predictor(model.model)
            out = predictor(plan.matrix(len(self.spec.columns)))
            return out.reshape(len(plan.rows)), None
        except Exception as exc:  # noqa: BLE001 - the stream goes on; history is already kept
            return None, str(exc)

    def _bootstrap_due(self, now: float) -> bool:
        """No model serves: hand the window to the bootstrap Job, at most once per period."""
        if len(self.window) < self._bootstrap_min or now < self._bootstrap_next:
            return False
        self._bootstrap_next = now + self._bootstrap_period
        return True

    def _record(self, outcomes: Sequence[inference.Outcome], step: Step, now: float) -> None:
        """Feed the serving model's outcomes to the drift state; run the hand-off state machine."""
        monitor = self.drift
        was = monitor.detected
        counted = 0
        for outcome in outcomes:
            if outcome.version == self.serving:  # outcomes of a previous model are not this one's drift
                monitor.update(outcome.error)
                counted += 1
        step.outcomes = counted
        if not counted:
            return
        step.report = True
        if monitor.detected and not was:
            step.drift_started = monitor.reason or "Threshold"
            change_ts = self.window.newest_ts()
            self.fresh = None
            if change_ts is not None:
                self.fresh = window.FreshReadings(
                    change_ts=change_ts,
                    started=now,
                    target=window.fresh_target(
                        training_window=self._training_window, drift_window=self._drift_window
                    ),
                    max_seconds=self._fresh_max_seconds,
                )
            self.episode = None if self.fresh is None else dataclasses.replace(self.fresh)
            self._refresh_at = None
            step.window_reason = "drift"
            step.fresh = self.fresh
            return
        step.drift_cleared = was and not monitor.detected
        if step.drift_cleared:
            self.episode = None
            self._refresh_at = None
        fresh = self.fresh
        if fresh is not None and (fresh.ready(now=now) or not monitor.detected):
            step.window_reason = "drift"  # the window with the changed plant
            step.fresh = fresh
            self.fresh = None
            self._refresh_at = now + self._fresh_max_seconds
        elif (
            fresh is None
            and monitor.detected
            and self.episode is not None
            and self._refresh_at is not None
            and now >= self._refresh_at
        ):
            # The drift outlasted a retrain (its challenger was rejected, or it failed): hand
            # the newer readings of the changed plant over again, so the next retrain, which
            # reads only windows logged since it started, has something to learn from.
            step.window_reason = "drift"
            step.fresh = dataclasses.replace(self.episode)
            self._refresh_at = now + self._fresh_max_seconds

    def predict_one(self, model: Model, readings: Sequence[payloads.Reading]) -> float:
        """The prediction from the last of ``readings`` (oldest first), with a fresh history."""
        history = features.DeviceHistory(self.spec)
        row = None
        for reading in readings:
            row = history.row_for(reading.values)
        assert row is not None
        return float(np.asarray(model.model.predict(np.asarray([row], dtype=np.float64))).reshape(-1)[0])
