"""Operator settings, grouped, each with a docstring; read from the environment once.

Pure data; ``from_env`` reads only the mapping it is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

__all__ = ["Settings"]


@dataclasses.dataclass(frozen=True)
class Settings:
    image: str = "ghcr.io/edgemodel/edgemodel:0.1.0"
    """Image for the runtime and trainer containers, unless an EdgeModel overrides it."""
    broker_image: str = "eclipse-mosquitto:2.0.20"
    """Image of the managed Mosquitto broker."""
    image_pull_policy: str = "IfNotPresent"
    """Pull policy for the images above."""
    mlflow_tracking_uri: str | None = None
    """Cluster default MLflow tracking URI, for EdgeModels that set none."""
    field_manager: str = "edgemodel-operator"
    """Field manager name for server-side apply."""
    resync_seconds: float = 60.0
    """Interval of the resync timer. A tick costs no API call unless the EdgeModel or one of its
    children changed since the last pass, a cooldown or report expiry is due, or the full
    resync interval has passed."""
    full_resync_seconds: float = 600.0
    """Even with nothing changed, a timer reconcile does the full pass at least this often."""
    reconcile_workers: int = 8
    """Threads that run reconciles (of different EdgeModels) at once; a pool of their own."""
    stale_report_seconds: float = 300.0
    """A replica report older than this is ignored when summarising drift."""
    job_ttl_seconds: int = 3600
    """ttlSecondsAfterFinished of retraining Jobs."""
    job_backoff_limit: int = 1
    """backoffLimit of retraining Jobs."""
    job_active_deadline_seconds: int = 1800
    """A retraining Job running longer than this is failed by Kubernetes."""
    window_wait_seconds: float = 300.0
    """How long a retraining Job waits for the runtime to upload a window fresh enough to train on."""
    window_since_slack_seconds: float = 30.0
    """A window uploaded this long before the drift trigger still counts as fresh."""
    history_limit: int = 10
    """How many model versions ``status.model.history`` keeps."""
    max_backoff_seconds: float = 6 * 3600.0
    """Upper bound of the exponential backoff after failed or rejected retrains."""
    rollback_tolerance: float = 0.10
    """A new version whose live RMSE exceeds the previous champion's by this fraction is rolled back."""
    rollback_min_samples: int = 50
    """Labelled predictions the new version needs before it can be rolled back."""
    metrics_port: int = 8000
    """Port of the operator's Prometheus metrics endpoint."""
    health_port: int = 8081
    """Port of the operator's liveness endpoint."""
    bind_address: str = "0.0.0.0"  # noqa: S104 - inside a Pod; tests pass 127.0.0.1  # nosec B104
    """Address the metrics and health endpoints bind to."""
    namespace: str | None = None
    """Watch only this namespace; None watches all."""
    leader_election: bool = True
    """Act only while holding the leader Lease, so replicas never act twice."""
    lease_namespace: str = "default"
    """Namespace of the leader Lease (the operator's own)."""
    lease_name: str = "edgemodel-operator"
    """Name of the leader Lease."""
    lease_duration_seconds: float = 15.0
    """A leader that has not renewed for this long loses the Lease."""
    identity: str = "edgemodel-operator"
    """This replica's identity in the Lease (the Pod name)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from ``EDGEMODEL_*`` variables, e.g. ``EDGEMODEL_RESYNC_SECONDS``."""
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(f"EDGEMODEL_{field.name.upper()}")
            if raw is None:
                continue
            kind = field.type
            if kind in ("int", int):
                values[field.name] = int(raw)
            elif kind in ("float", float):
                values[field.name] = float(raw)
            elif kind in ("bool", bool):
                values[field.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                values[field.name] = raw or None
        if "identity" not in values and env.get("POD_NAME"):
            values["identity"] = env["POD_NAME"]
        if "lease_namespace" not in values and env.get("POD_NAMESPACE"):
            values["lease_namespace"] = env["POD_NAMESPACE"]
        return cls(**values)  # type: ignore[arg-type]
