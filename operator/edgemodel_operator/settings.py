"""Operator settings, each with a docstring and its range; loaded once at start.

:meth:`Settings.load` reads them with pydantic-settings (:mod:`edgemodel.settingsources`),
highest precedence first: flags, ``EDGEMODEL_<FIELD>`` environment variables (e.g.
``EDGEMODEL_RESYNC_SECONDS``; an empty variable counts as unset), a JSON or YAML file
(``EDGEMODEL_SETTINGS_FILE``), then the defaults below. ``identity`` and
``lease_namespace`` default to ``POD_NAME`` and ``POD_NAMESPACE``. A bad setting fails at
start with :class:`SettingsError` naming it. ``Settings(...)`` itself reads nothing: tests
and embedders pass settings explicitly.

Pure data; ``load`` reads only the mapping and the file it is given.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any, Literal

import pydantic
from pydantic import Field

from edgemodel import settingsources
from edgemodel.settingsources import SettingsError

__all__ = ["ENV_FILE", "Settings", "SettingsError"]

ENV_FILE = "EDGEMODEL_SETTINGS_FILE"
"""Environment variable naming the settings file."""


class Settings(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    image: str = Field(default="ghcr.io/edgemodel/edgemodel:0.1.0", min_length=1)
    """Image for the runtime and trainer containers, unless an EdgeModel overrides it."""
    allowed_image_repositories: tuple[str, ...] = ()
    """Repositories (no tag) an EdgeModel's ``spec.runtime.image`` may come from, besides the
    repository of ``image``; an entry ending in ``/`` allows every repository under it."""
    broker_image: str = Field(default="eclipse-mosquitto:2.0.20", min_length=1)
    """Image of the managed Mosquitto broker."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Pull policy for the images above."""
    network_policies: bool = True
    """Render a NetworkPolicy for each EdgeModel's runtime and managed broker (ingress only). Off:
    the operator renders none and deletes those it made."""
    runtime_ingress_namespaces: tuple[str, ...] = ()
    """Namespaces (besides the EdgeModel's own) whose Pods may reach the runtime's HTTP port, e.g.
    where Prometheus runs."""
    mlflow_tracking_uri: str | None = None
    """Cluster default MLflow tracking URI, for EdgeModels that set none."""
    field_manager: str = "edgemodel-operator"
    """Field manager name for server-side apply."""
    resync_seconds: float = Field(default=60.0, gt=0)
    """Interval of the resync timer. A tick costs no API call unless the EdgeModel or one of its
    children changed since the last pass, a cooldown or report expiry is due, or the full
    resync interval has passed."""
    full_resync_seconds: float = Field(default=600.0, gt=0)
    """Even with nothing changed, a timer reconcile does the full pass at least this often."""
    reconcile_workers: int = Field(default=8, ge=1, le=256)
    """Threads that run reconciles (of different EdgeModels) at once; a pool of their own."""
    stale_report_seconds: float = Field(default=300.0, gt=0)
    """A replica report older than this is ignored when summarising drift."""
    report_skew_seconds: float = Field(default=30.0, ge=0)
    """A replica report whose ``reportTime`` is further ahead than this is ignored (and counted)."""
    job_ttl_seconds: int = Field(default=3600, ge=0)
    """ttlSecondsAfterFinished of retraining Jobs."""
    job_backoff_limit: int = Field(default=1, ge=0)
    """backoffLimit of retraining Jobs."""
    job_active_deadline_seconds: int = Field(default=1800, ge=1)
    """A retraining Job running longer than this is failed by Kubernetes."""
    window_wait_seconds: float = Field(default=300.0, ge=0)
    """How long a retraining Job waits for the runtime to upload a window fresh enough to train on."""
    window_since_slack_seconds: float = Field(default=30.0, ge=0)
    """A window uploaded this long before the drift trigger still counts as fresh."""
    history_limit: int = Field(default=10, ge=1)
    """How many model versions ``status.model.history`` keeps."""
    max_backoff_seconds: float = Field(default=6 * 3600.0, gt=0)
    """Upper bound of the exponential backoff after failed or rejected retrains."""
    rollback_tolerance: float = Field(default=0.10, ge=0)
    """A new version whose live RMSE exceeds the previous champion's by this fraction is rolled back."""
    rollback_min_samples: int = Field(default=50, ge=1)
    """Labelled predictions the new version needs before it can be rolled back."""
    metrics_port: int = Field(default=8000, ge=1, le=65535)
    """Port of the operator's Prometheus metrics endpoint."""
    health_port: int = Field(default=8081, ge=1, le=65535)
    """Port of the operator's liveness endpoint."""
    bind_address: str = "0.0.0.0"  # noqa: S104 - inside a Pod; tests pass 127.0.0.1  # nosec B104
    """Address the metrics and health endpoints bind to."""
    namespace: str | None = None
    """Watch only this namespace; None watches all."""
    leader_election: bool = True
    """Act only while holding the leader Lease, so replicas never act twice."""
    lease_namespace: str = Field(default="default", min_length=1)
    """Namespace of the leader Lease (the operator's own)."""
    lease_name: str = Field(default="edgemodel-operator", min_length=1)
    """Name of the leader Lease."""
    lease_duration_seconds: float = Field(default=15.0, gt=0)
    """A leader that has not renewed for this long loses the Lease."""
    identity: str = Field(default="edgemodel-operator", min_length=1)
    """This replica's identity in the Lease (the Pod name)."""
    shards: int = Field(default=1, ge=1, le=64)
    """Shards the EdgeModels are split into by a hash of their UID, each with its own Lease
    (``<lease_name>-shard-<i>``); a replica acts only on the shard it holds. 1: one Lease named
    ``lease_name``, held by one replica that acts on every EdgeModel. More than 1 needs
    ``leader_election``."""
    shard_takeover_seconds: float = Field(default=30.0, ge=0)
    """A replica that already holds a shard takes another, free or expired, only after it has
    stayed so this much longer (a replica holding none takes it at once): a standby or a
    starting replica comes first, and a shard whose replica is gone is still served."""

    @pydantic.model_validator(mode="after")
    def _shards_need_leases(self) -> Settings:
        if self.shards > 1 and not self.leader_election:
            raise ValueError("shards > 1 needs leader_election: each shard is held through its Lease")
        return self

    @classmethod
    def load(
        cls,
        *,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        file: str | pathlib.Path | None = None,
    ) -> Settings:
        """Settings from flags > environment > file (``file`` or ``$EDGEMODEL_SETTINGS_FILE``) > defaults."""
        env = env or {}
        derived = {
            "identity": env.get("POD_NAME") or None,
            "lease_namespace": env.get("POD_NAMESPACE") or None,
        }
        return settingsources.load(
            cls,
            flags=flags,
            env=env,
            file=file or env.get(ENV_FILE) or None,
            extra={k: v for k, v in derived.items() if v},
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Settings from ``EDGEMODEL_*`` variables (and the file they name); no flags."""
        return cls.load(env=env)
