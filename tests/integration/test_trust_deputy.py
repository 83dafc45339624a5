"""Issue 12, item 4, on the real API server: the operator is no confused deputy.

An EdgeModel's author names an image and a Secret; the operator runs Pods and mounts
Secrets with rights the author may not hold. It runs only images from its allow-list, and
mounts only Secrets labelled ``edgeml.dev/use=broker``; otherwise it creates nothing and
says why in ``Degraded`` and a Warning Event. The operators here run under the chart's
RBAC rules, with ``EDGEMODEL_IMAGE=localhost/edgemodel:test``.
"""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from edgemodel import api
from edgemodel_dev.harness import processes
from tests.integration import edgemodels

pytestmark = pytest.mark.cluster

SPEC: dict[str, Any] = edgemodels.spec()


def _degraded(client, namespace: str, name: str) -> dict[str, Any]:
    status = edgemodels.get(client, namespace, name).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c.get("type") == "Degraded"), {})


def _children(client, namespace: str, name: str) -> list[str]:
    """Everything labelled as the EdgeModel's that could run a Pod or mount a Secret."""
    apps = kubernetes.client.AppsV1Api(client)
    batch = kubernetes.client.BatchV1Api(client)
    selector = f"edgeml.dev/edgemodel={name}"
    return [
        *(
            f"StatefulSet/{o.metadata.name}"
            for o in apps.list_namespaced_stateful_set(namespace, label_selector=selector).items
        ),
        *(
            f"Deployment/{o.metadata.name}"
            for o in apps.list_namespaced_deployment(namespace, label_selector=selector).items
        ),
        *(
            f"Job/{o.metadata.name}"
            for o in batch.list_namespaced_job(namespace, label_selector=selector).items
        ),
        *(
            f"CronJob/{o.metadata.name}"
            for o in batch.list_namespaced_cron_job(namespace, label_selector=selector).items
        ),
        *(
            f"Pod/{o.metadata.name}"
            for o in kubernetes.client.CoreV1Api(client).list_namespaced_pod(namespace).items
        ),
    ]


def _warnings(client, namespace: str, name: str, reason: str) -> list[Any]:
    events = kubernetes.client.CoreV1Api(client).list_namespaced_event(namespace).items
    return [
        e for e in events if e.reason == reason and e.involved_object.name == name and e.type == "Warning"
    ]


def _wait_refused(client, namespace: str, name: str, reason: str) -> dict[str, Any]:
    processes.wait_until(
        lambda: _degraded(client, namespace, name).get("reason") == reason,
        timeout=30,
        what=f"Degraded={reason} on {name}",
    )
    return _degraded(client, namespace, name)


def test_an_image_not_on_the_allow_list_runs_nothing_until_the_spec_names_an_allowed_one(
    api_client, namespace, operators
):
    operators(EDGEMODEL_ALLOWED_IMAGE_REPOSITORIES="registry.example/ml/")
    edgemodels.create(api_client, namespace, "em", {**SPEC, "runtime": {"image": "evil.example/miner:1"}})
    degraded = _wait_refused(api_client, namespace, "em", "ImageNotAllowed")
    assert degraded["status"] == "True"
    assert "evil.example/miner:1" in degraded["message"] and "registry.example/ml/" in degraded["message"]
    # The pass that wrote the condition created nothing: no workload, no Job, no Pod.
    assert _children(api_client, namespace, "em") == []
    [event] = _warnings(api_client, namespace, "em", "ImageNotAllowed")
    assert "evil.example/miner:1" in event.message

    # An allowed repository: the loop starts, with that image.
    custom = kubernetes.client.CustomObjectsApi(api_client)
    custom.patch_namespaced_custom_object(
        api.GROUP,
        api.VERSION,
        namespace,
        api.PLURAL,
        "em",
        {"spec": {"runtime": {"image": "registry.example/ml/runtime:2"}}},
    )
    edgemodels.wait_condition(api_client, namespace, "em", "Degraded", "False")
    apps = kubernetes.client.AppsV1Api(api_client)
    processes.wait_until(
        lambda: apps.list_namespaced_stateful_set(namespace, label_selector="edgeml.dev/edgemodel=em").items,
        timeout=30,
        what="the inference StatefulSet",
    )
    sts = apps.read_namespaced_stateful_set("em-inference", namespace)
    assert sts.spec.template.spec.containers[0].image == "registry.example/ml/runtime:2"


def test_a_credentials_secret_without_the_opt_in_label_is_not_mounted_until_labelled(
    api_client, namespace, operators
):
    operators(EDGEMODEL_RESYNC_SECONDS="1")
    core = kubernetes.client.CoreV1Api(api_client)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "site"}, "stringData": {"username": "u", "password": "p"}}
    )
    spec = {**SPEC, "broker": {**SPEC["broker"], "credentialsSecret": {"name": "site"}}}
    edgemodels.create(api_client, namespace, "em", spec)
    degraded = _wait_refused(api_client, namespace, "em", "SecretNotOptedIn")
    assert "site" in degraded["message"] and "edgeml.dev/use=broker" in degraded["message"]
    assert _children(api_client, namespace, "em") == []
    assert len(_warnings(api_client, namespace, "em", "SecretNotOptedIn")) == 1

    # The Secret's owner opts in: the next timer pass sees the label, and the runtime mounts it.
    core.patch_namespaced_secret("site", namespace, {"metadata": {"labels": {"edgeml.dev/use": "broker"}}})
    edgemodels.wait_condition(api_client, namespace, "em", "Degraded", "False")
    apps = kubernetes.client.AppsV1Api(api_client)
    processes.wait_until(
        lambda: apps.list_namespaced_stateful_set(namespace, label_selector="edgeml.dev/edgemodel=em").items,
        timeout=30,
        what="the inference StatefulSet",
    )
    env = apps.read_namespaced_stateful_set("em-inference", namespace).spec.template.spec.containers[0].env
    refs = {e.value_from.secret_key_ref.name for e in env if e.value_from and e.value_from.secret_key_ref}
    assert refs == {"site"}
