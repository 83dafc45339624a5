"""Settings of one runtime process, from flags, the environment and a file, on pydantic-settings.

Precedence, highest first (:mod:`edgemodel.settingsources`): command-line flags,
``EDGEMODEL_<FIELD>`` environment variables (an empty one counts as unset), the JSON or
YAML config file (``--config`` or ``EDGEMODEL_RUNTIME_CONFIG``; the operator's
:class:`edgemodel.contracts.RuntimeConfig`), then the defaults. File keys may be camelCase
(as the operator writes them) or snake_case. Lists (``topics``, ``features``) are
comma-separated in the environment and on the command line. The ranges are stated by the
models (``Field(gt=0)``...); a bad setting raises :class:`ConfigError` naming it.

Settings the operator does not render (:class:`Options`: partitioning, HTTP bind
address, TLS files, ...) are read the same way. Secrets and identity come only from the
environment: ``MQTT_USERNAME``, ``MQTT_PASSWORD``, ``POD_NAME``, ``POD_NAMESPACE``.

Reads files and the environment it is given; nothing else.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping

import pydantic
from pydantic.alias_generators import to_camel

from edgemodel import contracts, features, settingsources
from edgemodel_runtime import drift, partition, payloads
from edgemodel_runtime.partition import Mode as PartitionMode

__all__ = ["ENV_CONFIG", "ConfigError", "Options", "Settings", "add_arguments", "load"]

ENV_CONFIG = "EDGEMODEL_RUNTIME_CONFIG"
ENV_PREFIX = "EDGEMODEL_"
_LIST_FIELDS = frozenset({"topics", "features"})


class ConfigError(settingsources.SettingsError):
    """The settings are incomplete or invalid; the message says which and why."""


class Options(pydantic.BaseModel):
    """Runtime settings beyond the operator's contract."""

    model_config = pydantic.ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    http_bind: str = "0.0.0.0"  # noqa: S104 - a Pod serves its probes and metrics on all interfaces  # nosec B104
    """Address the HTTP server binds; tests use 127.0.0.1."""
    partition_count: int = pydantic.Field(default=1, ge=1, le=10_000)
    """Static hash partitioning over this many replicas when > 1. With 1 (the default),
    replicas that report to an EdgeModel share devices dynamically (rendezvous hashing
    over the live replicas); standalone, one replica handles every device."""
    partition_index: int | None = pydantic.Field(default=None, ge=0)
    """This replica's static partition; defaults to the StatefulSet ordinal of POD_NAME."""
    membership_refresh_seconds: float = pydantic.Field(default=2.0, gt=0)
    """Dynamic partitioning: how often the live replicas are read from the EdgeModel."""
    member_ttl_seconds: float | None = pydantic.Field(default=None, gt=0)
    """Dynamic partitioning: a replica whose last report is older is not a member;
    defaults to 3 x reportIntervalSeconds."""
    bootstrap_upload_seconds: float = pydantic.Field(default=60.0, gt=0)
    """Without a model: the window is uploaded (reason ``bootstrap``) at most this often."""
    fresh_window_max_seconds: float = pydantic.Field(default=120.0, gt=0)
    """After a detection, the window is logged again once it holds enough readings of the
    changed plant, or after this many seconds, whichever comes first."""
    client_id: str | None = None
    """MQTT client id; defaults to ``edgemodel-<POD_NAME>``, or to the host name."""
    session_expiry_seconds: int = pydantic.Field(default=3600, ge=0)
    """How long the broker keeps this client's session and queued messages while away."""
    broker_ca_file: str | None = None
    broker_cert_file: str | None = None
    broker_key_file: str | None = None
    max_payload_bytes: int = pydantic.Field(default=payloads.MAX_PAYLOAD_BYTES, ge=64)
    max_future_skew_seconds: float = pydantic.Field(default=payloads.MAX_FUTURE_SECONDS, ge=0)
    """A reading whose timestamp is further ahead of its receive time is refused
    (``future_timestamp``), so one device's bad clock cannot silence it."""
    queue_capacity: int = pydantic.Field(default=10_000, ge=1)
    """Readings held in memory; beyond this, readings are no longer acknowledged, so the
    broker stops sending and keeps them (back pressure)."""
    output_qos: int = pydantic.Field(default=1, ge=0, le=1)
    """QoS of the published predictions: 1 (at least once, the default) or 0 (at most once:
    no PUBACK to wait for, less work for the runtime and the broker, but a prediction in
    flight when the connection drops is lost)."""
    max_devices: int = pydantic.Field(default=100_000, ge=1)
    """Devices whose history is kept; the least recently seen is forgotten beyond this."""
    log_level: str = "INFO"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a runtime process runs with."""

    config: contracts.RuntimeConfig
    options: Options = dataclasses.field(default_factory=Options)
    mqtt_username: str | None = None
    mqtt_password: str | None = dataclasses.field(default=None, repr=False)
    pod_name: str | None = None
    pod_namespace: str | None = None

    @property
    def spec(self) -> features.FeatureSpec:
        c = self.config
        return features.FeatureSpec(
            features=tuple(c.features), target=c.target, horizon=c.horizon, lags=c.lags
        )

    @property
    def schema(self) -> payloads.Schema:
        c = self.config
        return payloads.Schema(
            fields=self.spec.fields,
            topics=tuple(c.topics),
            device_field=c.device_field,
            timestamp_field=c.timestamp_field,
            max_bytes=self.options.max_payload_bytes,
            max_future_seconds=self.options.max_future_skew_seconds,
        )

    def detector_tuning(self, calibration: contracts.DetectorCalibration | None) -> drift.Tuning:
        """The change detector's tuning for a model with ``calibration``: hand-set values win."""
        c = self.config
        return drift.resolve_tuning(
            calibration=calibration,
            drift_threshold=c.drift_threshold,
            delta=c.drift_detector_delta,
            threshold=c.drift_detector_threshold,
        )

    @property
    def partition(self) -> partition.Partition:
        index = self.options.partition_index
        if index is None:
            index = partition.index_from_pod_name(self.pod_name) if self.options.partition_count > 1 else 0
        if index is None:
            raise ConfigError(
                "partitionCount > 1 needs partitionIndex, or a POD_NAME ending in a StatefulSet ordinal"
            )
        return partition.Partition(count=self.options.partition_count, index=index)

    @property
    def partition_mode(self) -> PartitionMode:
        """``static`` if partitionCount > 1, else ``dynamic`` when reporting to an EdgeModel, else ``all``."""
        if self.options.partition_count > 1:
            return "static"
        return "dynamic" if self.reports_to_kubernetes else "all"

    @property
    def member_ttl(self) -> float:
        """Seconds after its last report that a replica stops being a member."""
        ttl = self.options.member_ttl_seconds
        return ttl if ttl is not None else 3 * self.config.report_interval_seconds

    @property
    def client_id(self) -> str:
        if self.options.client_id:
            return self.options.client_id
        if self.pod_name:
            return f"edgemodel-{self.pod_name}"
        import socket  # noqa: PLC0415 - only for the standalone default

        return f"edgemodel-{socket.gethostname()}"

    @property
    def reports_to_kubernetes(self) -> bool:
        return self.config.edgemodel is not None and bool(self.pod_name)

    def edgemodel_ref(self) -> tuple[str, str] | None:
        """``(namespace, name)`` of the EdgeModel to report to."""
        if self.config.edgemodel is None:
            return None
        namespace, _, name = self.config.edgemodel.partition("/")
        if not name:
            namespace, name = self.pod_namespace or "default", namespace
        return namespace, name


