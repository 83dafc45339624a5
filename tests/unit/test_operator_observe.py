"""Which child watch events need a reconcile: the child fingerprint. Pure; no I/O."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from edgemodel_operator import observe


def _obj(generation: int | None = 1, status: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"resourceVersion": "10", **meta}
    if generation is not None:
        metadata["generation"] = generation
    return {"metadata": metadata, "status": status or {}}


def test_doctests():
    assert doctest.testmod(observe).failed == 0


@pytest.mark.parametrize(
    ("kind", "before", "after"),
    [
        ("Deployment", {"observedGeneration": 1}, {"observedGeneration": 2}),
        ("Deployment", {"readyReplicas": 1}, {"readyReplicas": 1, "updatedReplicas": 1}),
        ("Job", {"active": 1}, {"active": 1, "ready": 1, "startTime": "2026-01-01T00:00:00Z"}),
        ("HorizontalPodAutoscaler", {"currentReplicas": 1}, {"currentReplicas": 1, "lastScaleTime": "x"}),
        # A pass reads nothing of an HPA's status: its scaling reaches the StatefulSet's spec.
        ("HorizontalPodAutoscaler", {"desiredReplicas": 1}, {"desiredReplicas": 2}),
        ("StatefulSet", {"replicas": 0}, {"replicas": 1}),
    ],
)
def test_controller_bookkeeping_needs_no_pass(kind, before, after):
    assert observe.child_fingerprint(kind, _obj(status=before)) == observe.child_fingerprint(
        kind, _obj(status=after)
    )


@pytest.mark.parametrize(
    ("kind", "before", "after"),
    [
        # A hand edit of the spec.
        ("Deployment", _obj(1), _obj(2)),
        # A hand edit of labels or annotations.
        ("Deployment", _obj(labels={"a": "1"}), _obj(labels={"a": "2"})),
        ("HorizontalPodAutoscaler", _obj(annotations={}), _obj(annotations={"x": "y"})),
        # Availability and replica counts the pass reads.
        ("Deployment", _obj(status={"readyReplicas": 0}), _obj(status={"readyReplicas": 1})),
        (
            "Deployment",
            _obj(status={"conditions": [{"type": "Available", "status": "False"}]}),
            _obj(status={"conditions": [{"type": "Available", "status": "True"}]}),
        ),
        # A Job finishing.
        ("Job", _obj(), _obj(status={"conditions": [{"type": "Complete", "status": "True"}]})),
        ("Job", _obj(), _obj(status={"conditions": [{"type": "Failed", "status": "True"}]})),
        # Being deleted.
        ("Job", _obj(), _obj(deletionTimestamp="2026-01-01T00:00:00Z")),
        # No generation: every change counts.
        ("ConfigMap", _obj(None), _obj(None, resourceVersion="11")),
        ("Service", _obj(None), _obj(None, resourceVersion="11")),
    ],
)
def test_what_a_pass_acts_on_needs_one(kind, before, after):
    assert observe.child_fingerprint(kind, before) != observe.child_fingerprint(kind, after)
