"""The hand-offs between operator, runtime and trainer, written down in one place.

Operator -> runtime
    :class:`RuntimeConfig`, rendered by the operator into a ConfigMap as JSON and mounted
    at ``/etc/edgemodel/runtime.json`` (``EDGEMODEL_RUNTIME_CONFIG``). MQTT credentials
    are never in it: they arrive as the ``MQTT_USERNAME`` / ``MQTT_PASSWORD`` environment
    variables from a Secret. The Pod's own name and namespace arrive through the downward
    API as ``POD_NAME`` / ``POD_NAMESPACE``. MLflow credentials, when the EdgeModel names a
    tracking Secret, arrive the same way, to the runtime and the trainer, as the variables
    MLflow's client reads itself (``MLFLOW_TRACKING_USERNAME``, ``..._PASSWORD``,
    ``..._TOKEN``); a CA bundle arrives as a file that :data:`TRACKING_CA_ENV` names.

Runtime -> operator
    Each runtime Pod merge-patches only ``status.replicaDrift.<podName>`` of its EdgeModel
    through the status subresource (:func:`replica_drift_patch`), with a
    :class:`edgemodel.api.ReplicaDriftEntry`. The operator folds those entries into
    ``status.drift`` and removes the entries of Pods that are gone.

Runtime -> trainer (the training window)
    When a replica detects drift, and before it reports that, it logs its bounded window
    of recent raw readings to MLflow as a run in the experiment
    :func:`window_experiment`, with the CSV artifact :data:`WINDOW_ARTIFACT` (columns
    ``device``, ``ts``, then the fields of the feature spec) and the tags in
    :data:`WINDOW_TAGS`, marking where the plant changed (``change_ts``). Once enough
    readings of the changed plant have arrived it logs the window again, with the metric
    :data:`WINDOW_FRESH_METRIC`. The trainer reads the newest such runs, and waits for one
    with enough readings after the change.

Operator -> trainer
    :class:`TrainerConfig` (``edgemodel-trainer train``) and :class:`RollbackConfig`
    (``edgemodel-trainer rollback``), rendered into the Job's command line by their
    :meth:`~Command.to_argv`. The flags are generated from the model fields, and the
    trainer parses them back with :meth:`~Command.from_flags`: one definition of each.

Trainer -> operator
    A :class:`TrainingResult` as JSON in the container's termination message
    (``/dev/termination-log``), and the exit code (:class:`ExitCode`): ``0`` for a new
    champion, ``3`` for a challenger that was registered but rejected, ``1`` for a
    failure. The operator reads the termination message of the Job's Pod.

Trainer -> runtime (the detector calibration)
    Each version the trainer registers carries a :class:`DetectorCalibration`: statistics
    of its errors on the holdout, in the target's units, in the version's metadata
    (``edgemodel.registry.ModelMeta``). The runtime tunes its change detector from the
    calibration of the version it serves (``edgemodel_runtime.drift.calibrated_tuning``).

Rollback
    The operator watches the live RMSE that replicas report for a freshly promoted
    version. When it is clearly worse than the previous champion's, the operator starts a
    rollback Job (``edgemodel-trainer rollback``) that points the alias back and reports a
    :class:`TrainingResult` with outcome ``RolledBack``.

Pure data definitions; no I/O here.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

import pydantic
from pydantic.alias_generators import to_camel

from edgemodel import api

__all__ = [
    "TRACKING_CA_ENV",
    "WINDOW_ARTIFACT",
    "WINDOW_FRESH_METRIC",
    "WINDOW_TAGS",
    "Command",
    "DetectorCalibration",
    "ExitCode",
    "RollbackConfig",
    "RuntimeConfig",
    "TrainerConfig",
    "TrainingResult",
    "replica_drift_patch",
    "window_experiment",
]

RUNTIME_CONFIG_PATH = "/etc/edgemodel/runtime.json"
TRACKING_CA_ENV = "EDGEMODEL_TRACKING_CA_FILE"
"""Names the tracking Secret's mounted CA bundle. The runtime and the trainer set
``MLFLOW_TRACKING_SERVER_CERT_PATH`` to it when the file exists (the key is optional)."""
TERMINATION_LOG = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT = 4096

WINDOW_ARTIFACT = "window/readings.csv"
WINDOW_TAGS = {
    "kind": "edgemodel.kind",  # value: "training-window"
    "edgemodel": "edgemodel.name",  # "<namespace>/<name>"
    "pod": "edgemodel.pod",
    "reason": "edgemodel.reason",  # "drift" or "periodic" or "manual"
    "model_version": "edgemodel.model_version",
    # Reading time (the payload's ts) from which the window shows the changed plant; the
    # trainer trains on the readings from then on when there are enough of them.
    "change_ts": "edgemodel.change_ts",
}
WINDOW_KIND = "training-window"
WINDOW_FRESH_METRIC = "readings_after_change"
"""Run metric: how many readings of the window are at or after ``change_ts``."""


def window_experiment(model_name: str) -> str:
    """The MLflow experiment that holds training windows for a registered model."""
    return f"edgemodel-windows-{model_name}"


def training_experiment(model_name: str) -> str:
    """The MLflow experiment that holds training runs for a registered model."""
    return f"edgemodel-training-{model_name}"


class ExitCode(enum.IntEnum):
    """Exit codes of ``edgemodel-trainer``."""

    PROMOTED = 0
    """A new version serves: first version, better challenger, or a rollback done."""
    FAILED = 1
    """Training or registration failed; nothing changed."""
    USAGE = 2
    """Bad arguments."""
    REJECTED = 3
    """A challenger was registered but not promoted; the champion keeps serving."""


class _Contract(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", use_attribute_docstrings=True
    )

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


class RuntimeConfig(_Contract):
    """Everything a runtime process needs; from the operator's ConfigMap or from a file."""

    edgemodel: str | None = None
    """``<namespace>/<name>`` of the EdgeModel to report to; None when standalone."""
    peer_service: str | None = None
    """The Service whose EndpointSlices list the replicas sharing the devices (dynamic
    partitioning); None: the replicas that reported lately in the EdgeModel's status."""
    topics: list[str] = pydantic.Field(min_length=1)
    features: list[str]
    target: str
    horizon: int = pydantic.Field(default=1, ge=1)
    lags: int = pydantic.Field(default=3, ge=0)
    device_field: str | None = None
    timestamp_field: str = "ts"
    output_topic: str = "edgemodel/predictions/{device}"
    drift_threshold: float = pydantic.Field(gt=0)
    drift_window: int = pydantic.Field(default=100, ge=1)
    drift_detector: api.DetectorName = "page_hinkley"
    broker_host: str = "127.0.0.1"
    broker_port: int = pydantic.Field(default=1883, ge=1, le=65535)
    broker_tls: bool = False
    mlflow_tracking_uri: str | None = None
    model_name: str
    model_alias: str = "champion"
    batch_max_size: int = pydantic.Field(default=256, ge=1)
    batch_max_delay_ms: int = pydantic.Field(default=5, ge=0)
    http_port: int = pydantic.Field(default=8080, ge=0, le=65535)
    report_interval_seconds: float = pydantic.Field(default=5.0, gt=0)
    model_poll_seconds: float = pydantic.Field(default=5.0, gt=0)
    training_window: int = pydantic.Field(default=2000, ge=1)
    drift_detector_delta: float | None = pydantic.Field(default=None, ge=0)
    """Hand-set Page-Hinkley delta, in units of the drift threshold; None: calibrated."""
    drift_detector_threshold: float | None = pydantic.Field(default=None, gt=0)
    """Hand-set Page-Hinkley threshold (lambda), in units of the drift threshold; None: calibrated."""


