"""Plan one reconcile's outcome: the new status, the Job to start (if any) and the Events.

:func:`plan` is the operator's brain, and a pure function: given the EdgeModel, what the
API server shows (Deployments, Pods, Jobs and their results) and the time, it returns
what status to write and what to do. Nothing here depends on which event woke the
operator, so running it twice on the same facts gives the same answer.

Pure functions; no I/O here.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pydantic

from edgemodel import api
from edgemodel_operator import conditions, names, observe, policy, rollback, summary, trust
from edgemodel_operator.render import jobs
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings

__all__ = [
    "STATUS_UNREADABLE",
    "Event",
    "JobRequest",
    "Observed",
    "Plan",
    "plan",
    "refused",
    "report_fingerprint",
    "requeue_after",
]

STATUS_UNREADABLE = "StatusUnreadable"
"""Reason of the Degraded condition, and of the Event, when the stored status does not parse."""


@dataclasses.dataclass(frozen=True)
class Observed:
    """What the API server shows about one EdgeModel's children."""

    inference: observe.Workload
    broker: observe.Workload | None
    """None for an external broker."""
    live_pods: Collection[str] | None
    """Names of the inference Pods that exist; None when they could not be listed."""
    jobs: Sequence[observe.JobInfo]


@dataclasses.dataclass(frozen=True)
class JobRequest:
    kind: jobs.JobKind
    number: int
    reason: str
    rollback_to: str | None = None
    window_since: float | None = None
    """For a drift retrain: train only on windows uploaded from (about) the trigger on."""

    @property
    def name_suffix(self) -> str:
        return f"{self.kind}-{self.number}"


@dataclasses.dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Plan:
    status: api.EdgeModelStatus
    start_job: JobRequest | None
    events: tuple[Event, ...]
    gone_replicas: tuple[str, ...]
    requeue_after: float | None = None
    """Seconds until the facts change by the clock alone (a cooldown ends, a report goes stale)."""
    ignored_reports: tuple[tuple[str, str], ...] = ()
    """``(pod, reason)`` of each replica report ignored (and removed: ``gone_replicas``)."""
    hold: bool = False
    """Act on nothing (the status is unreadable, or the spec is refused): write only
    ``status.conditions``, apply and start nothing."""


def known_version(history: Sequence[api.ModelHistoryEntry]) -> str | None:
    """The champion according to the trainer's results, newest first."""
    for entry in reversed(history):
        if entry.outcome == "Promoted":
            return entry.version
        if entry.outcome == "RolledBack":
            return entry.previous_version
    return None


def _fold_results(
    *,
    em: EdgeModel,
    r: api.RetrainingStatus,
    model: api.ModelStatus,
    finished: Sequence[observe.JobInfo],
    settings: Settings,
    events: list[Event],
) -> tuple[api.RetrainingStatus, api.ModelStatus]:
    history = list(model.history)
    last_trained = model.last_trained_time
    for info in finished:
        assert info.finished_time is not None
        result = info.result
        outcome = result.outcome if result is not None else "Failed"
        reason = result.reason if result is not None else (info.failure or "the trainer reported no result")
        update: dict[str, object] = {
            "last_completed_job": info.name,
            "last_completed_time": info.finished_time,
            "last_outcome": outcome,
            "last_reason": reason[:1000],
        }
        if outcome == "Failed" or result is None or result.version is None:
            update["consecutive_failures"] = r.consecutive_failures + 1
            events.append(Event("Warning", "RetrainingFailed", f"Job {info.name} failed: {reason}"))
        else:
            # The trainer's championVersion is where the alias points afterwards: for a
            # rollback, the version restored; for a promotion, the champion it replaced is
            # the one the history knew before.
            previous = result.champion_version if outcome == "RolledBack" else known_version(history)
            entry = api.ModelHistoryEntry(
                version=result.version,
                outcome=result.outcome,
                reason=result.reason[:1000],
                holdout_rmse=result.holdout_rmse,
                champion_rmse=result.champion_rmse,
                previous_version=previous,
                job=info.name,
                time=info.finished_time,
            )
            history.append(entry)
            if outcome == "Promoted":
                last_trained = info.finished_time
                update["consecutive_failures"] = 0
                update["consecutive_rejections"] = 0
                events.append(
                    Event(
                        "Normal",
                        "ModelPromoted",
                        f"Promoted {result.model_name} version {result.version} from Job {info.name}: "
                        f"{result.reason}",
                    )
                )
            elif outcome == "Rejected":
                last_trained = info.finished_time
                update["consecutive_failures"] = 0
                update["consecutive_rejections"] = r.consecutive_rejections + 1
                events.append(
                    Event(
                        "Normal",
                        "ChallengerRejected",
                        f"Version {result.version} from Job {info.name} was not promoted: {result.reason}",
                    )
                )
            else:  # RolledBack
                events.append(
                    Event(
                        "Warning",
                        "ModelRolledBack",
                        f"Rolled {result.model_name} back to version {result.champion_version} "
                        f"from {result.version}: {result.reason}",
                    )
                )
        r = r.model_copy(update=update)
    model = model.model_copy(
        update={"history": history[-settings.history_limit :], "last_trained_time": last_trained}
    )
    return r, model


