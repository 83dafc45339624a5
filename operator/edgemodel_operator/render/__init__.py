"""Pure renderers: a parsed EdgeModel in, the Kubernetes objects it owns out. No I/O here.

:func:`desired` renders everything that must exist at all times; Jobs are rendered on
demand by :mod:`edgemodel_operator.render.jobs`, when the retraining policy says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgemodel_operator.render import autoscaler, broker, inference, jobs, networkpolicy
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings

__all__ = ["desired"]


def desired(
    em: EdgeModel,
    settings: Settings,
    *,
    generated_password: str | None,
    credentials: Mapping[str, str] | None = None,
    credentials_version: str = "",
) -> list[dict[str, Any]]:
    """Every long-lived child, in the order it should be applied: the NetworkPolicies first, so no
    Pod they guard runs unguarded. The credentials are the managed broker's
    (:func:`edgemodel_operator.render.broker.objects`); their version rolls the broker and runtime
    Pods when the credentials Secret changes."""
    return [
        *networkpolicy.objects(em, settings),
        *broker.objects(
            em,
            settings,
            generated_password=generated_password,
            credentials=credentials,
            credentials_version=credentials_version,
        ),
        *inference.objects(em, settings, credentials_version=credentials_version),
        *autoscaler.objects(em),
        *jobs.schedule(em, settings),
    ]
