"""When to start a retraining Job: cooldown, rate limit, backoff and the Degraded stop.

Pure functions of the spec, the recorded retraining status and the current time; no I/O.
"""

from __future__ import annotations

import dataclasses
import datetime

from edgemodel import api

__all__ = ["Verdict", "backoff", "recent_triggers", "should_retrain"]

HOUR = datetime.timedelta(hours=1)
MIN_BACKOFF_BASE = datetime.timedelta(seconds=10)


@dataclasses.dataclass(frozen=True)
class Verdict:
    start: bool
    reason: str
    """CamelCase: why a Job starts now, or why not."""
    message: str
    not_before: datetime.datetime | None = None
    """When the next attempt may start, if waiting."""


def recent_triggers(status: api.RetrainingStatus, now: datetime.datetime) -> list[datetime.datetime]:
    """Trigger times within the last hour, oldest first."""
    return sorted(t for t in status.recent_triggers if now - t < HOUR)


def backoff(
    spec: api.RetrainingSpec, status: api.RetrainingStatus, *, max_backoff: datetime.timedelta
) -> datetime.timedelta:
    """The wait after the last trigger: the cooldown, doubled per failed or rejected attempt."""
    cooldown = datetime.timedelta(seconds=spec.cooldown_seconds)
    misses = status.consecutive_failures + status.consecutive_rejections
    if misses == 0:
        return cooldown
    base = max(cooldown, MIN_BACKOFF_BASE)
    wait: datetime.timedelta = min(base * (2 ** min(misses, 20)), max(max_backoff, cooldown))
    return wait


def is_degraded(spec: api.RetrainingSpec, status: api.RetrainingStatus) -> bool:
    return status.consecutive_rejections >= spec.max_consecutive_rejections


def should_retrain(
    spec: api.EdgeModelSpec,
    status: api.RetrainingStatus,
    *,
    wanted: bool,
    wanted_reason: str,
    active_job: str | None,
    now: datetime.datetime,
    max_backoff: datetime.timedelta,
) -> Verdict:
    """Decide whether to start a Job now. ``wanted`` says whether drift (or bootstrap) asks for one."""
    if active_job is not None:
        return Verdict(False, "JobActive", f"Job {active_job} is still running")
    if not wanted:
        return Verdict(False, "NotNeeded", "no drift detected")
    if spec.suspend:
        return Verdict(False, "Suspended", "spec.suspend is true")
    if is_degraded(spec.retraining, status):
        return Verdict(
            False,
            "TooManyRejections",
            f"{status.consecutive_rejections} challengers in a row were rejected; change the spec "
            "or set the edgeml.dev/retry annotation to try again",
        )
    if status.last_triggered_time is not None:
        wait = backoff(spec.retraining, status, max_backoff=max_backoff)
        not_before = status.last_triggered_time + wait
        if now < not_before:
            reason = "Cooldown" if wait.total_seconds() <= spec.retraining.cooldown_seconds else "Backoff"
            return Verdict(False, reason, f"next retrain not before {not_before.isoformat()}", not_before)
    recent = recent_triggers(status, now)
    if len(recent) >= spec.retraining.max_per_hour:
        not_before = recent[0] + HOUR
        return Verdict(
            False,
            "RateLimited",
            f"{len(recent)} retrains in the last hour (maxPerHour {spec.retraining.max_per_hour})",
            not_before,
        )
    return Verdict(True, wanted_reason, "starting a retraining Job")