def _rollback_due(
    history: Sequence[api.ModelHistoryEntry],
    drift: summary.DriftSummary,
    settings: Settings,
) -> tuple[str, str, str] | None:
    """``(bad_version, restore_version, message)`` when the newest promotion is clearly worse live."""
    if not history or history[-1].outcome != "Promoted":
        return None
    latest = history[-1]
    if latest.previous_version is None or latest.champion_rmse is None:
        return None
    serving_new = [e for e in drift.live.values() if e.model_version == latest.version and e.rmse is not None]
    if not serving_new:
        return None
    worst = max(serving_new, key=lambda e: e.rmse or 0.0)
    verdict = rollback.decide(
        new_live_rmse=worst.rmse,
        previous_rmse=latest.champion_rmse,
        samples=worst.samples,
        policy=rollback.RollbackPolicy(
            tolerance=settings.rollback_tolerance, min_samples=settings.rollback_min_samples
        ),
    )
    if not verdict.roll_back:
        return None
    return latest.version, latest.previous_version, verdict.message


def _hold(em: EdgeModel, reason: str, message: str, *, now: datetime.datetime) -> Plan:
    """A plan that acts on nothing and says why, in ``Degraded=True`` and one Warning Event."""
    message = message[:32768]
    before = conditions.find(em.status.conditions, conditions.DEGRADED)
    new_conditions = conditions.merge(
        em.status.conditions,
        [(conditions.DEGRADED, "True", reason, message)],
        generation=em.generation,
        now=now,
    )
    events: tuple[Event, ...] = ()
    if before is None or (before.status, before.reason, before.message) != ("True", reason, message):
        events = (Event("Warning", reason, message),)
    return Plan(
        status=em.status.model_copy(update={"conditions": new_conditions}),
        start_job=None,
        events=events,
        gone_replicas=(),
        hold=True,
    )


def refused(em: EdgeModel, refusal: trust.Refusal, *, now: datetime.datetime) -> Plan:
    """The plan for an EdgeModel the operator will not act on (an image or Secret it may not use).

    Nothing is applied, started or removed; ``Degraded`` says why, and what to change.
    """
    return _hold(em, refusal.reason, refusal.message, now=now)


