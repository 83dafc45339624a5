"""The operator on the real control plane, under its own RBAC rules, with the real trainer.

One EdgeModel's life: applied, reconciled into its stack, bootstrapped to a first model
by a real trainer run, drifted, retrained exactly once despite repeated reports, and
promoted. The trainer Jobs' Pods are run as local processes (kwok runs nothing).
"""

from __future__ import annotations

import pathlib

import kubernetes
import pytest
from mlflow.tracking import MlflowClient

from edgemodel import api, contracts
from edgemodel_dev.harness import pods, processes
from edgemodel_runtime import payloads, windowlog
from tests import data
from tests.integration import edgemodels

pytestmark = [pytest.mark.cluster, pytest.mark.mlflow]

NAME = "line1"


def _spec(bootstrap_csv: pathlib.Path, **retraining: int) -> dict:
    return {
        "sensors": {
            "topics": ["plant/line1/+/telemetry"],
            "features": ["temperature", "humidity"],
            "target": "temperature",
        },
        "drift": {"threshold": 1.5, "window": 100},
        "scaling": {"minReplicas": 1, "maxReplicas": 3},
        "retraining": {"cooldownSeconds": 300, **retraining},
        "model": {"algorithm": "ridge", "bootstrapData": str(bootstrap_csv)},
    }


def _upload_window(uri: str, model_name: str, edgemodel: str, rows: list[dict]) -> None:
    """What a drifted runtime replica does before it reports: log its window to MLflow."""
    readings = [
        payloads.Reading(
            str(r["device"]),
            float(r["ts"]),
            {"temperature": float(r["temperature"]), "humidity": float(r["humidity"])},
        )
        for r in rows
    ]
    windowlog.upload(
        MlflowClient(uri),
        readings,
        fields=["temperature", "humidity"],
        model_name=model_name,
        edgemodel=edgemodel,
        pod="line1-inference-test",
        reason="drift",
        model_version="1",
    )


