"""The EdgeModel API on a real kube-apiserver: install, accept, refuse, print, default."""

from __future__ import annotations

import json
import pathlib

import kubernetes
import pytest
import yaml

from edgemodel import api, contracts
from edgemodel_dev.harness import processes
from tests import specs

pytestmark = pytest.mark.cluster

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def _edgemodel(name: str, spec: dict) -> dict:
    return {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": name}, "spec": spec}


def _create(api_client, namespace: str, body: dict) -> dict:
    custom = kubernetes.client.CustomObjectsApi(api_client)
    return custom.create_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, body, field_validation="Strict"
    )


def test_crd_is_established_and_served(cluster):
    out = cluster.kubectl("api-resources", "--api-group", api.GROUP, "-o", "name").stdout
    assert "edgemodels.edgeml.dev" in out
    short = cluster.kubectl("get", api.SHORT_NAME, "-A").returncode
    assert short == 0


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_is_accepted(cluster, path):
    applied = cluster.kubectl("apply", "--server-side", "-f", str(path))
    assert "serverside-applied" in applied.stdout
    cluster.kubectl("delete", "-f", str(path), "--wait=false")


@pytest.mark.parametrize("case", specs.INVALID, ids=[c.name for c in specs.INVALID])
def test_invalid_spec_is_refused_naming_the_field(api_client, namespace, case):
    with pytest.raises(kubernetes.client.ApiException) as info:
        _create(api_client, namespace, _edgemodel(case.name, case.spec()))
    assert info.value.status in (400, 422)
    body = json.loads(info.value.body)
    text = (
        body["message"]
        + " "
        + " ".join(c.get("field", "") for c in body.get("details", {}).get("causes", []))
    )
    assert case.path in text, text


def test_server_defaults_match_pydantic_defaults(api_client, namespace):
    created = _create(api_client, namespace, _edgemodel("defaults", specs.VALID_SPEC))
    expected = api.EdgeModelSpec.model_validate(specs.VALID_SPEC).to_wire()
    assert created["spec"] == expected


def test_kubectl_get_shows_health_columns(cluster, api_client, namespace):
    example = REPO / "examples" / "edgemodel.yaml"
    doc = yaml.safe_load(example.read_text())
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=yaml.safe_dump({**doc, "metadata": {"name": doc["metadata"]["name"]}}),
    )
    custom = kubernetes.client.CustomObjectsApi(api_client)
    custom.patch_namespaced_custom_object_status(
        api.GROUP,
        api.VERSION,
        namespace,
        api.PLURAL,
        doc["metadata"]["name"],
        {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Serving",
                        "message": "v3 serving",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                        "observedGeneration": 1,
                    }
                ],
                "drift": {"rmse": 0.42, "samples": 100},
                "model": {"version": "3"},
                "replicas": 2,
            }
        },
    )
    out = cluster.kubectl("get", "edgemodels", "-n", namespace).stdout.splitlines()
    header = out[0].split()
    assert header == ["NAME", "READY", "DRIFT", "THRESHOLD", "MODEL", "REPLICAS", "AGE"]
    row = out[1].split()
    assert row[:6] == [doc["metadata"]["name"], "True", "0.42", "1.5", "3", "2"]
    wide = cluster.kubectl("get", "em", "-n", namespace, "-o", "wide").stdout.splitlines()[0].split()
    assert {"DRIFTED", "RETRAINING", "REASON"} <= set(wide)


def test_replica_drift_entries_merge_without_clobbering(api_client, namespace):
    _create(api_client, namespace, _edgemodel("replicas", specs.VALID_SPEC))
    custom = kubernetes.client.CustomObjectsApi(api_client)
    for pod, rmse in (("pod-a", 0.5), ("pod-b", 2.5)):
        entry = api.ReplicaDriftEntry(
            rmse=rmse, samples=100, detected=rmse > 1.5, report_time="2026-01-01T00:00:00Z"
        )
        custom.patch_namespaced_custom_object_status(
            api.GROUP,
            api.VERSION,
            namespace,
            api.PLURAL,
            "replicas",
            contracts.replica_drift_patch(pod, entry),
        )
    obj = custom.get_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, "replicas")
    assert set(obj["status"]["replicaDrift"]) == {"pod-a", "pod-b"}
    assert obj["status"]["replicaDrift"]["pod-b"]["detected"] is True
    custom.patch_namespaced_custom_object_status(
        api.GROUP,
        api.VERSION,
        namespace,
        api.PLURAL,
        "replicas",
        contracts.replica_drift_patch("pod-a", None),
    )
    obj = custom.get_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, "replicas")
    assert set(obj["status"]["replicaDrift"]) == {"pod-b"}
    status = api.EdgeModelStatus.model_validate(obj["status"])
    assert status.replica_drift["pod-b"].rmse == 2.5


def test_deployment_becomes_available_on_the_kwok_node(api_client, namespace):
    apps = kubernetes.client.AppsV1Api(api_client)
    labels = {"app": "probe"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "probe"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "example.invalid/probe:1"}]},
                },
            },
        },
    )

    def available() -> bool:
        dep = apps.read_namespaced_deployment_status("probe", namespace)
        return (
            any(c.type == "Available" and c.status == "True" for c in dep.status.conditions or [])
            and dep.status.ready_replicas == 2
        )

    processes.wait_until(available, timeout=60, what="the Deployment to become Available")
    pods = kubernetes.client.CoreV1Api(api_client).list_namespaced_pod(namespace).items
    assert {p.spec.node_name for p in pods} == {"edge-0"}
    assert all(p.status.phase == "Running" for p in pods)
