"""The runtime reports its drift into a real EdgeModel's status, with only the rights it needs."""

from __future__ import annotations

import dataclasses
import datetime
import json

import kubernetes
import pytest

from edgemodel import api, contracts
from edgemodel_dev import testing
from edgemodel_runtime import app

pytestmark = [pytest.mark.cluster, pytest.mark.mqtt, pytest.mark.mlflow]

POD = "runtime-0"


def _edgemodel(name: str) -> dict:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name},
        "spec": {
            "sensors": {
                "topics": [f"{name}/sensors/+"],
                "features": list(testing.FEATURES),
                "target": testing.TARGET,
                "deviceField": "device",
            },
            "drift": {"threshold": 1.5, "window": 100},
            "model": {"name": name},
        },
    }


def _runtime_kubeconfig(cluster, namespace: str):
    """A ServiceAccount that may only read EdgeModels' status and patch it."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(cluster.api_client())
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "runtime"}})
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "runtime"},
            "rules": [
                {"apiGroups": [api.GROUP], "resources": [f"{api.PLURAL}/status"], "verbs": ["get", "patch"]},
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "runtime"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "runtime"},
            "subjects": [{"kind": "ServiceAccount", "name": "runtime", "namespace": namespace}],
        },
    )
    return cluster.kubeconfig_for_service_account(namespace, "runtime")


def _runtime_client(cluster, namespace: str):
    return cluster.api_client(_runtime_kubeconfig(cluster, namespace))


def test_replica_drift_lands_in_status(
    cluster, namespace, api_client, mosquitto_broker, mlflow_server, unique_name
):
    name = unique_name
    custom = kubernetes.client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, _edgemodel(name))
    # a replica that stopped reporting an hour ago: not a member, its devices are ours
    gone_at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    other = api.ReplicaDriftEntry(report_time=gone_at, rmse=0.1, samples=5)
    custom.patch_namespaced_custom_object_status(
        api.GROUP,
        api.VERSION,
        namespace,
        api.PLURAL,
        name,
        contracts.replica_drift_patch("runtime-other", other),
        _content_type="application/merge-patch+json",
    )
    version = testing.publish_model(mlflow_server.uri, name)
    settings = testing.for_broker(mosquitto_broker, mlflow_server.uri, name, edgemodel=f"{namespace}/{name}")
    settings = dataclasses.replace(settings, pod_name=POD, pod_namespace=namespace)
    runtime = app.App(settings, api_client=_runtime_client(cluster, namespace)).start()
    publisher = testing.publisher_for(mosquitto_broker, name)

    def entry() -> dict | None:
        obj = custom.get_namespaced_custom_object_status(api.GROUP, api.VERSION, namespace, api.PLURAL, name)
        return (obj.get("status") or {}).get("replicaDrift", {}).get(POD)

    try:
        assert runtime.wait_connected(30)
        testing.wait_for(lambda: runtime.holder.state.version == version, timeout=60, what="model load")
        testing.wait_for(
            lambda: (entry() or {}).get("modelVersion") == version, timeout=60, what="first report"
        )
        for p in testing.readings(2, 400, seed=2, shift_at=250):
            publisher.publish(f"{name}/sensors/{p['device']}", json.dumps(p))
        testing.wait_for(lambda: (entry() or {}).get("detected") is True, timeout=60, what="drift in status")
        reported = api.ReplicaDriftEntry.model_validate(entry())
        assert reported.reason in ("ChangeDetector", "Threshold")
        assert reported.rmse is not None and reported.rmse > 0 and reported.samples > 0
        assert reported.model_version == version and reported.model_error is None
        status = custom.get_namespaced_custom_object_status(
            api.GROUP, api.VERSION, namespace, api.PLURAL, name
        )
        assert "runtime-other" in status["status"]["replicaDrift"]  # only our own entry was touched
        assert status["spec"]["sensors"]["topics"] == [f"{name}/sensors/+"]  # spec untouched
        assert (
            testing.sample(runtime.metrics.registry, "edgemodel_status_reports_total", {"result": "failed"})
            == 0
        )
        registry = runtime.metrics.registry
        assert testing.sample(registry, "edgemodel_partition_mode", {"mode": "dynamic"}) == 1
        assert testing.sample(registry, "edgemodel_partition_members") == 1  # the stale entry is no member
        assert testing.sample(registry, "edgemodel_membership_refreshes_total", {"result": "failed"}) == 0
    finally:
        publisher.close()
        runtime.stop()