class DetectorCalibration(_Contract):
    """A model version's errors on its holdout, in the target's units: what its detector is tuned from."""

    model_config = pydantic.ConfigDict(frozen=True)

    mean_abs: float = pydantic.Field(ge=0, allow_inf_nan=False)
    """Mean absolute error."""
    std_abs: float = pydantic.Field(ge=0, allow_inf_nan=False)
    """Standard deviation of the absolute error."""
    rmse: float = pydantic.Field(ge=0, allow_inf_nan=False)
    """Root mean squared error."""
    samples: int = pydantic.Field(ge=1)
    """Holdout rows measured."""


class Command(_Contract):
    """A trainer subcommand whose flags are generated from the model's fields.

    Each field ``some_name`` is the flag ``--some-name`` (or the field's ``flag`` in
    ``json_schema_extra``); lists are comma-separated; ``None`` values are left out.
    :meth:`to_argv` renders the command line and :meth:`from_flags` reads it back, so the
    operator and the trainer share one definition.
    """

    COMMAND: ClassVar[str]

    @classmethod
    def flags(cls) -> dict[str, str]:
        """Field name -> command-line flag."""
        out = {}
        for name, field in cls.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            out[name] = str(extra.get("flag") or "--" + name.replace("_", "-"))
        return out

    def to_argv(self) -> list[str]:
        """``edgemodel-trainer <COMMAND>`` arguments."""
        argv = [self.COMMAND]
        for name, flag in self.flags().items():
            value = getattr(self, name)
            if value is None:
                continue
            argv += [flag, _flag_text(value)]
        return argv

    @classmethod
    def from_flags(cls, values: Mapping[str, Any]) -> Self:
        """The command from parsed flag values by field name (strings as on the command line).

        Missing or ``None`` values take the model's defaults; raises
        :class:`pydantic.ValidationError` naming the field when a value is out of range.
        """
        return cls.model_validate(
            {k: v for k, v in values.items() if k in cls.model_fields and v is not None}
        )