def plan(em: EdgeModel, observed: Observed, *, now: datetime.datetime, settings: Settings) -> Plan:
    if em.status_error is not None:
        # Nothing starts, nothing is folded and no report is removed: a guess from an empty
        # status would forget the cooldown, the hourly limit, the rejection breaker and the
        # rollback target. A person repairs the status (or clears it, on purpose).
        return _hold(
            em,
            STATUS_UNREADABLE,
            f"the stored status cannot be read ({em.status_error}); retraining and rollback are held "
            "until it is repaired",
            now=now,
        )
    old = em.status
    events: list[Event] = []
    r = old.retraining

    # A spec change, or a new value of the retry annotation, clears the backoff and Degraded.
    retry = em.annotations.get(names.ANNOTATION_RETRY)
    if old.observed_generation is not None and old.observed_generation != em.generation:
        r = r.model_copy(update={"consecutive_rejections": 0, "consecutive_failures": 0})
    if retry is not None and retry != r.retry_seen:
        r = r.model_copy(
            update={
                "consecutive_rejections": 0,
                "consecutive_failures": 0,
                "retry_seen": retry,
                "last_triggered_time": None,
            }
        )
        events.append(Event("Normal", "RetryRequested", f"Retraining re-enabled by {names.ANNOTATION_RETRY}"))

    # Fold the results of Jobs that finished since the last one folded, oldest first.
    finished = sorted(
        (
            j
            for j in observed.jobs
            if j.finished is not None
            and j.finished_time is not None
            and (r.last_completed_time is None or j.finished_time > r.last_completed_time)
            and j.name != r.last_completed_job
        ),
        key=lambda j: (j.finished_time, j.name),
    )
    r, model = _fold_results(em=em, r=r, model=old.model, finished=finished, settings=settings, events=events)

    champion = known_version(model.history)
    drift = summary.summarise(
        old.replica_drift,
        live_pods=observed.live_pods,
        threshold=em.spec.drift.threshold,
        window=em.spec.drift.window,
        now=now,
        stale_after=datetime.timedelta(seconds=settings.stale_report_seconds),
        expected_version=champion,
        max_skew=datetime.timedelta(seconds=settings.report_skew_seconds),
    )
    ignored = tuple(sorted([*drift.ignored, *((p, summary.MALFORMED) for p in em.malformed_reports)]))
    removed = tuple(sorted({*drift.gone, *em.malformed_reports}))
    serving = drift.serving_version or champion
    active = max(
        (j for j in observed.jobs if j.active), key=lambda j: (j.created or now, j.name), default=None
    )

    # What, if anything, to start now.
    start: JobRequest | None = None
    verdict: policy.Verdict | None = None
    due = _rollback_due(model.history, drift, settings) if active is None else None
    if due is not None:
        bad, restore, message = due
        start = JobRequest("rollback", int(bad) if bad.isdigit() else r.count + 1, "RollbackDue", restore)
        events.append(Event("Warning", "RollbackStarted", f"Version {bad} does worse live: {message}"))
    else:
        bootstrap = serving is None
        # A bootstrap is not a drift trigger: it neither waits for nor starts the drift
        # cooldown; only its own failures back it off, counted from when the last one ended.
        gate = (
            r.model_copy(
                update={
                    "last_triggered_time": r.last_completed_time if r.consecutive_failures else None,
                    "recent_triggers": [],
                }
            )
            if bootstrap
            else r
        )
        verdict = policy.should_retrain(
            em.spec,
            gate,
            wanted=bootstrap or drift.status.detected,
            wanted_reason="Bootstrap" if bootstrap else "DriftDetected",
            active_job=None if active is None else active.name,
            now=now,
            max_backoff=datetime.timedelta(seconds=settings.max_backoff_seconds),
        )
        if verdict.start:
            number = r.count + 1
            since = None if bootstrap else _window_since(old, now) - settings.window_since_slack_seconds
            start = JobRequest("bootstrap" if bootstrap else "retrain", number, verdict.reason, None, since)
            events.append(
                Event(
                    "Normal",
                    "RetrainingStarted",
                    f"Started Job {names.job(em.name, start.kind, number)}: "
                    + ("no model version serves yet" if bootstrap else _drift_message(drift.status)),
                )
            )
    if start is not None:
        job_name = names.job(em.name, start.kind, start.number)
        update: dict[str, object] = {"last_job": job_name}
        if start.kind == "bootstrap":
            update |= {"count": r.count + 1}
        elif start.kind != "rollback":
            update |= {
                "count": r.count + 1,
                "last_triggered_time": now,
                "recent_triggers": [*policy.recent_triggers(r, now), now],
            }
        r = r.model_copy(update=update)
        active_name: str | None = job_name
        active_trigger: str | None = start.reason
    else:
        r = r.model_copy(update={"recent_triggers": policy.recent_triggers(r, now)})
        active_name = None if active is None else active.name
        active_trigger = None if active is None else active.trigger

    # Conditions.
    inference_ok = observed.inference.available
    broker_ok = observed.broker is None or observed.broker.available
    updates: list[tuple[str, api.ConditionStatus, str, str]] = []
    updates.append(
        (
            conditions.INFERENCE_AVAILABLE,
            "True",
            "MinimumReplicasAvailable",
            f"{observed.inference.ready_replicas} inference replicas ready",
        )
        if inference_ok
        else (
            conditions.INFERENCE_AVAILABLE,
            "False",
            "MinimumReplicasUnavailable",
            observed.inference.message or "no inference replica is ready",
        )
    )
    if observed.broker is None:
        updates.append((conditions.BROKER_AVAILABLE, "True", "ExternalBroker", "the broker is external"))
    elif observed.broker.available:
        updates.append((conditions.BROKER_AVAILABLE, "True", "MinimumReplicasAvailable", "broker is up"))
    else:
        updates.append(
            (
                conditions.BROKER_AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                observed.broker.message or "the managed broker is not ready",
            )
        )
    if serving is None:
        ready = ("False", "NoModel", f"no version of {em.model_name} is serving yet")
    elif not broker_ok:
        ready = ("False", "BrokerUnavailable", "the managed broker is not ready")
    elif not inference_ok:
        ready = ("False", "InferenceUnavailable", "no inference replica is ready")
    else:
        note = f"; model errors: {'; '.join(drift.model_errors)}" if drift.model_errors else ""
        ready = (
            "True",
            "Serving",
            f"{em.model_name} version {serving} serving on "
            f"{observed.inference.ready_replicas} replicas{note}",
        )
    updates.append((conditions.READY, ready[0], ready[1], ready[2]))  # type: ignore[arg-type]

    d = drift.status
    if d.detected:
        worst = drift.live.get(d.replica or "")
        rule = worst.reason if worst is not None and worst.reason else "Threshold"
        updates.append(
            (
                conditions.DRIFTED,
                "True",
                f"{rule}Exceeded" if rule == "Threshold" else "ChangeDetected",
                _drift_message(d),
            )
        )
    elif drift.eligible == 0:
        why = "NoReports" if not drift.live else "InsufficientSamples"
        updates.append((conditions.DRIFTED, "Unknown", why, "no replica has a full drift window yet"))
    else:
        updates.append((conditions.DRIFTED, "False", "WithinThreshold", _drift_message(d)))

    if active_name is not None:
        updates.append(
            (
                conditions.RETRAINING,
                "True",
                active_trigger or "DriftDetected",
                f"Job {active_name} is running",
            )
        )
    elif verdict is not None and drift.status.detected and not verdict.start:
        updates.append((conditions.RETRAINING, "False", verdict.reason, verdict.message))
    else:
        reason = r.last_outcome or "Idle"
        message = (
            f"last Job {r.last_completed_job}: {r.last_reason}" if r.last_completed_job else "no Job has run"
        )
        updates.append((conditions.RETRAINING, "False", reason, message))

    if policy.is_degraded(em.spec.retraining, r):
        updates.append(
            (
                conditions.DEGRADED,
                "True",
                "TooManyRejections",
                f"{r.consecutive_rejections} challengers in a row were rejected; retraining stopped until "
                f"the spec changes or the {names.ANNOTATION_RETRY} annotation is set",
            )
        )
    else:
        updates.append((conditions.DEGRADED, "False", "AsExpected", "retraining is enabled"))

    new_conditions = conditions.merge(old.conditions, updates, generation=em.generation, now=now)
    events.extend(_flips(old.conditions, new_conditions))

    status = api.EdgeModelStatus(
        observed_generation=em.generation,
        conditions=new_conditions,
        drift=drift.status,
        model=model.model_copy(update={"name": em.model_name, "version": serving}),
        replicas=observed.inference.ready_replicas,
        retraining=r,
        replica_drift={k: v for k, v in old.replica_drift.items() if k not in removed},
    )
    requeue = requeue_after(drift, verdict, now=now, settings=settings)
    return Plan(
        status=status,
        start_job=start,
        events=tuple(events),
        gone_replicas=removed,
        requeue_after=requeue,
        ignored_reports=ignored,
    )


