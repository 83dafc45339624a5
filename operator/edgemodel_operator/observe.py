"""Read what the API server returned into small facts: availability, Jobs and their results.

Takes plain JSON objects (as the API server sends them) and returns value types.
Pure functions; no I/O here.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from edgemodel import contracts
from edgemodel_operator import names

__all__ = [
    "Applied",
    "JobInfo",
    "Live",
    "Workload",
    "applied",
    "apply_reason",
    "child_fingerprint",
    "deployment",
    "digest",
    "job_info",
    "live",
    "parse_time",
    "statefulset",
]


def parse_time(value: str | None) -> datetime.datetime | None:
    """A Kubernetes timestamp (RFC 3339, ``Z`` for UTC) as an aware datetime; None when absent."""
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclasses.dataclass(frozen=True)
class Workload:
    """What a pass needs of a Deployment or StatefulSet: does it exist and serve."""

    exists: bool
    available: bool
    ready_replicas: int
    message: str


def deployment(obj: Mapping[str, Any] | None) -> Workload:
    if obj is None:
        return Workload(False, False, 0, "not created yet")
    status = obj.get("status") or {}
    ready = int(status.get("readyReplicas") or 0)
    available = next((c for c in status.get("conditions") or [] if c.get("type") == "Available"), None)
    is_available = available is not None and available.get("status") == "True" and ready > 0
    message = "" if available is None else str(available.get("message") or "")
    return Workload(True, is_available, ready, message)


def statefulset(obj: Mapping[str, Any] | None) -> Workload:
    """A StatefulSet has no conditions: it serves while one of its Pods is available.

    >>> statefulset({"spec": {"replicas": 2}, "status": {"readyReplicas": 1, "availableReplicas": 1}})
    Workload(exists=True, available=True, ready_replicas=1, message='1 of 2 replicas available')
    """
    if obj is None:
        return Workload(False, False, 0, "not created yet")
    status = obj.get("status") or {}
    ready = int(status.get("readyReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    wanted = int((obj.get("spec") or {}).get("replicas") or 0)
    return Workload(True, available > 0, ready, f"{available} of {wanted} replicas available")


@dataclasses.dataclass(frozen=True)
class JobInfo:
    name: str
    kind: str
    trigger: str
    created: datetime.datetime | None
    active: bool
    finished: str | None
    """``Complete``, ``Failed``, or None while running."""
    finished_time: datetime.datetime | None
    result: contracts.TrainingResult | None
    failure: str
    """Why the Job failed, from its condition, when it has no result."""


def _terminated_message(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """The trainer's termination message from the newest finished Pod."""
    best: tuple[str, str] | None = None
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != "trainer":
                continue
            term = (cs.get("state") or {}).get("terminated") or {}
            if term.get("message"):
                stamp = str(term.get("finishedAt") or "")
                if best is None or stamp >= best[0]:
                    best = (stamp, str(term["message"]))
    return None if best is None else best[1]


def job_info(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], *, now: datetime.datetime) -> JobInfo:
    meta = job.get("metadata") or {}
    status = job.get("status") or {}
    finished: str | None = None
    finished_time: datetime.datetime | None = None
    failure = ""
    for cond in status.get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            finished = str(cond["type"])
            finished_time = parse_time(cond.get("lastTransitionTime")) or now
            if finished == "Failed":
                failure = f"{cond.get('reason', 'Failed')}: {cond.get('message', '')}".strip()
    result = None
    message = _terminated_message(pods)
    if message:
        try:
            result = contracts.TrainingResult.from_termination_message(message)
        except (ValueError, pydantic.ValidationError):
            failure = failure or f"unreadable trainer result: {message[:200]}"
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    return JobInfo(
        name=str(meta.get("name")),
        kind=str(labels.get(names.LABEL_JOB_KIND, "retrain")),
        trigger=str(annotations.get(names.ANNOTATION_TRIGGER, "Scheduled")),
        created=parse_time(meta.get("creationTimestamp")),
        active=finished is None,
        finished=finished,
        finished_time=finished_time,
        result=result,
        failure=failure,
    )


def _conditions(status: Mapping[str, Any], types: Sequence[str]) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted(
            (str(c.get("type")), str(c.get("status")))
            for c in status.get("conditions") or []
            if c.get("type") in types
        )
    )


