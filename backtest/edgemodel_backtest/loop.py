"""The self-healing loop on a virtual clock: runtime, operator and trainer in one process.

Time is the data's: each micro-batch happens at its readings' timestamps, and everything
else is scheduled on the same clock. One replica (:class:`~edgemodel_backtest.stream.Replica`)
serves; its drift state reaches the operator as the ``status.replicaDrift`` entry the
runtime would write (:class:`edgemodel_runtime.reporting.DriftReport`). Each operator
pass is :func:`edgemodel_operator.status.plan` itself, on an EdgeModel whose status is
the one the previous pass wrote and whose Jobs are the virtual ones below, so the
cooldown, the hourly limit, the backoff, the rejection breaker and the rollback rule are
the operator's own.

A pass runs when the replica's report changes in a way that matters (drift starts or
clears, a new version serves), when a Job finishes, when the plan asks to be requeued (a
cooldown ends), and otherwise every ``resyncSeconds`` while readings flow.

A Job the plan starts runs in memory:

- *bootstrap*: trains version 1 on the bootstrap readings, before the replay;
- *retrain*: waits, as the trainer does (``--window-since``, ``--window-wait``), for a
  training window the replica handed over since the trigger that holds enough readings
  of the changed plant, or for the wait to run out; then trains
  (:func:`edgemodel_backtest.training.train_on`) and reports after ``job_seconds``;
- *rollback*: points the serving version back after ``job_seconds``.

A promoted or restored version serves ``model_poll_seconds`` after its Job finished
(the runtime polls the alias). The replica is always up, so its report never goes stale.

Pure and stateful; no I/O here.
"""

from __future__ import annotations

import dataclasses
import datetime
import heapq
import itertools
import math
from collections.abc import Callable, Sequence

from edgemodel import api, contracts
from edgemodel_backtest import figures, stream, training
from edgemodel_operator import conditions, names, observe, status
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings
from edgemodel_runtime import payloads, pipeline, reporting
from edgemodel_trainer import data

__all__ = ["POD", "BootstrapError", "Loop", "Timing"]

POD = "backtest-inference-0"
HELD_BY_CLOCK = ("Cooldown", "Backoff", "RateLimited")
MAX_WINDOW_RUNS = 20
"""The trainer reads at most this many of the newest windows (``tracking.MAX_WINDOW_RUNS``)."""
NAMESPACE = "default"


class BootstrapError(ValueError):
    """Version 1 could not be trained from the bootstrap readings."""


@dataclasses.dataclass(frozen=True)
class Timing:
    """How long what happens in a cluster takes, in seconds of the virtual clock."""

    job_seconds: float = 60.0
    """A retraining or rollback Job, from start (or from its data being ready) to its result."""
    model_poll_seconds: float = contracts.RuntimeConfig.model_fields["model_poll_seconds"].default
    """The runtime reads the alias this often: a new version serves this long after its Job."""


DEFAULT_TIMING = Timing()


@dataclasses.dataclass
class _Handoff:
    time: float
    readings: list[payloads.Reading]
    change_ts: float | None
    after_change: int | None

    @property
    def fresh(self) -> bool:
        """The trainer's test: an unmarked window, or one with enough readings of the changed plant."""
        return self.change_ts is None or (self.after_change or 0) >= data.MIN_ROWS_AFTER_CHANGE


@dataclasses.dataclass
class _Job:
    name: str
    kind: str
    trigger: str
    created: float
    since: float | None = None
    deadline: float = math.inf
    rollback_to: str | None = None
    finished: float | None = None
    result: contracts.TrainingResult | None = None
    waiting: bool = True

    def info(self) -> observe.JobInfo:
        done = self.finished is not None
        return observe.JobInfo(
            name=self.name,
            kind=self.kind,
            trigger=self.trigger,
            created=_dt(self.created),
            active=not done,
            finished=None if not done else ("Failed" if self.result is None or self.result.outcome == "Failed"
                                             else "Complete"),
            finished_time=None if self.finished is None else _dt(self.finished),
            result=self.result,
            failure="",
        )  # fmt: skip


