"""Fold the replicas' drift reports into one summary for ``status.drift``.

The rule for several replicas, as documented in docs/operator.md:

- Only *live* entries count: the Pod still exists and its report is younger than
  ``stale_report_seconds``. Entries of Pods that are gone are removed from status.
- An entry is *eligible* when its window is full (``samples >= drift.window``), or when
  its change detector fired (``detected`` with reason ``ChangeDetector``), which is how
  drift is caught before the window fills.
- The summary is the worst eligible replica: the highest RMSE, and ``detected`` when
  any eligible replica detects drift. With no eligible replica, the summary shows the
  highest RMSE seen but is never ``detected``.

Pure functions; no I/O here.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
from collections.abc import Collection, Mapping

from edgemodel import api

__all__ = ["DriftSummary", "summarise"]


@dataclasses.dataclass(frozen=True)
class DriftSummary:
    status: api.DriftStatus
    gone: tuple[str, ...]
    """Replica entries whose Pod no longer exists; the operator removes them."""
    live: Mapping[str, api.ReplicaDriftEntry]
    serving_version: str | None
    """The model version most live replicas report serving (ties: the higher version)."""
    model_errors: tuple[str, ...]
    eligible: int


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (-1, version)


def summarise(
    entries: Mapping[str, api.ReplicaDriftEntry],
    *,
    live_pods: Collection[str] | None,
    threshold: float,
    window: int,
    now: datetime.datetime,
    stale_after: datetime.timedelta,
    expected_version: str | None = None,
) -> DriftSummary:
    """Summarise ``entries``; ``live_pods`` is None when the Pod list could not be read.

    With ``expected_version``, replicas still serving another version (an old champion
    about to be swapped out) are shown but cannot make the summary ``detected``.
    """
    gone = tuple(sorted(p for p in entries if live_pods is not None and p not in live_pods))
    live = {
        pod: entry
        for pod, entry in entries.items()
        if pod not in gone and now - entry.report_time <= stale_after
    }
    eligible = {
        pod: e
        for pod, e in live.items()
        if (e.samples >= window or (e.detected and e.reason == "ChangeDetector"))
        and (expected_version is None or e.model_version in (None, expected_version))
    }
    pool = eligible or live
    worst: tuple[str, api.ReplicaDriftEntry] | None = None
    if pool:
        worst = max(
            pool.items(),
            key=lambda item: (bool(eligible) and item[1].detected, item[1].rmse or 0.0, item[0]),
        )
    detected = any(e.detected for e in eligible.values())
    last = max((e.report_time for e in live.values()), default=None)
    versions = collections.Counter(e.model_version for e in live.values() if e.model_version)
    serving = None
    if versions:
        serving = max(versions.items(), key=lambda kv: (kv[1], _version_key(kv[0])))[0]
    status = api.DriftStatus(
        rmse=None if worst is None else worst[1].rmse,
        threshold=threshold,
        samples=0 if worst is None else worst[1].samples,
        detected=detected,
        last_report_time=last,
        replica=None if worst is None else worst[0],
    )
    errors = tuple(sorted({e.model_error for e in live.values() if e.model_error}))
    return DriftSummary(
        status=status,
        gone=gone,
        live=live,
        serving_version=serving,
        model_errors=errors,
        eligible=len(eligible),
    )
