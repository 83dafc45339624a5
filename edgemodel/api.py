"""The EdgeModel API, version ``edgeml.dev/v1alpha1``: pydantic models for spec and status.

This module is the single source of truth for the public contract. The CRD in ``crds/``
is generated from these models by :mod:`edgemodel.crd`, and a test checks that the
committed YAML matches. Validation that the API server enforces (OpenAPI constraints
and CEL rules) is declared here too, next to the field it belongs to, and mirrored by
pydantic validators so that a spec the API server refuses is refused here with the
same field path.

Pure data definitions; no I/O here.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field, JsonValue
from pydantic.alias_generators import to_camel

__all__ = [
    "ALGORITHMS",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAME",
    "VERSION",
    "BrokerSpec",
    "Condition",
    "DetectorName",
    "DetectorTuning",
    "DriftSpec",
    "DriftStatus",
    "EdgeModelSpec",
    "EdgeModelStatus",
    "ModelHistoryEntry",
    "ModelSpec",
    "ModelStatus",
    "PlacementSpec",
    "ReplicaDriftEntry",
    "ResourcesSpec",
    "RetrainingSpec",
    "RetrainingStatus",
    "RuntimeSpec",
    "ScalingSpec",
    "SecretKeyRef",
    "SensorsSpec",
    "Toleration",
    "is_valid_topic_filter",
]

GROUP = "edgeml.dev"
VERSION = "v1alpha1"
KIND = "EdgeModel"
PLURAL = "edgemodels"
SINGULAR = "edgemodel"
SHORT_NAME = "em"
API_VERSION = f"{GROUP}/{VERSION}"

ALGORITHMS = ("ridge", "random_forest", "gradient_boosting")
Algorithm = Literal["ridge", "random_forest", "gradient_boosting"]
DetectorName = Literal["page_hinkley", "adaptive_window_rise", "none"]
"""The change detectors on the error stream (the runtime's ``edgemodel_runtime.drift``).

Both are one-sided, written for EdgeModel: ``page_hinkley`` is a Page-Hinkley test for a
rise of the mean; ``adaptive_window_rise`` is an adaptive window with ADWIN's bound that
signals only a rise. Neither is river's two-sided ADWIN, so no value is named ``adwin``.
"""

# An MQTT topic filter: levels split by '/', '+' only as a whole level, '#' only as the
# whole last level. Empty levels are legal MQTT. The same expression is used by the CEL
# rule in the CRD (RE2 syntax) and by pydantic, so both refuse the same filters.
TOPIC_FILTER_RE = r"^(#|(\+|[^+#/]*)(/(\+|[^+#/]*))*(/#)?)$"
_TOPIC_FILTER = re.compile(TOPIC_FILTER_RE)

# A payload field name: what a JSON reading may use as a key the model reads.
FIELD_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,62}$"

# Five-field cron, or one of the @ macros that Kubernetes CronJobs accept.
CRON_RE = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|(\S+\s+){4}\S+)$"
)

# An MLflow registered model name we accept: conservative, usable in tags and URIs.
MODEL_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,126}$"
MAX_MODEL_NAME = 127

MAX_TOPICS = 32
MAX_TOPIC_LENGTH = 256
MAX_FEATURES = 64


def is_valid_topic_filter(topic: str) -> bool:
    """Return whether ``topic`` is a well-formed MQTT topic filter.

    >>> [is_valid_topic_filter(t) for t in ("plant/+/temp", "plant/#", "a/b#", "#/a")]
    [True, True, False, False]
    """
    return 0 < len(topic) <= MAX_TOPIC_LENGTH and _TOPIC_FILTER.fullmatch(topic) is not None


def cel(rule: str, message: str, *, field_path: str | None = None) -> dict[str, JsonValue]:
    """One ``x-kubernetes-validations`` entry."""
    entry: dict[str, JsonValue] = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def _fit_model_name(name: str, limit: int = MAX_MODEL_NAME) -> str:
    """``name`` within ``limit`` characters; a shortened one ends in a hash of the whole name."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9]}-{digest}"


class _Model(pydantic.BaseModel):
    """Base: camelCase on the wire, snake_case in Python, unknown fields refused."""

    model_config = pydantic.ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class _StatusModel(_Model):
    """Status objects tolerate fields written by newer operators and runtimes."""

    model_config = pydantic.ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


# --------------------------------------------------------------------------- spec


class SensorsSpec(_Model):
    """Where readings come from and what the model reads and predicts."""

    topics: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_TOPIC_LENGTH)]],
        Field(
            min_length=1,
            max_length=MAX_TOPICS,
            description="MQTT topic filters to subscribe to. '+' and '#' are allowed "
            "as whole levels, '#' only as the last level.",
            json_schema_extra={
                "x-kubernetes-validations": [
                    cel(
                        f"self.all(t, t.matches(r'{TOPIC_FILTER_RE}'))",
                        "each topic must be a well-formed MQTT topic filter: "
                        "'+' and '#' only as whole levels, '#' only as the last level",
                    )
                ]
            },
        ),
    ]
    features: Annotated[
        list[Annotated[str, Field(pattern=FIELD_NAME_RE, max_length=63)]],
        Field(
            min_length=1,
            max_length=MAX_FEATURES,
            description="Payload fields the model takes as inputs; each at most once.",
            json_schema_extra={"x-kubernetes-list-type": "set"},
        ),
    ]
    target: Annotated[
        str,
        Field(
            pattern=FIELD_NAME_RE,
            max_length=63,
            description="Payload field the model predicts. Its true value arrives with "
            "a later reading; it may also be a feature.",
        ),
    ]
    horizon: Annotated[
        int,
        Field(ge=1, le=1000, description="How many readings ahead to predict."),
    ] = 1
    lags: Annotated[
        int,
        Field(
            ge=0,
            le=32,
            description="How many past values of the target feed the model as lag features.",
        ),
    ] = 3
    device_field: Annotated[
        str | None,
        Field(
            pattern=FIELD_NAME_RE,
            description="Payload field holding the device id. When unset, the device id "
            "is the topic level matched by the first '+' wildcard, or the whole topic.",
        ),
    ] = None
    timestamp_field: Annotated[
        str,
        Field(pattern=FIELD_NAME_RE, description="Payload field holding the reading time."),
    ] = "ts"
    output_topic: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=MAX_TOPIC_LENGTH,
            pattern=r"^[^+#]+$",
            description="Topic predictions are published to; '{device}' is replaced by "
            "the device id. Default: 'edgemodel/<namespace>/<name>/predictions/{device}'.",
        ),
    ] = None

    @pydantic.field_validator("topics")
    @classmethod
    def _topics_well_formed(cls, topics: list[str]) -> list[str]:
        bad = [t for t in topics if not is_valid_topic_filter(t)]
        if bad:
            raise ValueError(
                f"each topic must be a well-formed MQTT topic filter: "
                f"'+' and '#' only as whole levels, '#' only as the last level (got {bad})"
            )
        return topics

    @pydantic.field_validator("features")
    @classmethod
    def _features_unique(cls, features: list[str]) -> list[str]:
        if len(set(features)) != len(features):
            raise ValueError("features must be unique")
        return features


