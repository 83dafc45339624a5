"""One runtime replica on a virtual clock: the production pipeline, fed a history batch by batch.

:class:`Replica` wraps :class:`edgemodel_runtime.pipeline.Pipeline`, configured from the
EdgeModel spec the way the operator configures a runtime Pod
(:func:`edgemodel_operator.render.inference.runtime_config`, read by the runtime's own
:class:`edgemodel_runtime.config.Settings`): the same feature builder, per-device
history, drift monitor and training window. When a version starts serving, its change
detector is tuned as the runtime tunes it (``edgemodel_runtime.app``:
``Settings.detector_tuning`` on the version's calibration, then ``DriftMonitor.retune``),
from the calibration the trainer measured on that version's holdout; hand-set
``spec.drift.detectorTuning`` values win. Readings go in as the JSON
payloads a sensor publishes, with their own timestamps as the arrival time, and are cut
into micro-batches by the runtime's rule (up to ``batchMaxSize`` readings within
``batchMaxDelayMs`` of the first).

Every prediction whose true value arrives is an *outcome*; :class:`Outcomes` keeps their
times and errors (prediction minus truth), whichever model version made them.

Pure and stateful; no I/O here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from typing import Any

from edgemodel import api, contracts, features
from edgemodel_operator import settings as operator_settings
from edgemodel_operator.render import inference as render_inference
from edgemodel_operator.resource import EdgeModel
from edgemodel_runtime import config, drift, payloads, pipeline

__all__ = ["Batch", "Outcomes", "Replica", "Served", "batches", "encode", "feature_spec", "runtime_settings"]

TOPIC = "backtest"
Batch = Sequence[pipeline.Message]


@dataclasses.dataclass(frozen=True)
class Served:
    """A model version in memory, as :class:`edgemodel_runtime.pipeline.Model` needs it."""

    version: str
    model: Any
    calibration: contracts.DetectorCalibration | None = None
    """The detector calibration the trainer measured on the version's holdout
    (:func:`edgemodel_trainer.calibration.on_holdout`), recorded with the version."""


@dataclasses.dataclass
class Outcomes:
    """Times and errors of the predictions whose true value arrived, oldest first."""

    times: list[float] = dataclasses.field(default_factory=list)
    errors: list[float] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.errors)


def feature_spec(spec: api.EdgeModelSpec) -> features.FeatureSpec:
    s = spec.sensors
    return features.FeatureSpec(features=tuple(s.features), target=s.target, horizon=s.horizon, lags=s.lags)


def encode(readings: Sequence[payloads.Reading]) -> list[pipeline.Message]:
    """The readings as MQTT messages: a JSON payload each, arriving at its own timestamp."""
    out: list[pipeline.Message] = []
    for r in readings:
        body = json.dumps({"device": r.device, "ts": r.ts, **r.values}).encode()
        out.append((TOPIC, body, r.ts, r.ts))
    return out


def batches(messages: Sequence[pipeline.Message], *, max_size: int, max_delay: float) -> Iterator[Batch]:
    """Micro-batches by the runtime's rule: up to ``max_size`` messages within ``max_delay`` of the first.

    >>> ms = [("t", b"", float(t), float(t)) for t in (0, 0, 1, 5)]
    >>> [len(b) for b in batches(ms, max_size=2, max_delay=0.5)]
    [2, 1, 1]
    """
    start = 0
    n = len(messages)
    while start < n:
        first = messages[start][2]
        end = start + 1
        while end < n and end - start < max_size and messages[end][2] - first <= max_delay:
            end += 1
        yield messages[start:end]
        start = end


def runtime_settings(spec: api.EdgeModelSpec, *, name: str = "backtest") -> config.Settings:
    """What a runtime Pod of this EdgeModel runs with: the operator's rendered config, default options."""
    em = EdgeModel(
        name=name, namespace="default", uid="backtest", generation=1, spec=spec,
        status=api.EdgeModelStatus(), annotations={},
    )  # fmt: skip
    return config.Settings(config=render_inference.runtime_config(em, operator_settings.Settings()))


class Replica:
    """A runtime replica's pipeline and the model it serves."""

    def __init__(self, spec: api.EdgeModelSpec, *, detector: api.DetectorName | None = None) -> None:
        self.spec = spec
        self.settings = runtime_settings(spec)
        c, options = self.settings.config, self.settings.options
        fspec = feature_spec(spec)
        self.pipeline = pipeline.Pipeline(
            fspec,
            payloads.Schema(fields=fspec.fields, device_field="device", timestamp_field="ts"),
            threshold=c.drift_threshold,
            drift_window=c.drift_window,
            detector=c.drift_detector if detector is None else detector,
            training_window=c.training_window,
            fresh_max_seconds=options.fresh_window_max_seconds,
            max_devices=options.max_devices,
        )
        self.model: Served | None = None
        self.tunings: list[tuple[str, drift.Tuning]] = []
        """``(version, tuning)`` of the change detector, each time a version started serving."""
        self.outcomes = Outcomes()
        self.rejected = 0
        """Readings the pipeline refused (none, for a history :mod:`.history` checked)."""

    @property
    def max_size(self) -> int:
        return self.spec.runtime.batch_max_size

    @property
    def max_delay(self) -> float:
        return self.spec.runtime.batch_max_delay_ms / 1000.0

    def serve(self, model: Served | None) -> None:
        """Hot-swap the model; the drift state starts over, tuned for the new version.

        What the runtime does between batches when the alias moves
        (``edgemodel_runtime.app.App._follow_model`` and ``_tune_detector``).
        """
        self.model = model
        if self.pipeline.adopt_model(None if model is None else model.version) and model is not None:
            tuning = self.settings.detector_tuning(model.calibration)
            self.pipeline.drift.retune(tuning)
            self.tunings.append((model.version, tuning))

    def feed(self, batch: Batch, *, now: float) -> pipeline.Step:
        """Process one batch at virtual time ``now``; record its outcomes."""
        step = self.pipeline.process(batch, self.model, owns=None, now=now)
        self.rejected += len(step.rejected)
        times, errors = self.outcomes.times, self.outcomes.errors
        for slot, truth in step.plan.resolutions:
            if slot.prediction is not None and slot.version is not None:
                times.append(now)
                errors.append(slot.prediction - truth)
        return step

    def window(self) -> list[payloads.Reading]:
        """The training window the replica would hand over now."""
        return self.pipeline.window.snapshot()