def _field_names() -> list[str]:
    return list(contracts.RuntimeConfig.model_fields) + list(Options.model_fields)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--kebab-case`` flag per setting, all optional; values are validated later."""
    parser.add_argument("--config", help=f"JSON config file (default: ${ENV_CONFIG})")
    for name in _field_names():
        flag = "--" + name.replace("_", "-")
        hint = " (comma-separated)" if name in _LIST_FIELDS else ""
        parser.add_argument(flag, dest=name, default=None, metavar="VALUE", help=f"{name}{hint}")


def load(args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """:class:`Settings` from flags > environment > file > defaults; :class:`ConfigError` if invalid."""
    env = {} if env is None else env
    flags = {} if args is None else {k: v for k, v in vars(args).items() if k != "config"}
    path = getattr(args, "config", None) or env.get(ENV_CONFIG) or None
    try:
        merged = settingsources.merged(
            _field_names(), list_fields=_LIST_FIELDS, flags=flags, env=env, file=path
        )
    except settingsources.SettingsError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        config = contracts.RuntimeConfig.model_validate(merged)
        options = Options.model_validate(merged)
    except pydantic.ValidationError as exc:
        raise ConfigError(settingsources.describe(exc, ENV_PREFIX)) from exc
    settings = Settings(
        config=config,
        options=options,
        mqtt_username=env.get("MQTT_USERNAME") or None,
        mqtt_password=env.get("MQTT_PASSWORD") or None,
        pod_name=env.get("POD_NAME") or None,
        pod_namespace=env.get("POD_NAMESPACE") or None,
    )
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Checks across fields that the models' per-field ranges do not cover."""
    try:
        settings.spec  # noqa: B018 - validates the features against the target
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        settings.partition  # noqa: B018
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