class DetectorTuning(_Model):
    """Page-Hinkley's tuning, in units of the drift threshold (the detector reads |error| / threshold)."""

    delta: Annotated[
        float | None,
        Field(
            ge=0,
            le=100,
            description="Rises of the mean |error| / threshold smaller than this are tolerated. "
            "Unset: calibrated (a quarter of the way from the model's holdout error to an error at "
            "the threshold).",
        ),
    ] = None
    threshold: Annotated[
        float | None,
        Field(
            gt=0,
            le=100_000,
            description="The cumulative excess of |error| / threshold over its mean plus delta that "
            "signals a change (lambda). Unset: calibrated (100 x delta, or more for a noisy model).",
        ),
    ] = None


class DriftSpec(_Model):
    """When the model counts as drifted."""

    threshold: Annotated[
        float,
        Field(
            gt=0,
            description="A rolling RMSE above this value means the model has drifted.",
        ),
    ]
    window: Annotated[
        int,
        Field(
            ge=10,
            le=100_000,
            description="How many predictions with a known outcome the rolling RMSE covers.",
        ),
    ] = 100
    detector: Annotated[
        DetectorName,
        Field(
            description="Statistical change detector on the error stream, run beside the "
            "rolling-RMSE rule to catch drift earlier. Both detectors are one-sided (only a "
            "rising error signals): page_hinkley is a Page-Hinkley test; adaptive_window_rise "
            "is an adaptive window tested with ADWIN's bound."
        ),
    ] = "page_hinkley"
    detector_tuning: Annotated[
        DetectorTuning | None,
        Field(
            description="Hand-set Page-Hinkley tuning. Unset values are calibrated on the errors "
            "of the serving model version, measured by the trainer on its holdout."
        ),
    ] = None


