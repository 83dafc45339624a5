"""Pure renderers: a parsed EdgeModel in, the Kubernetes objects it owns out. No I/O here.

:func:`desired` renders everything that must exist at all times; Jobs are rendered on
demand by :mod:`edgemodel_operator.render.jobs`, when the retraining policy says so.
"""

from __future__ import annotations

from typing import Any

from edgemodel_operator.render import autoscaler, broker, inference, jobs, networkpolicy
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings

__all__ = ["desired"]


def desired(em: EdgeModel, settings: Settings, *, generated_password: str | None) -> list[dict[str, Any]]:
    """Every long-lived child, in the order it should be applied: the NetworkPolicies first, so no
    Pod they guard runs unguarded."""
    return [
        *networkpolicy.objects(em, settings),
        *broker.objects(em, settings, generated_password=generated_password),
        *inference.objects(em, settings),
        *autoscaler.objects(em),
        *jobs.schedule(em, settings),
    ]
