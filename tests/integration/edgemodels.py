"""Helpers for operator tests: read EdgeModels, wait on conditions, stand in for runtime reports."""

from __future__ import annotations

import datetime
import json
from typing import Any

import kubernetes

from edgemodel import api, contracts
from edgemodel_dev.harness import pods, processes


def spec(**sections: dict[str, Any]) -> dict[str, Any]:
    """A small valid spec on an external broker (so no broker Pods), as most operator tests want.

    Each keyword adds a section or replaces one: ``spec(scaling={"minReplicas": 1, "maxReplicas": 1})``.
    """
    return {
        "sensors": {
            "topics": ["plant/+/telemetry"],
            "features": ["temperature", "humidity"],
            "target": "temperature",
        },
        "drift": {"threshold": 1.0, "window": 100},
        "broker": {"host": "mqtt.site.example", "port": 1883},
        **sections,
    }


def body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": name}, "spec": spec}


def create(
    client: kubernetes.client.ApiClient, namespace: str, name: str, spec: dict[str, Any]
) -> dict[str, Any]:
    return kubernetes.client.CustomObjectsApi(client).create_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, body(name, spec)
    )


def get(client: kubernetes.client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return kubernetes.client.CustomObjectsApi(client).get_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, name
    )


def status(client: kubernetes.client.ApiClient, namespace: str, name: str) -> api.EdgeModelStatus:
    return api.EdgeModelStatus.model_validate(get(client, namespace, name).get("status") or {})


def condition(st: api.EdgeModelStatus, type_: str) -> api.Condition | None:
    return next((c for c in st.conditions if c.type == type_), None)


def wait_condition(
    client: kubernetes.client.ApiClient,
    namespace: str,
    name: str,
    type_: str,
    value: str,
    *,
    timeout: float = 60,
) -> api.EdgeModelStatus:
    seen: list[api.EdgeModelStatus] = []

    def check() -> bool:
        st = status(client, namespace, name)
        seen.append(st)
        cond = condition(st, type_)
        return cond is not None and cond.status == value

    try:
        processes.wait_until(
            check, timeout=timeout, interval=0.2, what=f"{type_}={value} on {namespace}/{name}"
        )
    except TimeoutError as exc:
        last = seen[-1].model_dump(mode="json", by_alias=True) if seen else None
        raise TimeoutError(f"{exc}; last status: {json.dumps(last)[:3000]}") from exc
    return seen[-1]


def jobs(client: kubernetes.client.ApiClient, namespace: str, name: str) -> list[Any]:
    items = (
        kubernetes.client.BatchV1Api(client)
        .list_namespaced_job(namespace, label_selector=f"edgeml.dev/edgemodel={name}")
        .items
    )
    return sorted(items, key=lambda j: j.metadata.name)


def inference_pods(client: kubernetes.client.ApiClient, namespace: str, name: str) -> list[str]:
    items = (
        kubernetes.client.CoreV1Api(client)
        .list_namespaced_pod(
            namespace, label_selector=f"edgeml.dev/edgemodel={name},app.kubernetes.io/component=inference"
        )
        .items
    )
    return sorted(p.metadata.name for p in items if p.metadata.deletion_timestamp is None)


def report(
    client: kubernetes.client.ApiClient,
    namespace: str,
    name: str,
    pod: str,
    *,
    rmse: float,
    samples: int,
    detected: bool,
    version: str | None,
    reason: str | None = None,
) -> None:
    """Write one replica's drift entry exactly as a runtime Pod does (merge patch, status subresource)."""
    entry = api.ReplicaDriftEntry(
        rmse=rmse,
        samples=samples,
        detected=detected,
        report_time=datetime.datetime.now(datetime.UTC),
        model_version=version,
        reason=reason or ("Threshold" if detected else None),
    )
    kubernetes.client.CustomObjectsApi(client).patch_namespaced_custom_object_status(
        api.GROUP, api.VERSION, namespace, api.PLURAL, name, contracts.replica_drift_patch(pod, entry)
    )


def finish_job(
    client: kubernetes.client.ApiClient,
    namespace: str,
    job: str,
    result: contracts.TrainingResult,
    exit_code: int,
) -> None:
    """Record on the Job's Pod what a trainer container wrote: its exit code and result."""
    pod = pods.job_pod(client, namespace, job)
    pods.complete_pod(client, namespace, pod, exit_code=exit_code, message=result.to_termination_message())


def training_result(outcome: str, version: str | None, **kw: Any) -> contracts.TrainingResult:
    """A trainer's result with test defaults for the fields a test does not care about."""
    return contracts.TrainingResult(
        outcome=outcome,
        reason=kw.pop("reason", f"{outcome}: test"),
        model_name=kw.pop("model_name", "m"),
        version=version,
        **kw,
    )


def serving(client: kubernetes.client.ApiClient, namespace: str, name: str, version: str = "1") -> str:
    """Finish the bootstrap Job with a first version and report that the replica serves it."""
    job = f"{name}-bootstrap-1"
    processes.wait_until(
        lambda: job in [j.metadata.name for j in jobs(client, namespace, name)],
        timeout=30,
        what="the bootstrap Job",
    )
    finish_job(client, namespace, job, training_result("Promoted", version, champion_version=version), 0)
    processes.wait_until(lambda: inference_pods(client, namespace, name), timeout=60, what="an inference Pod")
    pod = inference_pods(client, namespace, name)[0]
    report(client, namespace, name, pod, rmse=0.2, samples=100, detected=False, version=version)
    wait_condition(client, namespace, name, "Ready", "True")
    wait_condition(client, namespace, name, "Retraining", "False")
    return pod