class ScalingSpec(_Model):
    """Bounds for the HorizontalPodAutoscaler on the inference Deployment."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.minReplicas <= self.maxReplicas",
                    "minReplicas must be less than or equal to maxReplicas",
                    field_path=".minReplicas",
                )
            ]
        }
    )

    min_replicas: Annotated[int, Field(ge=1, le=1000, description="Lowest replica count.")] = 1
    max_replicas: Annotated[int, Field(ge=1, le=1000, description="Highest replica count.")] = 3
    target_cpu_utilization_percentage: Annotated[
        int,
        Field(
            ge=1,
            le=100,
            alias="targetCPUUtilizationPercentage",
            description="Average CPU utilisation the HPA aims for.",
        ),
    ] = 70

    @pydantic.model_validator(mode="after")
    def _min_le_max(self) -> ScalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must be less than or equal to maxReplicas")
        return self


class RetrainingSpec(_Model):
    """When and how often the operator retrains."""

    cooldown_seconds: Annotated[
        int,
        Field(
            ge=0,
            le=7 * 24 * 3600,
            description="No retraining starts within this many seconds of the last trigger.",
        ),
    ] = 300
    schedule: Annotated[
        str | None,
        Field(
            pattern=CRON_RE,
            max_length=128,
            description="Optional cron schedule for retraining regardless of drift.",
        ),
    ] = None
    max_per_hour: Annotated[
        int,
        Field(ge=1, le=60, description="At most this many drift-triggered retrains per hour."),
    ] = 4
    max_consecutive_rejections: Annotated[
        int,
        Field(
            ge=1,
            le=100,
            description="After this many rejected challengers in a row, retraining stops "
            "and the EdgeModel turns Degraded until the spec changes or it is retried by "
            "annotation.",
        ),
    ] = 3
    promotion_margin: Annotated[
        float,
        Field(
            ge=0,
            le=1,
            description="A challenger is promoted only if its holdout RMSE is below the "
            "champion's by at least this fraction.",
        ),
    ] = 0.02
    training_window: Annotated[
        int,
        Field(ge=50, le=1_000_000, description="How many recent readings to train on."),
    ] = 2000


class SecretKeyRef(_Model):
    """A reference to a Secret in the EdgeModel's namespace."""

    name: Annotated[str, Field(min_length=1, max_length=253, description="Secret name.")]


class ModelSpec(_Model):
    """The registered model and how it is trained."""

    name: Annotated[
        str | None,
        Field(
            pattern=MODEL_NAME_RE,
            description="MLflow registered model name. Defaults to '<namespace>-<name>', so "
            "same-named EdgeModels in two namespaces never share a registry entry.",
        ),
    ] = None
    algorithm: Annotated[
        Algorithm,
        Field(description="Learning algorithm: ridge, random_forest or gradient_boosting."),
    ] = "ridge"
    alias: Annotated[
        str,
        Field(
            pattern=r"^[A-Za-z][A-Za-z0-9_\-]{0,62}$",
            description="The MLflow alias that marks the serving model.",
        ),
    ] = "champion"
    tracking_uri: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=2048,
            description="MLflow tracking URI. Defaults to the operator's cluster default.",
        ),
    ] = None
    tracking_secret_ref: Annotated[
        SecretKeyRef | None,
        Field(
            description="Secret with the MLflow credentials: keys MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN; optionally ca.crt, a CA bundle "
            "to trust for an https tracking URI. It reaches the runtime and trainer Pods as "
            "secretKeyRef environment variables and a mounted file, never in a ConfigMap or "
            "argument. It must carry the label edgeml.dev/use=tracking.",
        ),
    ] = None
    bootstrap_data: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=2048,
            description="CSV or Parquet history (a path in the trainer image or an http(s) URL) "
            "with columns device, ts and the sensor fields. Trains the first version when the "
            "registered model has none; without it, the first version is trained from the "
            "readings the runtime collects.",
        ),
    ] = None