def _dt(t: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(t, datetime.UTC)


def _held_by_clock(st: api.EdgeModelStatus) -> bool:
    """Whether a wanted retrain waits for the clock (cooldown, backoff, hourly limit).

    The plan's other reason to be requeued, a replica report going stale, never comes
    here: the virtual replica is always up and its report always fresh.
    """
    retraining = next((c for c in st.conditions if c.type == conditions.RETRAINING), None)
    return retraining is not None and retraining.reason in HELD_BY_CLOCK


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


class Loop:
    """Replays one history through the loop; :meth:`run` returns its figures."""

    def __init__(
        self,
        spec: api.EdgeModelSpec,
        *,
        name: str = "backtest",
        settings: Settings | None = None,
        timing: Timing = DEFAULT_TIMING,
    ) -> None:
        self.spec = spec
        self.name = name
        self.settings = settings or Settings()
        self.timing = timing
        self.replica = stream.Replica(spec)
        self.status = api.EdgeModelStatus()
        self.model_name = spec.model_name(name, NAMESPACE)
        self.versions: dict[str, stream.Served] = {}
        self.jobs: list[_Job] = []
        self.handoffs: list[_Handoff] = []
        self.events: list[figures.Event] = []
        self._queue: list[tuple[float, int, Callable[[float], None]]] = []
        self._seq = itertools.count()
        self._next_version = 1
        self._seen_key: tuple[object, ...] | None = None
        self._next_resync = -math.inf
        self._requeue_at = math.inf

    # ------------------------------------------------------------------ the clock

    def _at(self, when: float, action: Callable[[float], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._seq), action))

    def _run_due(self, now: float) -> None:
        while self._queue and self._queue[0][0] <= now:
            when, _, action = heapq.heappop(self._queue)
            action(when)

    # ------------------------------------------------------------------ the replica's report

    def _report(self) -> reporting.DriftReport:
        monitor = self.replica.pipeline.drift
        return reporting.DriftReport(
            rmse=monitor.rmse,
            samples=monitor.samples,
            detected=monitor.detected,
            reason=monitor.reason,
            model_version=self.replica.pipeline.serving,
        )

    # ------------------------------------------------------------------ the operator

    def _pass(self, now: float) -> None:
        report = self._report()
        self._seen_key = report.key()
        self._next_resync = now + self.settings.resync_seconds
        em = EdgeModel(
            name=self.name,
            namespace=NAMESPACE,
            uid="backtest",
            generation=1,
            spec=self.spec,
            status=self.status.model_copy(update={"replica_drift": {POD: report.to_entry(_dt(now))}}),
            annotations={},
        )
        observed = status.Observed(
            inference=observe.Workload(True, True, 1, ""),
            broker=None,
            live_pods={POD},
            jobs=[job.info() for job in self.jobs],
        )
        plan = status.plan(em, observed, now=_dt(now), settings=self.settings)
        self.status = plan.status
        if (
            plan.requeue_after is not None
            and _held_by_clock(plan.status)
            and now + plan.requeue_after < self._requeue_at
        ):
            self._requeue_at = now + plan.requeue_after
            self._at(self._requeue_at, self._requeued)
        if plan.start_job is not None:
            self._start(plan.start_job, now)

    def _requeued(self, now: float) -> None:
        if now >= self._requeue_at:
            self._requeue_at = math.inf
            self._pass(now)

    # ------------------------------------------------------------------ Jobs

    def _start(self, request: status.JobRequest, now: float) -> None:
        job = _Job(
            name=names.job(self.name, request.kind, request.number),
            kind=request.kind,
            trigger=request.reason,
            created=now,
            since=request.window_since,
            rollback_to=request.rollback_to,
        )
        self.jobs.append(job)
        if request.kind == "rollback":
            self.events.append(figures.Event(now, "rollback", f"{job.name} back to {request.rollback_to}",
                                             request.rollback_to))  # fmt: skip
            self._at(now + self.timing.job_seconds, lambda t: self._finish_rollback(job, t))
            return
        if request.kind == "bootstrap":
            raise BootstrapError("no version serves: the loop was not bootstrapped")
        self.events.append(figures.Event(now, "retrain", f"{job.name}: {request.reason}"))
        job.deadline = now + self.settings.window_wait_seconds
        if not self._try_train(job, now):
            self._at(job.deadline, lambda t: self._give_up_waiting(job, t))

    def _windows_since(self, job: _Job) -> list[_Handoff]:
        since = -math.inf if job.since is None else job.since
        return [h for h in reversed(self.handoffs) if h.time >= since]

    def _try_train(self, job: _Job, now: float) -> bool:
        """Train now if the newest window since the trigger is fresh enough."""
        windows = self._windows_since(job)
        if not job.waiting or not windows or not windows[0].fresh:
            return False
        self._train(job, windows, now)
        return True

    def _give_up_waiting(self, job: _Job, now: float) -> None:
        if not job.waiting:
            return
        windows = self._windows_since(job)
        if windows:
            self._train(job, windows, now)
            return
        job.waiting = False
        result = contracts.TrainingResult(
            outcome="Failed",
            reason=f"NoTrainingData: no training window since {job.since}",
            model_name=self.model_name,
        )
        self._at(now + self.timing.job_seconds, lambda t: self._finish(job, result, None, t))

    def _train(self, job: _Job, windows: Sequence[_Handoff], now: float) -> None:
        job.waiting = False
        newest = windows[0]
        readings: list[payloads.Reading] = []
        for window in windows:  # newest first, until the training window is full (the trainer's rule)
            readings = [*window.readings, *readings]
            if len(readings) >= self.spec.retraining.training_window:
                break
        champion = self.versions.get(self._champion() or "")
        verdict = training.train_on(readings, spec=self.spec, champion=champion, change_ts=newest.change_ts)
        result, model = self._result(verdict, champion)
        self._at(now + self.timing.job_seconds, lambda t: self._finish(job, result, model, t))

    def _champion(self) -> str | None:
        return status.known_version(self.status.model.history)

    def _result(
        self, verdict: training.Verdict, champion: stream.Served | None
    ) -> tuple[contracts.TrainingResult, stream.Served | None]:
        served = None
        version = None
        if verdict.model is not None:
            version = str(self._next_version)
            self._next_version += 1
            served = stream.Served(version, verdict.model, verdict.calibration)
        promoted = verdict.outcome == "Promoted"
        result = contracts.TrainingResult(
            outcome=verdict.outcome,  # type: ignore[arg-type]
            reason=verdict.reason,
            model_name=self.model_name,
            version=version,
            champion_version=version if promoted else (None if champion is None else champion.version),
            holdout_rmse=_finite(verdict.holdout_rmse),
            champion_rmse=_finite(verdict.champion_rmse),
            samples=verdict.samples,
            algorithm=self.spec.model.algorithm,
        )
        return result, served

    def _finish(
        self, job: _Job, result: contracts.TrainingResult, model: stream.Served | None, now: float
    ) -> None:
        job.finished, job.result = now, result
        kind = {"Promoted": "promotion", "Rejected": "rejection"}.get(result.outcome, "failure")
        self.events.append(figures.Event(now, kind, f"{job.name}: {result.reason}", result.version))
        if model is not None:
            self.versions[model.version] = model
        if result.outcome == "Promoted" and model is not None:
            self._at(now + self.timing.model_poll_seconds, lambda t: self._serve(model.version))
        self._pass(now)

    def _finish_rollback(self, job: _Job, now: float) -> None:
        target = job.rollback_to
        bad = self.replica.pipeline.serving
        if target is None or target not in self.versions:
            result = contracts.TrainingResult(
                outcome="Failed", reason=f"RollbackFailed: no version {target}", model_name=self.model_name
            )
        else:
            result = contracts.TrainingResult(
                outcome="RolledBack",
                reason="RolledBack",
                model_name=self.model_name,
                version=bad,
                champion_version=target,
            )
            self._at(now + self.timing.model_poll_seconds, lambda t: self._serve(target))
        job.finished, job.result = now, result
        self._pass(now)

    def _serve(self, version: str) -> None:
        if self._champion() == version:  # still the champion when the runtime polls
            self.replica.serve(self.versions[version])

    # ------------------------------------------------------------------ the replay

    def bootstrap(
        self, readings: Sequence[payloads.Reading], *, now: float, verdict: training.Verdict | None = None
    ) -> stream.Served:
        """Version 1 from ``readings``, through the operator's bootstrap Job and the trainer's gate.

        ``verdict`` is the bootstrap Job's training when the caller already ran it
        (:func:`edgemodel_backtest.training.train_on` on the same readings, with no champion).
        """
        self._pass_for_bootstrap(now)
        if verdict is None:
            verdict = training.train_on(readings, spec=self.spec, champion=None)
        if verdict.outcome != "Promoted":
            raise BootstrapError(
                f"version 1 could not be trained from {len(readings)} readings: {verdict.reason}"
            )
        result, model = self._result(verdict, None)
        assert model is not None
        job = self.jobs[-1]
        job.finished, job.result = now, result
        self.versions[model.version] = model
        self._pass(now)
        assert self._champion() == model.version
        self.replica.serve(model)
        return model

    def _pass_for_bootstrap(self, now: float) -> None:
        report = self._report()
        em = EdgeModel(
            name=self.name, namespace=NAMESPACE, uid="backtest", generation=1, spec=self.spec,
            status=self.status.model_copy(update={"replica_drift": {POD: report.to_entry(_dt(now))}}),
            annotations={},
        )  # fmt: skip
        observed = status.Observed(observe.Workload(True, True, 1, ""), None, {POD}, [])
        plan = status.plan(em, observed, now=_dt(now), settings=self.settings)
        if plan.start_job is None or plan.start_job.kind != "bootstrap":
            raise BootstrapError(f"the operator started no bootstrap Job: {plan.start_job}")
        self.status = plan.status
        request = plan.start_job
        self.jobs.append(
            _Job(names.job(self.name, request.kind, request.number), request.kind, request.reason, now)
        )

    def prime(self, messages: Sequence[pipeline.Message]) -> None:
        """Readings that arrive before a model serves: they fill device histories and the window."""
        for batch in stream.batches(
            messages, max_size=self.replica.max_size, max_delay=self.replica.max_delay
        ):
            self.replica.feed(batch, now=batch[-1][2])

    def run(self, messages: Sequence[pipeline.Message]) -> None:
        """Replay ``messages`` (in time order) through the bootstrapped loop."""
        replica = self.replica
        for batch in stream.batches(messages, max_size=replica.max_size, max_delay=replica.max_delay):
            now = batch[-1][2]
            self._run_due(now)
            step = replica.feed(batch, now=now)
            if step.drift_started is not None:
                self.events.append(
                    figures.Event(now, "detection", step.drift_started, replica.pipeline.serving)
                )
            if step.window_reason is not None:
                fresh = step.fresh
                self.handoffs.append(
                    _Handoff(
                        time=now,
                        readings=replica.window(),
                        change_ts=None if fresh is None else fresh.change_ts,
                        after_change=None
                        if fresh is None
                        else min(fresh.count, len(replica.pipeline.window)),
                    )
                )
                del self.handoffs[:-MAX_WINDOW_RUNS]  # the trainer reads the newest windows only
                for job in self.jobs:
                    if job.kind == "retrain" and job.finished is None and job.waiting:
                        self._try_train(job, now)
            if self._report().key() != self._seen_key or now >= self._next_resync:
                self._pass(now)
        if messages:
            self._run_due(messages[-1][2])

    def figures(
        self, *, label: str = "EdgeModel loop (drift detection, gated retraining)"
    ) -> figures.Figures:
        out = self.replica.outcomes
        return figures.build(
            name="loop",
            label=label,
            times=out.times,
            errors=out.errors,
            events=self.events,
            threshold=self.spec.drift.threshold,
            window=self.spec.drift.window,
            tunings=self.replica.tunings,
        )