def requeue_after(
    drift: summary.DriftSummary,
    verdict: policy.Verdict | None,
    *,
    now: datetime.datetime,
    settings: Settings,
) -> float | None:
    """Seconds until the plan may change with no event at all; None when only events change it.

    Two things change by the clock alone: a live replica report goes stale
    (``stale_report_seconds`` after its ``reportTime``), and a retrain held back by the
    cooldown or the hourly limit becomes allowed (``Verdict.not_before``). One second is
    added because ``now`` is truncated to whole seconds and a report is stale only *after*
    its moment.
    """
    stale_after = datetime.timedelta(seconds=settings.stale_report_seconds)
    moments = [e.report_time + stale_after for e in drift.live.values()]
    if verdict is not None and verdict.not_before is not None:
        moments.append(verdict.not_before)
    if not moments:
        return None
    return max(1.0, (min(moments) - now).total_seconds() + 1.0)


def _window_since(old: api.EdgeModelStatus, now: datetime.datetime) -> float:
    """From when a drift retrain reads training windows: since this drift began.

    The windows the runtime logged during this drift (at the detection, once the changed
    plant filled it, and again while the drift lasts) are all about the plant as it is
    now; older ones are not. Not since the retrain's own start: after a rejected
    challenger, on a slow stream, no new window may come within the trainer's wait.
    """
    drifted = conditions.find(old.conditions, "Drifted")
    if drifted is not None and drifted.status == "True" and drifted.last_transition_time <= now:
        return drifted.last_transition_time.timestamp()
    return now.timestamp()


