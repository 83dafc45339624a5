"""Three simpler ways to run the same model on the same history, to judge the loop against.

Each starts from the same version 1 and replays the same readings through its own
replica (the runtime's pipeline, :mod:`.stream`); only what it does about errors differs:

- ``static``: never retrains. The drift monitor still runs (the spec's detector), so its
  detections show what the runtime would have flagged.
- ``naive``: retrains whenever the rolling RMSE over a full window is above the
  threshold (the monitor with no change detector), and always swaps in the new model: no
  holdout gate, no cooldown, no hourly limit.
- ``periodic``: retrains every ``period`` seconds, through the trainer's holdout gate, as
  a scheduled retrain (``spec.retraining.schedule``) would.

Retrains train on the replica's training window (the last ``trainingWindow`` readings)
with :func:`edgemodel_backtest.training.train_on`, and take effect after the same
:class:`~edgemodel_backtest.loop.Timing` as the loop's Jobs.

Pure and stateful; no I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from edgemodel import api
from edgemodel_backtest import figures, loop, stream, training
from edgemodel_runtime import pipeline

__all__ = ["LABELS", "replay"]

LABELS = {
    "static": "Static model, never retrained",
    "naive": "Retrain whenever rolling RMSE > threshold (no gate, no cooldown)",
    "periodic": "Periodic retrain every {period}, through the holdout gate",
}


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def replay(
    kind: str,
    spec: api.EdgeModelSpec,
    messages: Sequence[pipeline.Message],
    *,
    first: stream.Served,
    primer: Sequence[pipeline.Message] = (),
    period: float = 86400.0,
    timing: loop.Timing = loop.DEFAULT_TIMING,
) -> figures.Figures:
    """Replay ``messages`` with baseline ``kind`` (``static``, ``naive`` or ``periodic``)."""
    if kind not in LABELS:
        raise ValueError(f"unknown baseline {kind!r}; expected one of {list(LABELS)}")
    if period <= 0:
        raise ValueError("period must be positive")
    replica = stream.Replica(spec, detector="none" if kind == "naive" else None)
    for batch in stream.batches(primer, max_size=replica.max_size, max_delay=replica.max_delay):
        replica.feed(batch, now=batch[-1][2])
    replica.serve(first)
    events: list[figures.Event] = []
    versions = 1
    pending: tuple[float, stream.Served | None] | None = None
    """(when the result takes effect, the model to serve then or None)."""
    retry_after = 0
    next_period = messages[0][2] + period if messages else math.inf
    delay = timing.job_seconds + timing.model_poll_seconds

    def retrain(now: float, *, gated: bool) -> None:
        nonlocal pending, versions, retry_after
        assert replica.model is not None
        verdict = training.train_on(replica.window(), spec=spec, champion=replica.model if gated else None)
        events.append(figures.Event(now, "retrain", kind))
        done = now + timing.job_seconds
        if verdict.model is None:
            events.append(figures.Event(done, "failure", verdict.reason))
            retry_after = len(replica.outcomes) + spec.drift.window
            pending = (done, None)
            return
        versions += 1
        version = str(versions)
        if gated and verdict.outcome != "Promoted":
            events.append(figures.Event(done, "rejection", verdict.reason, version))
            pending = (done, None)
            return
        events.append(figures.Event(done, "promotion", verdict.reason, version))
        pending = (now + delay, stream.Served(version, verdict.model, verdict.calibration))

    for batch in stream.batches(messages, max_size=replica.max_size, max_delay=replica.max_delay):
        now = batch[-1][2]
        if pending is not None and pending[0] <= now:
            if pending[1] is not None:
                replica.serve(pending[1])
            pending = None
        step = replica.feed(batch, now=now)
        if step.drift_started is not None:
            events.append(figures.Event(now, "detection", step.drift_started, replica.pipeline.serving))
        if pending is not None:
            continue
        if kind == "naive" and replica.pipeline.drift.detected and len(replica.outcomes) >= retry_after:
            retrain(now, gated=False)
        elif kind == "periodic" and now >= next_period:
            while next_period <= now:
                next_period += period
            retrain(now, gated=True)
    label = LABELS[kind].format(period=_duration(period))
    out = replica.outcomes
    return figures.build(
        name=kind,
        label=label,
        times=out.times,
        errors=out.errors,
        events=events,
        threshold=spec.drift.threshold,
        window=spec.drift.window,
        tunings=replica.tunings,
    )