def child_fingerprint(kind: str, obj: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a reconcile can act on in a child; a watch event that leaves it equal needs no pass.

    Spec edits (``generation``), label and annotation edits, and the status the pass reads
    (:func:`deployment`, :func:`statefulset`, a Job finishing) count. Controllers' other
    status writes (``observedGeneration``, ``replicas`` before they are ready, progress
    conditions, a Job's ``ready`` count, an HPA's or CronJob's whole status) do not.
    Kinds with no ``generation`` (Service, ConfigMap, ServiceAccount, Role, RoleBinding)
    count every change.

    >>> dep = {"metadata": {"generation": 2}, "status": {"replicas": 1, "observedGeneration": 1}}
    >>> newer = {"metadata": {"generation": 2}, "status": {"replicas": 1, "observedGeneration": 2}}
    >>> child_fingerprint("Deployment", dep) == child_fingerprint("Deployment", newer)
    True
    >>> edited = {"metadata": {"generation": 3}, "status": {"replicas": 1, "observedGeneration": 2}}
    >>> child_fingerprint("Deployment", dep) == child_fingerprint("Deployment", edited)
    False
    """
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    base = (
        kind,
        meta.get("generation"),
        tuple(sorted((meta.get("labels") or {}).items())),
        tuple(sorted((meta.get("annotations") or {}).items())),
        bool(meta.get("deletionTimestamp")),
    )
    if kind == "Deployment":
        available: Mapping[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Available"), {}
        )
        return (*base, status.get("readyReplicas"), available.get("status"), available.get("message"))
    if kind == "StatefulSet":
        return (*base, status.get("readyReplicas"), status.get("availableReplicas"))
    if kind == "Job":
        return (*base, _conditions(status, ("Complete", "Failed")))
    if kind in ("HorizontalPodAutoscaler", "CronJob"):
        return base  # a pass reads nothing of their status
    return (*base, meta.get("resourceVersion"))


# ---------------------------------------------------------------------- skipping an apply


def digest(obj: Mapping[str, Any]) -> str:
    """A stable hash of a rendered object: equal renders, equal digests."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


def _workload(kind: str, obj: Mapping[str, Any]) -> Workload | None:
    if kind == "StatefulSet":
        return statefulset(obj)
    if kind == "Deployment":
        return deployment(obj)
    return None


def _controller_uid(meta: Mapping[str, Any]) -> str | None:
    return next(
        (str(o.get("uid")) for o in meta.get("ownerReferences") or [] if o.get("controller")),
        None,
    )


@dataclasses.dataclass(frozen=True)
class Applied:
    """A child as the operator's last apply left it: what it sent, and what came back."""

    digest: str
    """:func:`digest` of the rendered object that was applied."""
    generation: int
    """``metadata.generation`` in the response (0 for kinds that have none: ConfigMap, Role...)."""
    resource_version: str
    workload: Workload | None
    """The StatefulSet's or Deployment's state in the response."""


def applied(kind: str, rendered_digest: str, response: Mapping[str, Any]) -> Applied:
    meta = response.get("metadata") or {}
    return Applied(
        digest=rendered_digest,
        generation=int(meta.get("generation") or 0),
        resource_version=str(meta.get("resourceVersion") or ""),
        workload=_workload(kind, response),
    )


@dataclasses.dataclass(frozen=True)
class Live:
    """A child as the latest watch event showed it: enough to see a drift, and its state.

    Small on purpose (no object bodies): one is kept per child of every EdgeModel.
    """

    generation: int
    resource_version: str
    labels: tuple[tuple[str, str], ...]
    controller_uid: str | None
    deleted: bool
    workload: Workload | None


def live(kind: str, obj: Mapping[str, Any], *, deleted: bool = False) -> Live:
    meta = obj.get("metadata") or {}
    return Live(
        generation=int(meta.get("generation") or 0),
        resource_version=str(meta.get("resourceVersion") or ""),
        labels=tuple(sorted((str(k), str(v)) for k, v in (meta.get("labels") or {}).items())),
        controller_uid=_controller_uid(meta),
        deleted=deleted or bool(meta.get("deletionTimestamp")),
        workload=None if deleted else _workload(kind, obj),
    )


def apply_reason(rendered: Mapping[str, Any], last: Applied | None, seen: Live | None) -> str | None:
    """Why a pass must apply ``rendered``; None when it may skip the request.

    It may skip only when the render equals the last one applied (``last.digest``) and the
    live child, as the watch last showed it (``seen``), has not moved away from what that
    apply left: not deleted, still controlled by the same owner with the rendered labels,
    and, for kinds with a ``generation`` (workloads, HPA, CronJob), the same generation, so
    a controller's status writes do not count; for the others (ConfigMap, Service,
    ServiceAccount, Role, RoleBinding) the same ``resourceVersion``, as nothing else writes
    them. ``seen`` is None while no watch event has arrived since the apply: the apply's
    response is then the newest state, and any later change brings an event (and a pass).
    A watch event older than the last apply looks drifted: one apply too many, never one
    too few.

    >>> obj = {"kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"k": "v"}}
    >>> done = applied("ConfigMap", digest(obj), {"metadata": {"resourceVersion": "7"}})
    >>> apply_reason(obj, None, None), apply_reason(obj, done, None)
    ('first', None)
    >>> same = Live(0, "7", (("a", "1"),), None, False, None)
    >>> edited = dataclasses.replace(same, resource_version="8")
    >>> apply_reason(obj, done, same), apply_reason(obj, done, edited)
    (None, 'drifted')
    >>> apply_reason({**obj, "data": {"k": "w"}}, done, same)
    'changed'
    """
    if last is None:
        return "first"
    if last.digest != digest(rendered):
        return "changed"
    if seen is None:
        return None
    if seen.deleted:
        return "deleted"
    meta = rendered.get("metadata") or {}
    labels = dict(seen.labels)
    if any(labels.get(str(k)) != str(v) for k, v in (meta.get("labels") or {}).items()):
        return "drifted"
    if _controller_uid(meta) != seen.controller_uid:
        return "drifted"
    if last.generation and seen.generation:
        return None if seen.generation == last.generation else "drifted"
    return None if seen.resource_version == last.resource_version else "drifted"
