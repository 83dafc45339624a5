"""Status conditions in the shape of the Kubernetes API conventions.

``lastTransitionTime`` changes only when ``status`` flips; reason, message and
observedGeneration are updated in place. Pure functions; no I/O here.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from edgemodel import api

__all__ = ["DEGRADED", "DRIFTED", "READY", "RETRAINING", "find", "merge"]

READY = "Ready"
DRIFTED = "Drifted"
RETRAINING = "Retraining"
DEGRADED = "Degraded"
BROKER_AVAILABLE = "BrokerAvailable"
INFERENCE_AVAILABLE = "InferenceAvailable"
ORDER = (READY, DRIFTED, RETRAINING, DEGRADED, INFERENCE_AVAILABLE, BROKER_AVAILABLE)


def find(conditions: Sequence[api.Condition], type_: str) -> api.Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Sequence[api.Condition], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status == "True"


def merge(
    old: Sequence[api.Condition],
    new: Sequence[tuple[str, api.ConditionStatus, str, str]],
    *,
    generation: int,
    now: datetime.datetime,
) -> list[api.Condition]:
    """Apply ``(type, status, reason, message)`` updates to ``old``; keep others as they are."""
    result = {c.type: c for c in old}
    for type_, status, reason, message in new:
        previous = result.get(type_)
        changed = previous is None or previous.status != status
        result[type_] = api.Condition(
            type=type_,
            status=status,
            reason=reason,
            message=message,
            observed_generation=generation,
            last_transition_time=now if changed or previous is None else previous.last_transition_time,
        )
    ordered = [result.pop(t) for t in ORDER if t in result]
    return ordered + sorted(result.values(), key=lambda c: c.type)
