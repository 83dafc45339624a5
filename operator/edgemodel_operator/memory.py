"""The retraining policy's memory, kept where no runtime can write it (issue 12, item 2).

What gates retraining and rollback — trigger times and counts, rejection and failure
counts (``status.retraining``) and the version history the rollback reads
(``status.model.history``) — is what the operator *remembers*, not what runtimes report.
It lives in the EdgeModel's annotation ``edgeml.dev/policy-memory`` (JSON), which only a
write to the EdgeModel itself can change: a runtime's Role allows writes to the status
subresource only, and the API server ignores everything but ``status`` in those. ``status``
keeps a copy for people and alerts; the operator reads the annotation.

- :func:`recall` puts the remembered values in place of the ones in ``status`` before a pass
  plans. Without the annotation (an EdgeModel from before, or a new one) the status's values
  are taken, once; the pass then writes them to the annotation.
- An annotation the operator cannot read is an error, as an unreadable status is: the
  EdgeModel is held (``Degraded=StatusUnreadable``, an Event), never reset to empty.
- :func:`patch` is the apply that stores what a plan decided, or None when nothing changed.

Pure functions; no I/O here.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping
from typing import Any

import pydantic

from edgemodel import api
from edgemodel_operator.resource import EdgeModel

__all__ = ["ANNOTATION", "Memory", "patch", "read", "recall"]

ANNOTATION = "edgeml.dev/policy-memory"


class Memory(pydantic.BaseModel):
    """The policy's memory: the retraining bookkeeping and the model history."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    retraining: api.RetrainingStatus = api.RetrainingStatus()
    history: list[api.ModelHistoryEntry] = []

    @classmethod
    def of(cls, status: api.EdgeModelStatus) -> Memory:
        return cls(retraining=status.retraining, history=list(status.model.history))

    def to_annotation(self) -> str:
        return json.dumps(
            {
                "retraining": self.retraining.model_dump(by_alias=True, mode="json"),
                "history": [h.model_dump(by_alias=True, mode="json") for h in self.history],
            },
            sort_keys=True,
            separators=(",", ":"),
        )


def _naive(memory: Memory) -> list[str]:
    r = memory.retraining
    times: list[tuple[str, datetime.datetime | None]] = [
        ("retraining.lastTriggeredTime", r.last_triggered_time),
        ("retraining.lastCompletedTime", r.last_completed_time),
        *((f"retraining.recentTriggers.{i}", t) for i, t in enumerate(r.recent_triggers)),
        *((f"history.{i}.time", h.time) for i, h in enumerate(memory.history)),
    ]
    return [where for where, t in times if t is not None and t.tzinfo is None]


def read(annotations: Mapping[str, str]) -> tuple[Memory | None, str | None]:
    """``(memory, error)`` from the EdgeModel's annotations; ``(None, None)`` when there is none.

    >>> read({})
    (None, None)
    >>> read({ANNOTATION: '{"retraining": {"count": "many"}}'})[1].split(": ")[:2]
    ['annotation edgeml.dev/policy-memory', 'retraining.count']
    """
    raw = (annotations or {}).get(ANNOTATION)
    if raw is None:
        return None, None
    where = f"annotation {ANNOTATION}"
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return None, f"{where}: not JSON ({exc})"
    if not isinstance(value, dict):
        return None, f"{where}: not a JSON object"
    try:
        memory = Memory.model_validate(value)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        return None, f"{where}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    naive = _naive(memory)
    if naive:
        return None, f"{where}: {naive[0]}: a time with no time zone"
    return memory, None


def recall(em: EdgeModel) -> EdgeModel:
    """``em`` with the remembered bookkeeping in place of the one in its status.

    No annotation: ``em`` as it is (its status's values are the memory, this once). An
    unreadable one: ``em`` with ``status_error`` set, so the pass holds and says why.
    """
    memory, error = read(em.annotations)
    if error is not None:
        return dataclasses.replace(em, status_error="; ".join(filter(None, [em.status_error, error])))
    if memory is None:
        return em
    status = em.status.model_copy(
        update={
            "retraining": memory.retraining,
            "model": em.status.model.model_copy(update={"history": memory.history}),
        }
    )
    return dataclasses.replace(em, status=status)


def patch(em: EdgeModel, planned: api.EdgeModelStatus) -> dict[str, Any] | None:
    """The server-side apply of the annotation that stores ``planned``'s memory; None if unchanged."""
    stored = Memory.of(planned).to_annotation()
    if em.annotations.get(ANNOTATION) == stored:
        return None
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": em.name, "namespace": em.namespace, "annotations": {ANNOTATION: stored}},
    }
