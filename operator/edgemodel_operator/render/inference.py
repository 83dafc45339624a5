"""The inference stack: runtime ConfigMap, ServiceAccount with its Role, StatefulSet and Service.

A StatefulSet, not a Deployment, because a runtime replica is an MQTT consumer with a
persistent session: its client id is its Pod name, and the broker keeps the readings of
an offline session for it. A StatefulSet's replacement Pod has the same name, so it
resumes that session and receives what arrived while it was down; a Deployment's would
start a new session and those readings would be lost (tests/e2e shows it with a killed
Pod). Rolling updates replace Pods in place for the same reason.

The StatefulSet leaves ``replicas`` unset so the HorizontalPodAutoscaler owns it, and
starts and stops Pods in parallel (no ordinal order is needed). The Pod template carries
a hash of the runtime configuration, so a spec change (new topics, say) rolls the Pods.

Pure functions; no I/O here.
"""

from __future__ import annotations

import json
from typing import Any

from edgemodel import api, contracts
from edgemodel_operator import names
from edgemodel_operator.render import broker, common, tracking
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings

__all__ = ["HTTP_PORT", "objects", "runtime_config"]

HTTP_PORT = 8080
STARTUP_PROBE_FAILURES = 60
"""Five-second startup probes a runtime may fail before kubelet restarts it: five minutes."""
COMPONENT = "inference"
CONFIG_KEY = "runtime.json"
CONFIG_DIR = "/etc/edgemodel"


def tracking_uri(em: EdgeModel, settings: Settings) -> str | None:
    return em.spec.model.tracking_uri or settings.mlflow_tracking_uri


def output_topic(em: EdgeModel) -> str:
    return broker.predictions_topic(em)  # the managed broker's ACL grants this topic


def feature_fields(em: EdgeModel) -> dict[str, Any]:
    """The feature contract both the runtime and the trainer get: features, target, horizon, lags."""
    sensors = em.spec.sensors
    return {
        "features": list(sensors.features),
        "target": sensors.target,
        "horizon": sensors.horizon,
        "lags": sensors.lags,
    }


def runtime_config(em: EdgeModel, settings: Settings) -> contracts.RuntimeConfig:
    """What the runtime Pods run with, rendered from the spec. No credentials in here."""
    host, port, tls = broker.address(em)
    s = em.spec
    return contracts.RuntimeConfig(
        edgemodel=em.key,
        peer_service=names.inference(em.name),
        topics=list(s.sensors.topics),
        **feature_fields(em),
        device_field=s.sensors.device_field,
        timestamp_field=s.sensors.timestamp_field,
        output_topic=output_topic(em),
        drift_threshold=s.drift.threshold,
        drift_window=s.drift.window,
        drift_detector=s.drift.detector,
        drift_detector_delta=s.drift.detector_tuning.delta if s.drift.detector_tuning else None,
        drift_detector_threshold=s.drift.detector_tuning.threshold if s.drift.detector_tuning else None,
        broker_host=host,
        broker_port=port,
        broker_tls=tls,
        mlflow_tracking_uri=tracking_uri(em, settings),
        model_name=em.model_name,
        model_alias=s.model.alias,
        batch_max_size=s.runtime.batch_max_size,
        batch_max_delay_ms=s.runtime.batch_max_delay_ms,
        http_port=HTTP_PORT,
        training_window=s.retraining.training_window,
    )


def _access(em: EdgeModel) -> list[dict[str, Any]]:
    """The runtime may read its EdgeModel, patch its status and list the namespace's EndpointSlices."""
    account = names.runtime_account(em.name)
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": common.metadata(em, account, COMPONENT),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": common.metadata(em, account, COMPONENT),
            "rules": [
                {
                    "apiGroups": [api.GROUP],
                    "resources": [api.PLURAL],
                    "resourceNames": [em.name],
                    "verbs": ["get"],
                },
                {
                    "apiGroups": [api.GROUP],
                    "resources": [f"{api.PLURAL}/status"],
                    "resourceNames": [em.name],
                    "verbs": ["get", "patch"],
                },
                # The replicas sharing the devices (its Service's EndpointSlices). A list cannot be
                # narrowed by name: it reads the namespace's EndpointSlices, which hold Pod names and
                # addresses and no secret.
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": common.metadata(em, account, COMPONENT),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": em.namespace}],
        },
    ]


