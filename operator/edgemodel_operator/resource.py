"""One EdgeModel as the operator sees it: identity, parsed spec and current status.

Pure data and parsing; no I/O here.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

import pydantic

from edgemodel import api

__all__ = ["EdgeModel", "InvalidSpecError", "parse_status"]


class InvalidSpecError(ValueError):
    """The stored spec does not parse; retrying will not help until it changes."""


@dataclasses.dataclass(frozen=True)
class EdgeModel:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: api.EdgeModelSpec
    status: api.EdgeModelStatus
    annotations: Mapping[str, str]
    status_error: str | None = None
    """Why the stored status (outside ``replicaDrift``) could not be read, if it could not.

    The operator then holds retraining and rollback, and says so in a condition and an
    Event: it never starts over from an empty status, which would forget the cooldown,
    the hourly limit, the rejection breaker and the rollback target.
    """
    malformed_reports: tuple[str, ...] = ()
    """``replicaDrift`` keys whose entry does not parse: ignored, counted and removed."""

    @property
    def model_name(self) -> str:
        return self.spec.model_name(self.name, self.namespace)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> EdgeModel:
        """Parse an EdgeModel object as the API server returns it."""
        meta = body.get("metadata") or {}
        try:
            spec = api.EdgeModelSpec.model_validate(body.get("spec") or {})
        except pydantic.ValidationError as exc:
            raise InvalidSpecError(str(exc)) from exc
        status, status_error, malformed = parse_status(body.get("status"))
        return cls(
            name=str(meta["name"]),
            namespace=str(meta["namespace"]),
            uid=str(meta["uid"]),
            generation=int(meta.get("generation") or 0),
            spec=spec,
            status=status,
            annotations=dict(meta.get("annotations") or {}),
            status_error=status_error,
            malformed_reports=malformed,
        )


def _errors(exc: pydantic.ValidationError, prefix: str = "") -> str:
    """A validation error in one line: where and what, for a condition message."""
    parts = [
        f"{prefix}{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
        for err in exc.errors()[:5]
    ]
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def parse_status(raw: object) -> tuple[api.EdgeModelStatus, str | None, tuple[str, ...]]:
    """``(status, error, malformed report keys)`` from a stored ``status``.

    The operator's own part and the runtimes' reports are read apart, so a runtime that
    writes a report the operator cannot read loses only that report:

    - an unreadable ``replicaDrift`` entry (or one whose ``reportTime`` has no time zone)
      is left out, and its key returned;
    - an unreadable rest is an error (returned, never raised): the status returned then
      holds only the conditions that still parse, for the operator to report the error in.

    >>> st, error, bad = parse_status({"replicaDrift": {"p": {"samples": -1}}, "replicas": 1})
    >>> (st.replicas, error, bad)
    (1, None, ('p',))
    >>> st, error, bad = parse_status({"retraining": {"count": "many"}, "replicas": 1})
    >>> (st.replicas, error)
    (0, 'status.retraining.count: Input should be a valid integer, unable to parse string as an integer')
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        return api.EdgeModelStatus(), f"status is a {type(raw).__name__}, not an object", ()
    rest = {k: v for k, v in raw.items() if k != "replicaDrift"}
    reports = raw.get("replicaDrift") or {}
    error: str | None = None
    try:
        status = api.EdgeModelStatus.model_validate(rest)
    except pydantic.ValidationError as exc:
        error = _errors(exc, "status.")
        status = api.EdgeModelStatus(conditions=_readable_conditions(rest.get("conditions")))
    else:
        naive = _naive_times(status, "status")
        if naive:
            error = "; ".join(f"{where}: a time with no time zone" for where in naive[:5])
            status = api.EdgeModelStatus(conditions=_readable_conditions(rest.get("conditions")))
    entries: dict[str, api.ReplicaDriftEntry] = {}
    malformed: list[str] = []
    if not isinstance(reports, Mapping):
        error = "; ".join(filter(None, [error, "status.replicaDrift: not an object"]))
        reports = {}
    for key, value in reports.items():
        try:
            entry = api.ReplicaDriftEntry.model_validate(value)
        except pydantic.ValidationError:
            malformed.append(str(key))
            continue
        if entry.report_time.tzinfo is None:
            # The API server's date-time format admits a time with no zone; it compares with nothing.
            malformed.append(str(key))
            continue
        entries[str(key)] = entry
    return status.model_copy(update={"replica_drift": entries}), error, tuple(sorted(malformed))


def _naive_times(value: object, where: str) -> list[str]:
    """Where ``value`` holds a datetime with no time zone.

    The API server's ``date-time`` format admits one (``2026-11-23T12:00:00``); compared
    with the operator's clock it would raise, so it counts as unreadable.
    """
    if isinstance(value, datetime.datetime):
        return [where] if value.tzinfo is None else []
    if isinstance(value, pydantic.BaseModel):
        return [
            w
            for field, info in type(value).model_fields.items()
            for w in _naive_times(getattr(value, field), f"{where}.{info.alias or field}")
        ]
    if isinstance(value, list):
        return [w for i, item in enumerate(value) for w in _naive_times(item, f"{where}.{i}")]
    if isinstance(value, dict):
        return [w for k, item in value.items() for w in _naive_times(item, f"{where}.{k}")]
    return []


def _readable_conditions(raw: object) -> list[api.Condition]:
    """The conditions that parse, one by one; the others are dropped."""
    out = []
    for item in raw if isinstance(raw, list) else []:
        try:
            out.append(api.Condition.model_validate(item))
        except pydantic.ValidationError:
            continue
    return out
