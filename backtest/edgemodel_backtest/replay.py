"""One backtest: version 1 from the bootstrap readings, then the loop and the baselines on the rest.

Without ``bootstrap`` readings (the spec's ``bootstrapData``), the first ``warmup``
share of the history trains version 1 and primes the replicas (device histories, the
training window), as readings that arrived before any model served; only the rest is
scored. With them, the whole history is scored.

The systems are independent once version 1 is trained: ``mapper`` may replay them in
other processes (``edgemodel backtest`` uses a pool of two on a long history).

Pure: the caller reads the files and passes readings in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from edgemodel import api
from edgemodel_backtest import baselines, figures, history, loop, stream, training
from edgemodel_operator.settings import Settings
from edgemodel_runtime import payloads, pipeline

__all__ = ["DEFAULT_WARMUP", "Options", "Result", "Task", "replay_one", "run"]

DEFAULT_WARMUP = 0.2
SYSTEMS = ("loop", "static", "naive", "periodic")


@dataclasses.dataclass(frozen=True)
class Options:
    warmup: float = DEFAULT_WARMUP
    """Share of the history that trains version 1 when no bootstrap readings are given."""
    period: float = 86400.0
    """Seconds between the periodic baseline's retrains."""
    timing: loop.Timing = loop.DEFAULT_TIMING
    settings: Settings = dataclasses.field(default_factory=Settings)
    """The operator's settings (resync, window wait, rollback tolerance, ...)."""
    baselines: Sequence[str] = ("static", "naive", "periodic")


@dataclasses.dataclass(frozen=True)
class Result:
    name: str
    spec: api.EdgeModelSpec
    history: history.History
    bootstrap_readings: int
    bootstrap_source: str
    replayed: int
    start: float
    end: float
    version1_holdout_rmse: float | None
    systems: tuple[figures.Figures, ...]

    def system(self, name: str) -> figures.Figures:
        return next(s for s in self.systems if s.name == name)

    def to_json(self) -> dict[str, Any]:
        h = self.history
        return {
            "edgemodel": self.name,
            "threshold": self.spec.drift.threshold,
            "window": self.spec.drift.window,
            "detector": self.spec.drift.detector,
            "algorithm": self.spec.model.algorithm,
            "history": {
                "rows": h.rows,
                "readings": len(h.readings),
                "skipped": dict(h.bad),
                "skippedExamples": list(h.examples),
                "unsorted": h.unsorted,
                "gaps": h.gaps,
                "devices": list(h.devices),
            },
            "bootstrap": {
                "source": self.bootstrap_source,
                "readings": self.bootstrap_readings,
                "holdoutRmse": self.version1_holdout_rmse,
            },
            "replayed": {"readings": self.replayed, "start": self.start, "end": self.end},
            "systems": [s.to_json() for s in self.systems],
        }


@dataclasses.dataclass(frozen=True)
class Task:
    """One system to replay: what a worker process needs (all of it pickles)."""

    kind: str
    """``loop`` or a baseline's name."""
    spec: api.EdgeModelSpec
    name: str
    bootstrap: Sequence[payloads.Reading]
    first: training.Verdict
    """Version 1: the bootstrap Job's training on ``bootstrap``, done once for every system."""
    primer: Sequence[pipeline.Message]
    messages: Sequence[pipeline.Message]
    options: Options


def replay_one(task: Task) -> tuple[figures.Figures, float | None]:
    """Replay one system from version 1; the loop also returns version 1's holdout RMSE.

    Every system starts from the same version 1 (``task.first``), so the systems can be
    replayed in separate processes.
    """
    start = task.messages[0][2]
    if task.kind == "loop":
        the_loop = loop.Loop(
            task.spec, name=task.name, settings=task.options.settings, timing=task.options.timing
        )
        the_loop.prime(task.primer)
        first = the_loop.bootstrap(task.bootstrap, now=start, verdict=task.first)
        holdout = next(
            (e.holdout_rmse for e in the_loop.status.model.history if e.version == first.version), None
        )
        the_loop.run(task.messages)
        return the_loop.figures(), holdout
    first = stream.Served("1", task.first.model, task.first.calibration)
    o = task.options
    out = baselines.replay(
        task.kind, task.spec, task.messages, first=first, primer=task.primer, period=o.period, timing=o.timing
    )
    return out, None


Mapper = Callable[[Callable[[Task], tuple[figures.Figures, float | None]], Iterable[Task]], Iterable[Any]]
"""``map`` (one system after the other, the default) or a process pool's ``map``."""


def run(
    spec: api.EdgeModelSpec,
    hist: history.History,
    *,
    name: str = "backtest",
    bootstrap: Sequence[payloads.Reading] | None = None,
    bootstrap_source: str = "",
    options: Options = Options(),
    mapper: Mapper = map,
) -> Result:
    """Replay ``hist`` through the loop and the chosen baselines, each system with ``mapper``."""
    if not 0.0 < options.warmup < 1.0:
        raise ValueError("warmup must be between 0 and 1")
    readings = hist.readings
    if bootstrap is None:
        cut = int(len(readings) * options.warmup)
        # Readings that share the cut's timestamp stay on one side.
        while 0 < cut < len(readings) and readings[cut - 1].ts == readings[cut].ts:
            cut += 1
        bootstrap, scored = readings[:cut], readings[cut:]
        primer = stream.encode(bootstrap)
        bootstrap_source = f"the first {options.warmup:.0%} of the history"
    else:
        scored, primer = readings, []
    if not scored:
        raise history.HistoryError("nothing is left to replay after the bootstrap readings")
    messages = stream.encode(scored)
    first = training.train_on(bootstrap, spec=spec, champion=None)
    if first.outcome != "Promoted":
        raise loop.BootstrapError(
            f"version 1 could not be trained from {len(bootstrap)} readings: {first.reason}"
        )
    tasks = [
        Task(kind, spec, name, bootstrap, first, primer, messages, options)
        for kind in ("loop", *options.baselines)
    ]
    done = list(mapper(replay_one, tasks))
    return Result(
        name=name,
        spec=spec,
        history=hist,
        bootstrap_readings=len(bootstrap),
        bootstrap_source=bootstrap_source,
        replayed=len(scored),
        start=messages[0][2],
        end=messages[-1][2],
        version1_holdout_rmse=done[0][1],
        systems=tuple(f for f, _ in done),
    )