def _flag_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


class TrainerConfig(Command):
    """The trainer's inputs, as the operator renders them into a Job (``edgemodel-trainer train``)."""

    COMMAND: ClassVar[str] = "train"

    model_name: str
    """MLflow registered model name."""
    tracking_uri: str
    """MLflow tracking server URI."""
    algorithm: api.Algorithm = "ridge"
    """The scikit-learn estimator to train."""
    features: list[str]
    """Comma-separated input fields."""
    target: str
    """The field to predict."""
    horizon: int = pydantic.Field(default=1, ge=1)
    """Readings ahead to predict."""
    lags: int = pydantic.Field(default=3, ge=0)
    """Past target values used as inputs."""
    alias: str = "champion"
    """The alias that serves."""
    promotion_margin: float = pydantic.Field(default=0.02, ge=0.0, lt=1.0)
    """Relative RMSE improvement a challenger needs over the champion, in [0, 1)."""
    training_window: int = pydantic.Field(default=2000, ge=1)
    """Most recent readings used."""
    data: str | None = None
    """A CSV or Parquet file; when None, the newest training windows in MLflow."""
    edgemodel: str | None = None
    """``<namespace>/<name>`` whose training windows to read."""
    window_since: float | None = None
    """Only training windows uploaded at or after this time (epoch seconds) are used."""
    window_wait_seconds: float = pydantic.Field(
        default=0.0, ge=0.0, json_schema_extra={"flag": "--window-wait"}
    )
    """How long to wait for such a window to appear before failing."""

    @pydantic.field_validator("features", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [f.strip() for f in value.split(",") if f.strip()]
        return value


class RollbackConfig(Command):
    """A rollback Job's inputs (``edgemodel-trainer rollback``): point the alias back."""

    COMMAND: ClassVar[str] = "rollback"

    model_name: str
    """MLflow registered model name."""
    tracking_uri: str
    """MLflow tracking server URI."""
    alias: str = "champion"
    """The alias that serves."""
    to_version: str
    """The version to serve again."""
    reason: str = "RolledBack"
    """Recorded on the version left behind."""


Outcome = Literal["Promoted", "Rejected", "RolledBack", "Failed"]


class TrainingResult(_Contract):
    """What a training or rollback run reports back to the operator."""

    outcome: Outcome
    reason: str
    model_name: str
    version: str | None = None
    champion_version: str | None = None
    holdout_rmse: float | None = None
    champion_rmse: float | None = None
    samples: int | None = None
    algorithm: str | None = None
    run_id: str | None = None
    dataset_digest: str | None = None
    duration_seconds: float | None = None

    def to_termination_message(self) -> str:
        """JSON that fits the kubelet's termination-message limit."""
        text = self.to_json()
        if len(text.encode()) > TERMINATION_MESSAGE_LIMIT:
            text = TrainingResult(
                outcome=self.outcome,
                reason=self.reason[:1000],
                model_name=self.model_name,
                version=self.version,
            ).to_json()
        return text

    @classmethod
    def from_termination_message(cls, text: str) -> TrainingResult:
        return cls.model_validate(json.loads(text))


def replica_drift_patch(pod_name: str, entry: api.ReplicaDriftEntry | None) -> dict[str, Any]:
    """The merge patch that sets (or, with ``None``, removes) one replica's drift entry."""
    value = None if entry is None else entry.to_wire()
    return {"status": {"replicaDrift": {pod_name: value}}}