def test_edgemodel_lifecycle(cluster, api_client, namespace, operators, mlflow_server, unique_name, tmp_path):
    op = operators()
    model_name = f"{unique_name}-line1"
    csv = data.write_csv(tmp_path / "history.csv", data.plant_readings(n=300))
    spec = _spec(csv)
    spec["model"]["name"] = model_name
    edgemodels.create(api_client, namespace, NAME, spec)

    # Every child exists with the right fields.
    apps = kubernetes.client.AppsV1Api(api_client)
    processes.wait_until(
        lambda: (
            apps.read_namespaced_stateful_set_status(f"{NAME}-inference", namespace).status.ready_replicas
            == 1
        ),
        timeout=60,
        what="the inference StatefulSet",
    )
    dep = apps.read_namespaced_stateful_set(f"{NAME}-inference", namespace)
    container = dep.spec.template.spec.containers[0]
    assert container.command == ["edgemodel-runtime"]
    assert container.liveness_probe.http_get.path == "/healthz"
    assert container.readiness_probe.http_get.path == "/readyz"
    assert container.security_context.read_only_root_filesystem is True
    assert dep.spec.template.spec.security_context.run_as_non_root is True
    assert dep.metadata.owner_references[0].kind == api.KIND
    env = {e.name: e for e in container.env}
    assert env["MQTT_PASSWORD"].value_from.secret_key_ref.name == f"{NAME}-broker-credentials"
    # The Deployment's replica count belongs to the HPA: our field manager never sets it.
    ours = [m for m in dep.metadata.managed_fields if m.manager == "edgemodel-operator"]
    assert ours and all("f:replicas" not in str(m.fields_v1.get("f:spec", {})) for m in ours)
    hpa = kubernetes.client.AutoscalingV2Api(api_client).read_namespaced_horizontal_pod_autoscaler(
        f"{NAME}-inference", namespace
    )
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (1, 3)
    core = kubernetes.client.CoreV1Api(api_client)
    config = core.read_namespaced_config_map(f"{NAME}-runtime-config", namespace).data["runtime.json"]
    runtime_config = contracts.RuntimeConfig.model_validate_json(config)
    assert runtime_config.topics == ["plant/line1/+/telemetry"]
    assert runtime_config.broker_host == f"{NAME}-broker.{namespace}.svc"
    assert runtime_config.mlflow_tracking_uri == mlflow_server.uri
    assert "password" not in config.lower()
    broker_conf = core.read_namespaced_config_map(f"{NAME}-broker-config", namespace).data["mosquitto.conf"]
    assert "allow_anonymous false" in broker_conf

    # No model yet: not Ready, and a bootstrap Job trains the first version.
    st = edgemodels.wait_condition(api_client, namespace, NAME, "Ready", "False")
    assert edgemodels.condition(st, "Ready").reason == "NoModel"
    processes.wait_until(
        lambda: edgemodels.jobs(api_client, namespace, NAME), timeout=30, what="bootstrap Job"
    )
    (job,) = edgemodels.jobs(api_client, namespace, NAME)
    assert job.metadata.name == f"{NAME}-bootstrap-1"
    assert job.spec.backoff_limit is not None and job.spec.ttl_seconds_after_finished is not None
    code, message = pods.run_job(api_client, namespace, job.metadata.name, tmp_path / "jobs")
    assert code == 0, message
    st = edgemodels.wait_condition(api_client, namespace, NAME, "Ready", "True")
    assert st.model.version == "1"
    assert st.model.history[-1].outcome == "Promoted"

    # A replica reports drift: exactly one retraining Job, Drifted and Retraining True.
    (pod,) = edgemodels.inference_pods(api_client, namespace, NAME)
    drifted = data.plant_readings(n=300, offset=4.0, seed=11, start_ts=1_700_100_000.0)
    _upload_window(mlflow_server.uri, model_name, f"{namespace}/{NAME}", drifted)
    edgemodels.report(api_client, namespace, NAME, pod, rmse=4.2, samples=100, detected=True, version="1")
    processes.wait_until(
        lambda: len(edgemodels.jobs(api_client, namespace, NAME)) == 2, timeout=10, what="a retraining Job"
    )
    st = edgemodels.wait_condition(api_client, namespace, NAME, "Retraining", "True")
    assert edgemodels.condition(st, "Drifted").status == "True"
    assert st.drift.rmse == pytest.approx(4.2)
    assert st.retraining.last_job == f"{NAME}-retrain-2"

    # Drift reported again inside the cooldown: no new Job. (A report that changes no drift
    # state wakes no pass; the second one comes from the change detector, which does.)
    edgemodels.report(api_client, namespace, NAME, pod, rmse=4.5, samples=100, detected=True, version="1")
    edgemodels.report(
        api_client,
        namespace,
        NAME,
        pod,
        rmse=4.6,
        samples=100,
        detected=True,
        version="1",
        reason="ChangeDetector",
    )
    op_metrics_before = op.metrics_text()
    processes.wait_until(
        lambda: edgemodels.status(api_client, namespace, NAME).drift.rmse == pytest.approx(4.6),
        timeout=30,
        what="the operator to see the new report",
    )
    assert [j.metadata.name for j in edgemodels.jobs(api_client, namespace, NAME)] == [
        f"{NAME}-bootstrap-1",
        f"{NAME}-retrain-2",
    ]

    # The retraining Job runs the real trainer on the drifted window and promotes version 2.
    code, message = pods.run_job(api_client, namespace, f"{NAME}-retrain-2", tmp_path / "jobs")
    result = contracts.TrainingResult.from_termination_message(message)
    assert (code, result.outcome, result.version) == (0, "Promoted", "2"), message
    st = edgemodels.wait_condition(api_client, namespace, NAME, "Retraining", "False")
    assert edgemodels.condition(st, "Retraining").reason == "Promoted"
    assert [h.outcome for h in st.model.history] == ["Promoted", "Promoted"]
    assert st.model.history[-1].previous_version == "1"
    assert st.retraining.count == 2

    # The replica swaps to version 2 and its window refills: the status says version 2 serves.
    edgemodels.report(api_client, namespace, NAME, pod, rmse=0.3, samples=100, detected=False, version="2")
    processes.wait_until(
        lambda: edgemodels.status(api_client, namespace, NAME).model.version == "2",
        timeout=30,
        what="version 2 serving",
    )
    st = edgemodels.wait_condition(api_client, namespace, NAME, "Drifted", "False")

    # Events were recorded for what happened, and metrics counted reconciles.
    reasons = {
        e.reason for e in core.list_namespaced_event(namespace).items if e.involved_object.kind == api.KIND
    }
    assert {"Created", "RetrainingStarted", "ModelPromoted", "DriftDetected"} <= reasons
    assert 'edgemodel_operator_reconciles_total{result="ok"}' in op_metrics_before
    assert 'edgemodel_operator_jobs_started_total{kind="retrain"} 1.0' in op.metrics_text()
