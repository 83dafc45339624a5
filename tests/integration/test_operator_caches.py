"""The Reconciler's memory on the real API server: one entry set per live EdgeModel, none after delete.

A Reconciler runs in this process against the harness's kube-apiserver, so the test can
look at what it keeps: only the children the spec wants now, and nothing at all about an
EdgeModel once a pass has found it gone.
"""

from __future__ import annotations

import kubernetes
import pytest

from edgemodel import api
from edgemodel_operator import kube
from edgemodel_operator.reconcile import Reconciler
from edgemodel_operator.settings import Settings
from tests.integration import edgemodels

pytestmark = [pytest.mark.cluster]

SPEC = {
    "sensors": {
        "topics": ["plant/line1/+/telemetry"],
        "features": ["temperature", "humidity"],
        "target": "temperature",
    },
    "drift": {"threshold": 1.5, "window": 100},
    "scaling": {"minReplicas": 1, "maxReplicas": 3},
    "model": {"algorithm": "ridge"},
}


def test_caches_hold_only_wanted_children_and_are_cleared_when_the_edgemodel_is_gone(
    cluster, api_client, namespace
):
    client = kube.Kube(api_client, field_manager="edgemodel-operator")
    r = Reconciler(client, Settings(identity="caches-test", mlflow_tracking_uri="http://mlflow:5000"))
    custom = kubernetes.client.CustomObjectsApi(api_client)

    edgemodels.create(api_client, namespace, "a", SPEC)
    edgemodels.create(api_client, namespace, "b", SPEC)
    first = r.reconcile(namespace, "a")
    assert first is not None and r.reconcile(namespace, "b") is not None
    managed = r.tracked_children(namespace, "a")
    assert len(managed) == first.applied and ("Deployment", "a-broker") in managed
    assert {(namespace, "a"), (namespace, "b")} <= r.cached()

    # The spec stops wanting the managed broker: its children are pruned and forgotten.
    custom.patch_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, "a", {"spec": {"broker": {"host": "mqtt.example"}}}
    )
    second = r.reconcile(namespace, "a")
    assert second is not None and "Deployment/a-broker" in second.pruned
    external = r.tracked_children(namespace, "a")
    assert len(external) == second.applied < len(managed)
    assert ("Deployment", "a-broker") not in external

    # Passes over an unchanged EdgeModel add nothing.
    for _ in range(3):
        r.reconcile(namespace, "a")
    assert r.tracked_children(namespace, "a") == external

    custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, "a")
    assert r.reconcile(namespace, "a") is None  # gone: every cache drops it
    assert (namespace, "a") not in r.cached()
    assert r.tracked_children(namespace, "a") == frozenset()
    assert (namespace, "b") in r.cached()  # the other EdgeModel is untouched