class BrokerSpec(_Model):
    """The MQTT broker. Empty means a managed Mosquitto run by the operator."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.port) || has(self.host)",
                    "port may only be set together with host",
                    field_path=".port",
                ),
                cel(
                    "!has(self.tls) || has(self.host)",
                    "tls may only be set together with host",
                    field_path=".tls",
                ),
                cel(
                    "!has(self.persistence) || !has(self.host)",
                    "persistence is for the managed broker: it may not be set together with host",
                    field_path=".persistence",
                ),
                cel(
                    "!has(self.tlsSecretRef) || !has(self.host)",
                    "tlsSecretRef is for the managed broker: it may not be set together with host "
                    "(use tls for an external broker)",
                    field_path=".tlsSecretRef",
                ),
            ]
        }
    )

    host: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=253,
            description="Host of an external broker. When set, no broker is managed.",
        ),
    ] = None
    port: Annotated[int | None, Field(ge=1, le=65535, description="Broker port.")] = None
    credentials_secret: Annotated[
        SecretKeyRef | None,
        Field(
            description="Secret with 'username' and 'password' keys. For a managed "
            "broker, credentials are generated when this is unset."
        ),
    ] = None
    tls: Annotated[bool | None, Field(description="Connect to the external broker with TLS.")] = None
    tls_secret_ref: Annotated[
        SecretKeyRef | None,
        Field(
            description="A kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt), labelled "
            "edgeml.dev/use=broker, for the managed broker: it then listens with TLS on 8883 only, "
            "and the runtime connects with TLS, trusting ca.crt. The certificate must name "
            "<name>-broker.<namespace>.svc."
        ),
    ] = None
    persistence: Annotated[
        BrokerPersistence | None,
        Field(
            description="Keep the managed broker's sessions and queued messages on a "
            "PersistentVolumeClaim. Unset: an emptyDir, lost when the Pod goes."
        ),
    ] = None

    @pydantic.model_validator(mode="after")
    def _host_first(self) -> BrokerSpec:
        if self.port is not None and self.host is None:
            raise ValueError("port may only be set together with host")
        if self.tls is not None and self.host is None:
            raise ValueError("tls may only be set together with host")
        if self.persistence is not None and self.host is not None:
            raise ValueError("persistence is for the managed broker: it may not be set together with host")
        if self.tls_secret_ref is not None and self.host is not None:
            raise ValueError(
                "tlsSecretRef is for the managed broker: it may not be set together with host "
                "(use tls for an external broker)"
            )
        return self

    @property
    def managed(self) -> bool:
        """Whether the operator runs the broker itself."""
        return self.host is None


class Toleration(_Model):
    """A Pod toleration, passed through to the inference and broker Pods."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


QUANTITY_RE = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"
Quantity = Annotated[str, Field(pattern=QUANTITY_RE, max_length=32)]


class BrokerPersistence(_Model):
    """A PersistentVolumeClaim for the managed broker's data (sessions, queued messages)."""

    size: Annotated[
        str,
        Field(
            pattern=QUANTITY_RE,
            max_length=32,
            description="Requested storage, e.g. '1Gi'. A claim can grow only if its StorageClass "
            "allows expansion, and never shrink.",
        ),
    ] = "1Gi"
    storage_class_name: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=253,
            description="StorageClass of the claim; unset: the cluster's default. Fixed once the "
            "claim exists.",
        ),
    ] = None


class ResourceList(_Model):
    """CPU and memory quantities, as in a Pod spec."""

    cpu: Quantity | None = None
    memory: Quantity | None = None


class ResourcesSpec(_Model):
    """Container resources, as in a Pod spec, restricted to cpu and memory."""

    requests: ResourceList | None = None
    limits: ResourceList | None = None


class PlacementSpec(_Model):
    """Where inference and broker Pods may run: edge nodes are usually labelled and tainted."""

    node_selector: Annotated[dict[str, str] | None, Field(description="Node labels the Pods must match.")] = (
        None
    )
    tolerations: Annotated[
        list[Toleration] | None, Field(max_length=32, description="Tolerations for tainted nodes.")
    ] = None


class RuntimeSpec(_Model):
    """How the inference Pods run."""

    image: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=512,
            description="Override of the runtime image. Defaults to the operator's image.",
        ),
    ] = None
    resources: ResourcesSpec | None = None
    batch_max_size: Annotated[
        int, Field(ge=1, le=10_000, description="Most readings predicted in one micro-batch.")
    ] = 256
    batch_max_delay_ms: Annotated[
        int,
        Field(ge=0, le=10_000, description="Longest a reading waits for its micro-batch."),
    ] = 5