def _drift_message(d: api.DriftStatus) -> str:
    rmse = "n/a" if d.rmse is None else f"{d.rmse:.4g}"
    where = d.replica or "no replica"
    return f"rolling RMSE {rmse} (threshold {d.threshold}) over {d.samples} outcomes on {where}"


_FLIP_EVENTS = {
    (conditions.DRIFTED, "True"): ("Warning", "DriftDetected"),
    (conditions.DRIFTED, "False"): ("Normal", "DriftCleared"),
    (conditions.DEGRADED, "True"): ("Warning", "Degraded"),
    (conditions.READY, "True"): ("Normal", "Ready"),
    (conditions.READY, "False"): ("Warning", "NotReady"),
}


def _flips(old: Sequence[api.Condition], new: Sequence[api.Condition]) -> list[Event]:
    out = []
    for cond in new:
        before = conditions.find(old, cond.type)
        if before is not None and before.status == cond.status:
            continue
        if before is None and cond.type == conditions.READY and cond.status == "False":
            continue
        if (
            cond.type == conditions.DRIFTED
            and cond.status == "False"
            and (before is None or before.status != "True")
        ):
            continue  # cleared only what was detected: the first reports (from Unknown) are no news
        kind = _FLIP_EVENTS.get((cond.type, cond.status))
        if kind is not None:
            out.append(Event(kind[0], kind[1], cond.message or cond.reason))
    return out


def report_fingerprint(
    obj: Mapping[str, Any], settings: Settings, *, now: datetime.datetime
) -> tuple[Any, ...]:
    """What a pass would act on in the replicas' reports of an EdgeModel as the watch shows it.

    Per report: whether it parses, its drift state (``detected``, reason, model version
    and error), whether it has samples and a full window, whether its report time is too
    far ahead, and whether it would roll the newest promotion back. A report that changes
    none of these (a new RMSE, sample count or report time: the runtimes' cadence) changes
    no plan but the displayed RMSE, so it needs no pass.

    >>> s = Settings(identity="t")
    >>> now = datetime.datetime(2026, 11, 30, tzinfo=datetime.UTC)
    >>> def em(rmse):
    ...     entry = {"rmse": rmse, "samples": 120, "detected": False, "reportTime": "2026-11-30T00:00:00Z",
    ...              "modelVersion": "2"}
    ...     history = [{"version": "2", "outcome": "Promoted", "championRmse": 1.0, "previousVersion": "1",
    ...                 "time": "2026-11-29T00:00:00Z"}]
    ...     return {"spec": {"drift": {"window": 100}},
    ...             "status": {"model": {"history": history}, "replicaDrift": {"p": entry}}}
    >>> report_fingerprint(em(0.5), s, now=now) == report_fingerprint(em(0.6), s, now=now)
    True
    >>> report_fingerprint(em(0.5), s, now=now) == report_fingerprint(em(2.0), s, now=now)  # rollback due
    False
    """
    status = obj.get("status") or {}
    reports = status.get("replicaDrift") if isinstance(status, Mapping) else None
    if not isinstance(reports, Mapping):
        return ("unreadable",)
    window = ((obj.get("spec") or {}).get("drift") or {}).get("window") or 0
    latest: api.ModelHistoryEntry | None = None
    try:
        history = api.ModelStatus.model_validate(status.get("model") or {}).history
        latest = history[-1] if history else None
    except pydantic.ValidationError:
        latest = None
    policy_ = rollback.RollbackPolicy(
        tolerance=settings.rollback_tolerance, min_samples=settings.rollback_min_samples
    )
    skew = datetime.timedelta(seconds=settings.report_skew_seconds)
    out: list[tuple[Any, ...]] = []
    for pod, raw in reports.items():
        try:
            entry = api.ReplicaDriftEntry.model_validate(raw)
        except pydantic.ValidationError:
            out.append((str(pod), False))
            continue
        if entry.report_time.tzinfo is None:
            out.append((str(pod), False))
            continue
        worse = (
            latest is not None
            and latest.outcome == "Promoted"
            and latest.previous_version is not None
            and latest.champion_rmse is not None
            and entry.model_version == latest.version
            and entry.rmse is not None
            and rollback.decide(
                new_live_rmse=entry.rmse,
                previous_rmse=latest.champion_rmse,
                samples=entry.samples,
                policy=policy_,
            ).roll_back
        )
        out.append(
            (
                str(pod),
                True,
                entry.detected,
                entry.reason,
                entry.model_version,
                entry.model_error,
                entry.samples >= 1,
                entry.samples >= window,
                entry.report_time - now > skew,
                worse,
            )
        )
    return tuple(sorted(out))
