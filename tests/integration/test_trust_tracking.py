"""Issue 12, item 5, on the real API server: MLflow credentials reach Pods only from their Secret.

The operator runs under the chart's RBAC rules. An EdgeModel names a tracking Secret
(``spec.model.trackingSecretRef``): the runtime's StatefulSet, the trainer's Job and the
Pods the controllers make from them take the credentials by ``secretKeyRef``, and no
ConfigMap, argument, status, Event or operator log line holds a value. A Secret without
the label ``edgeml.dev/use=tracking`` is refused with a condition and an Event, and nothing
runs. The registered model name defaults to ``<namespace>-<name>``.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import kubernetes
import pytest

from edgemodel_dev.harness import processes
from tests.integration import edgemodels

pytestmark = pytest.mark.cluster

KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def _secret(core, namespace: str, name: str, labels: dict[str, str]) -> list[str]:
    """A tracking Secret with fresh random values; returns the values, to look for later."""
    values = {
        "MLFLOW_TRACKING_USERNAME": f"user-{secrets.token_hex(8)}",
        "MLFLOW_TRACKING_PASSWORD": f"pw-{secrets.token_hex(16)}",
        "ca.crt": f"-----BEGIN CERTIFICATE-----\n{secrets.token_hex(24)}\n-----END CERTIFICATE-----\n",
    }
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": name, "labels": labels}, "stringData": values}
    )
    return [
        values["MLFLOW_TRACKING_USERNAME"],
        values["MLFLOW_TRACKING_PASSWORD"],
        values["ca.crt"].split("\n")[1],
    ]


def _env_refs(containers: list[Any]) -> dict[str, Any]:
    """The tracking variables of the runtime or trainer container, by name."""
    (container,) = [c for c in containers if c.name in ("runtime", "trainer")]
    return {e.name: e for e in container.env or [] if e.name in KEYS}


def _assert_by_secret_key_ref(containers: list[Any], secret: str) -> None:
    env = _env_refs(containers)
    assert set(env) == set(KEYS)
    for key, var in env.items():
        assert var.value is None, f"{key} has a literal value"
        ref = var.value_from.secret_key_ref
        assert (ref.name, ref.key, ref.optional) == (secret, key, True)


def _everything_readable(api_client, namespace: str, name: str, operator_log: str) -> str:
    """Every place a credential must never be: ConfigMaps, argv, the EdgeModel (status too), Events, logs."""
    core = kubernetes.client.CoreV1Api(api_client)
    apps = kubernetes.client.AppsV1Api(api_client)
    batch = kubernetes.client.BatchV1Api(api_client)
    ser = api_client.sanitize_for_serialization
    argv = [
        [c.command, c.args]
        for pod_spec in [
            *(s.spec.template.spec for s in apps.list_namespaced_stateful_set(namespace).items),
            *(j.spec.template.spec for j in batch.list_namespaced_job(namespace).items),
            *(p.spec for p in core.list_namespaced_pod(namespace).items),
        ]
        for c in [*(pod_spec.containers or []), *(pod_spec.init_containers or [])]
    ]
    return json.dumps(
        {
            "configmaps": [ser(c) for c in core.list_namespaced_config_map(namespace).items],
            "argv": argv,
            "edgemodel": edgemodels.get(api_client, namespace, name),
            "events": [ser(e) for e in core.list_namespaced_event(namespace).items],
            "log": operator_log,
        }
    )


def test_tracking_credentials_reach_pods_only_by_secret_key_ref(api_client, namespace, operators):
    core = kubernetes.client.CoreV1Api(api_client)
    apps = kubernetes.client.AppsV1Api(api_client)
    batch = kubernetes.client.BatchV1Api(api_client)
    values = _secret(core, namespace, "mlflow-creds", {"edgeml.dev/use": "tracking"})
    operator = operators()
    edgemodels.create(
        api_client, namespace, "em", edgemodels.spec(model={"trackingSecretRef": {"name": "mlflow-creds"}})
    )

    # No model serves yet, so the operator starts a bootstrap Job beside the StatefulSet.
    processes.wait_until(
        lambda: (
            batch.list_namespaced_job(namespace, label_selector="edgeml.dev/edgemodel=em").items
            and apps.list_namespaced_stateful_set(namespace, label_selector="edgeml.dev/edgemodel=em").items
        ),
        timeout=60,
        what="the inference StatefulSet and the bootstrap Job",
    )
    sts = apps.read_namespaced_stateful_set("em-inference", namespace)
    (job,) = batch.list_namespaced_job(namespace, label_selector="edgeml.dev/edgemodel=em").items
    _assert_by_secret_key_ref(sts.spec.template.spec.containers, "mlflow-creds")
    _assert_by_secret_key_ref(job.spec.template.spec.containers, "mlflow-creds")
    for pod_spec in (sts.spec.template.spec, job.spec.template.spec):
        (volume,) = [v for v in pod_spec.volumes if v.secret is not None]
        assert volume.secret.secret_name == "mlflow-creds" and volume.secret.optional
        assert [(i.key, i.path) for i in volume.secret.items] == [("ca.crt", "ca.crt")]

    # The Pods the controllers made from them, as the kubelet would get them.
    def pods() -> list[Any]:
        return core.list_namespaced_pod(namespace, label_selector="edgeml.dev/edgemodel=em").items

    processes.wait_until(
        lambda: (
            {p.metadata.labels.get("app.kubernetes.io/component") for p in pods()} >= {"inference", "trainer"}
        ),
        timeout=60,
        what="an inference Pod and a trainer Pod",
    )
    for pod in pods():
        _assert_by_secret_key_ref(pod.spec.containers, "mlflow-creds")

    # The registered model is this namespace's: <namespace>-<name>, for the runtime and the trainer.
    config = json.loads(core.read_namespaced_config_map("em-runtime-config", namespace).data["runtime.json"])
    assert config["modelName"] == f"{namespace}-em"
    args = job.spec.template.spec.containers[0].args
    assert args[args.index("--model-name") + 1] == f"{namespace}-em"

    readable = _everything_readable(api_client, namespace, "em", operator.log_text())
    assert "mlflow-creds" in readable  # the scan does see the references
    for value in values:
        assert value not in readable


def test_a_tracking_secret_without_the_opt_in_label_is_refused(api_client, namespace, operators):
    core = kubernetes.client.CoreV1Api(api_client)
    values = _secret(core, namespace, "someone-elses", {"edgeml.dev/use": "broker"})
    operator = operators(EDGEMODEL_RESYNC_SECONDS="1")
    edgemodels.create(
        api_client, namespace, "em", edgemodels.spec(model={"trackingSecretRef": {"name": "someone-elses"}})
    )

    def degraded() -> dict[str, Any]:
        status = edgemodels.get(api_client, namespace, "em").get("status") or {}
        return next((c for c in status.get("conditions") or [] if c.get("type") == "Degraded"), {})

    processes.wait_until(
        lambda: degraded().get("reason") == "SecretNotOptedIn", timeout=30, what="Degraded=SecretNotOptedIn"
    )
    assert degraded()["status"] == "True"
    assert "someone-elses" in degraded()["message"] and "edgeml.dev/use=tracking" in degraded()["message"]

    def warnings() -> list[Any]:
        return [
            e
            for e in core.list_namespaced_event(namespace).items
            if e.reason == "SecretNotOptedIn" and e.involved_object.name == "em" and e.type == "Warning"
        ]

    # The Event is posted after the status write that set the condition: wait for it.
    processes.wait_until(lambda: bool(warnings()), timeout=30, what="a SecretNotOptedIn Warning Event")
    assert len(warnings()) == 1
    # Nothing runs with it: no workload, Job or Pod.
    apps = kubernetes.client.AppsV1Api(api_client)
    batch = kubernetes.client.BatchV1Api(api_client)
    assert apps.list_namespaced_stateful_set(namespace).items == []
    assert batch.list_namespaced_job(namespace).items == []
    assert core.list_namespaced_pod(namespace).items == []
    readable = _everything_readable(api_client, namespace, "em", operator.log_text())
    for value in values:
        assert value not in readable

    # Opted in, but holding no credentials MLflow reads: refused again, for that reason.
    core.replace_namespaced_secret(
        "someone-elses",
        namespace,
        {
            "metadata": {"name": "someone-elses", "labels": {"edgeml.dev/use": "tracking"}},
            "stringData": {"ca.crt": "x"},
        },
    )
    processes.wait_until(
        lambda: degraded().get("reason") == "SecretInvalid", timeout=30, what="Degraded=SecretInvalid"
    )
    assert "MLFLOW_TRACKING_TOKEN" in degraded()["message"]
    assert apps.list_namespaced_stateful_set(namespace).items == []