class EdgeModelSpec(_Model):
    """Desired state of an EdgeModel."""

    sensors: SensorsSpec
    drift: DriftSpec
    scaling: ScalingSpec = ScalingSpec()
    retraining: RetrainingSpec = RetrainingSpec()
    model: ModelSpec = ModelSpec()
    broker: BrokerSpec = BrokerSpec()
    runtime: RuntimeSpec = RuntimeSpec()
    placement: PlacementSpec = PlacementSpec()
    suspend: Annotated[bool, Field(description="Stop automatic retraining; serving continues.")] = False

    def model_name(self, metadata_name: str, namespace: str) -> str:
        """The registered model name: ``model.name``, or ``<namespace>-<name>``.

        The default keeps same-named EdgeModels of two namespaces apart in one registry. A
        default longer than a model name may be is shortened, with a hash to keep it unique.

        >>> spec = EdgeModelSpec.model_validate({"sensors": {"topics": ["a/+"], "features": ["t"],
        ...     "target": "t"}, "drift": {"threshold": 1}})
        >>> spec.model_name("line1", "plant")
        'plant-line1'
        """
        return self.model.name or _fit_model_name(f"{namespace}-{metadata_name}")


# --------------------------------------------------------------------------- status


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(_StatusModel):
    """A condition in the shape of the Kubernetes API conventions (metav1.Condition)."""

    type: Annotated[str, Field(pattern=r"^[A-Z][A-Za-z0-9]*$", max_length=316)]
    status: ConditionStatus
    reason: Annotated[str, Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)]
    message: Annotated[str, Field(max_length=32768)] = ""
    observed_generation: Annotated[int | None, Field(ge=0)] = None
    last_transition_time: datetime.datetime


class ReplicaDriftEntry(_StatusModel):
    """What one runtime Pod reports about its own drift; written only by that Pod."""

    rmse: Annotated[float | None, Field(description="Rolling RMSE over the drift window.")] = None
    samples: Annotated[int, Field(ge=0, description="Outcomes in the rolling window.")] = 0
    detected: Annotated[bool, Field(description="Whether this replica sees drift.")] = False
    report_time: datetime.datetime
    model_version: Annotated[str | None, Field(description="The model version this replica serves.")] = None
    reason: Annotated[
        str | None,
        Field(description="Which rule fired: Threshold, ChangeDetector, or None."),
    ] = None
    model_error: Annotated[
        str | None, Field(description="Why the latest model could not be loaded, if so.")
    ] = None


class DriftStatus(_StatusModel):
    """Drift summarised over replicas by the operator."""

    rmse: float | None = None
    threshold: float | None = None
    samples: int = 0
    detected: bool = False
    last_report_time: datetime.datetime | None = None
    replica: Annotated[str | None, Field(description="The replica the summary comes from.")] = None


class ModelHistoryEntry(_StatusModel):
    """One model version and what happened to it."""

    version: str
    outcome: Literal["Promoted", "Rejected", "RolledBack", "Failed"]
    reason: str = ""
    holdout_rmse: float | None = None
    champion_rmse: float | None = None
    previous_version: Annotated[
        str | None,
        Field(description="Promoted: the champion it replaced. RolledBack: the version restored."),
    ] = None
    job: str | None = None
    time: datetime.datetime


class ModelStatus(_StatusModel):
    """The model that serves."""

    name: str | None = None
    version: Annotated[str | None, Field(description="The version serving now.")] = None
    last_trained_time: datetime.datetime | None = None
    history: Annotated[list[ModelHistoryEntry], Field(max_length=20)] = []


class RetrainingStatus(_StatusModel):
    """Retraining bookkeeping kept by the operator."""

    last_job: str | None = None
    count: int = 0
    last_triggered_time: datetime.datetime | None = None
    consecutive_rejections: int = 0
    consecutive_failures: int = 0
    recent_triggers: Annotated[
        list[datetime.datetime],
        Field(max_length=64, description="Trigger times within the last hour."),
    ] = []
    last_completed_job: str | None = None
    last_completed_time: datetime.datetime | None = None
    last_outcome: Annotated[str | None, Field(description="Promoted, Rejected, RolledBack or Failed.")] = None
    last_reason: str | None = None
    retry_seen: Annotated[
        str | None, Field(description="The last edgeml.dev/retry annotation value acted on.")
    ] = None


class EdgeModelStatus(_StatusModel):
    """Observed state of an EdgeModel."""

    observed_generation: int | None = None
    conditions: list[Condition] = []
    drift: DriftStatus = DriftStatus()
    model: ModelStatus = ModelStatus()
    replicas: int = 0
    retraining: RetrainingStatus = RetrainingStatus()
    replica_drift: dict[str, ReplicaDriftEntry] = {}
