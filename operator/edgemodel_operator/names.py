"""Deterministic names and labels of everything an EdgeModel owns.

Pure functions; no I/O here.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "LABEL_COMPONENT",
    "LABEL_EDGEMODEL",
    "MANAGED_BY",
    "broker",
    "broker_credentials",
    "broker_data",
    "inference",
    "job",
    "labels",
    "runtime_config",
    "selector",
]

MANAGED_BY = "edgemodel-operator"
LABEL_EDGEMODEL = "edgeml.dev/edgemodel"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_JOB_KIND = "edgeml.dev/job-kind"
LABEL_DEVICE_OF = "edgeml.dev/device-of"
"""A Pod labelled ``edgeml.dev/device-of: <edgemodel>`` is a device of that EdgeModel: the managed
broker's NetworkPolicy admits it."""
ANNOTATION_CONFIG_HASH = "edgeml.dev/config-hash"
ANNOTATION_RETRY = "edgeml.dev/retry"
ANNOTATION_TRIGGER = "edgeml.dev/trigger"
MAX_NAME = 63
TRACKING_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
"""The credential keys of a tracking Secret; each reaches a container as the variable of its name."""


def _fit(name: str, limit: int = MAX_NAME) -> str:
    """Keep ``name`` within ``limit`` characters, with a hash so shortened names stay unique."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-.')}-{digest}"


def broker(edgemodel: str) -> str:
    return _fit(f"{edgemodel}-broker")


def broker_credentials(edgemodel: str) -> str:
    return _fit(f"{edgemodel}-broker-credentials", 253)


def broker_config(edgemodel: str) -> str:
    return _fit(f"{edgemodel}-broker-config", 253)


def broker_data(edgemodel: str) -> str:
    return _fit(f"{edgemodel}-broker-data", 253)


def inference(edgemodel: str) -> str:
    return _fit(f"{edgemodel}-inference")


def runtime_config(edgemodel: str) -> str:
    return _fit(f"{edgemodel}-runtime-config", 253)


def runtime_account(edgemodel: str) -> str:
    return _fit(f"{edgemodel}-runtime", 253)


def job(edgemodel: str, kind: str, number: int | str) -> str:
    """A Job name, e.g. ``line1-retrain-3``; fits the 63 characters a label value allows."""
    return _fit(f"{edgemodel}-{kind}-{number}")


def schedule(edgemodel: str) -> str:
    return _fit(f"{edgemodel}-scheduled-retrain", 52)  # CronJob names leave room for Job suffixes


def selector(edgemodel: str, component: str) -> dict[str, str]:
    """The labels a workload selects its Pods by; never change them for an existing object."""
    return {LABEL_EDGEMODEL: edgemodel, LABEL_COMPONENT: component}


def labels(edgemodel: str, component: str) -> dict[str, str]:
    """Recommended labels for an object this operator manages."""
    return {
        "app.kubernetes.io/name": "edgemodel",
        "app.kubernetes.io/instance": edgemodel,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "edgemodel",
        **selector(edgemodel, component),
    }