def credential_env(em: EdgeModel) -> list[dict[str, Any]]:
    secret = broker.credentials_secret(em)
    if secret is None:
        return []
    return [
        {"name": "MQTT_USERNAME", "valueFrom": {"secretKeyRef": {"name": secret, "key": "username"}}},
        {"name": "MQTT_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}},
    ]


def objects(em: EdgeModel, settings: Settings, *, credentials_version: str = "") -> list[dict[str, Any]]:
    """``credentials_version``: the broker credentials Secret's version; a change rolls the Pods,
    which read the credentials at start."""
    config = runtime_config(em, settings)
    config_json = json.dumps(json.loads(config.to_json()), indent=2, sort_keys=True)
    name = names.inference(em.name)
    config_name = names.runtime_config(em.name)
    selector = names.selector(em.name, COMPONENT)
    image = em.spec.runtime.image or settings.image
    env = [
        {"name": "EDGEMODEL_RUNTIME_CONFIG", "value": f"{CONFIG_DIR}/{CONFIG_KEY}"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        *credential_env(em),
        *tracking.env(em),
        *broker.runtime_tls(em)[0],
    ]
    workload = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": common.metadata(em, name, COMPONENT),
        "spec": {
            "selector": {"matchLabels": selector},
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {
                    "labels": names.labels(em.name, COMPONENT),
                    "annotations": {
                        names.ANNOTATION_CONFIG_HASH: common.content_hash(
                            config_json,
                            credential_env(em),
                            tracking.env(em),
                            *([credentials_version] if credentials_version else []),
                        ),
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(HTTP_PORT),
                    },
                },
                "spec": {
                    "serviceAccountName": names.runtime_account(em.name),
                    "securityContext": common.pod_security(),
                    **common.placement(em),
                    "terminationGracePeriodSeconds": 30,
                    "containers": [
                        {
                            "name": "runtime",
                            "image": image,
                            "imagePullPolicy": settings.image_pull_policy,
                            "command": ["edgemodel-runtime"],
                            "args": ["--config", f"{CONFIG_DIR}/{CONFIG_KEY}"],
                            "env": env,
                            "ports": [{"name": "http", "containerPort": HTTP_PORT}],
                            # Starting takes a while on a small node (scikit-learn, MLflow's
                            # client, the model): without this the liveness probe killed the
                            # runtime before it served, on the e2e's real node.
                            "startupProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 5,
                                "failureThreshold": STARTUP_PROBE_FAILURES,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 10,
                                "failureThreshold": 3,
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/readyz", "port": "http"},
                                "periodSeconds": 5,
                            },
                            "resources": common.resources(
                                em,
                                {
                                    "requests": {"cpu": "100m", "memory": "192Mi"},
                                    "limits": {"memory": "768Mi"},
                                },
                            ),
                            "securityContext": common.container_security(),
                            "volumeMounts": [
                                {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                                {"name": "tmp", "mountPath": common.SCRATCH},
                                *tracking.mounts(em),
                                *broker.runtime_tls(em)[2],
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "config", "configMap": {"name": config_name}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "512Mi"}},
                        *tracking.volumes(em),
                        *broker.runtime_tls(em)[1],
                    ],
                },
            },
        },
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": common.metadata(em, config_name, COMPONENT),
            "data": {CONFIG_KEY: config_json},
        },
        *_access(em),
        workload,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": common.metadata(em, name, COMPONENT),
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
            },
        },
    ]
