"""Fold the replicas' drift reports into one summary for ``status.drift``.

The rule for several replicas, as documented in docs/operator.md:

- Only *live* entries count: the Pod is a live replica of this EdgeModel (it exists, and
  the EdgeModel's inference StatefulSet controls it: :func:`replica_pods`) and its report
  is younger than ``stale_report_seconds``.
- Entries that must not count at all are *ignored*: removed from status, and returned
  with why (:data:`NOT_A_LIVE_REPLICA`, :data:`FUTURE_REPORT_TIME`) for the operator's
  ``edgemodel_operator_drift_reports_ignored_total`` metric. A report for a Pod that is
  not a live replica is one; so is a ``reportTime`` further ahead than ``max_skew``,
  which would otherwise never go stale.
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
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from edgemodel import api

__all__ = [
    "FUTURE_REPORT_TIME",
    "MALFORMED",
    "NOT_A_LIVE_REPLICA",
    "DriftSummary",
    "replica_pods",
    "summarise",
]

NOT_A_LIVE_REPLICA = "not_a_live_replica"
FUTURE_REPORT_TIME = "future_report_time"
MALFORMED = "malformed"
"""Why a report was ignored: the ``reason`` label of the ignored-reports metric."""


@dataclasses.dataclass(frozen=True)
class DriftSummary:
    status: api.DriftStatus
    gone: tuple[str, ...]
    """Entries that are ignored (see ``ignored``); the operator removes them from status."""
    live: Mapping[str, api.ReplicaDriftEntry]
    serving_version: str | None
    """The model version most live replicas report serving (ties: the higher version)."""
    model_errors: tuple[str, ...]
    eligible: int
    ignored: tuple[tuple[str, str], ...] = ()
    """``(pod, reason)`` of each entry ignored by this summary."""


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
    max_skew: datetime.timedelta = datetime.timedelta(seconds=30),
) -> DriftSummary:
    """Summarise ``entries``; ``live_pods`` is None when the Pod list could not be read.

    With ``expected_version``, replicas still serving another version (an old champion
    about to be swapped out) are shown but cannot make the summary ``detected``.
    """
    ignored = sorted(
        [(p, NOT_A_LIVE_REPLICA) for p in entries if live_pods is not None and p not in live_pods]
        + [
            (p, FUTURE_REPORT_TIME)
            for p, e in entries.items()
            if (live_pods is None or p in live_pods) and e.report_time - now > max_skew
        ]
    )
    gone = tuple(p for p, _ in ignored)
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
        ignored=tuple(ignored),
    )


def replica_pods(pods: Iterable[Mapping[str, Any]], *, statefulset: str) -> set[str]:
    """Names of the Pods that the StatefulSet ``statefulset`` controls.

    A Pod someone else made with the replicas' labels is not a replica: its reports never count.

    >>> owner = {"kind": "StatefulSet", "name": "em-inference", "controller": True}
    >>> sorted(replica_pods([
    ...     {"metadata": {"name": "em-inference-0", "ownerReferences": [owner]}},
    ...     {"metadata": {"name": "impostor", "labels": {"app": "x"}}},
    ...     {"metadata": {"name": "em-inference-1", "ownerReferences": [{**owner, "controller": False}]}},
    ... ], statefulset="em-inference"))
    ['em-inference-0']
    """
    out = set()
    for pod in pods:
        meta = pod.get("metadata") or {}
        if any(
            o.get("kind") == "StatefulSet" and o.get("name") == statefulset and o.get("controller")
            for o in meta.get("ownerReferences") or []
        ):
            out.add(str(meta.get("name")))
    return out
