"""Prometheus metrics of one runtime process; the registry is a parameter.

Counting rule: every MQTT message is counted once in ``edgemodel_messages_total`` and
then exactly once in one of ``edgemodel_readings_total`` (valid and processed),
``edgemodel_rejected_payloads_total{reason}`` or
``edgemodel_readings_other_partition_total``.

Producing the exposition text (:func:`render`) is separate from serving it (``http``).
"""

from __future__ import annotations

import prometheus_client as prom
from prometheus_client import CollectorRegistry

__all__ = ["Metrics", "render"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Metrics:
    """All metrics of the runtime, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else prom.REGISTRY
        r = self.registry
        self.messages = prom.Counter("edgemodel_messages", "MQTT messages received.", registry=r)
        self.readings = prom.Counter(
            "edgemodel_readings", "Valid readings processed (history, window, prediction).", registry=r
        )
        self.rejected = prom.Counter(
            "edgemodel_rejected_payloads", "Payloads refused, by reason.", ["reason"], registry=r
        )
        self.other_partition = prom.Counter(
            "edgemodel_readings_other_partition",
            "Valid readings of devices another replica owns.",
            registry=r,
        )
        self.predictions = prom.Counter("edgemodel_predictions", "Predictions published.", registry=r)
        self.publish_failures = prom.Counter(
            "edgemodel_publish_failures", "Predictions the MQTT client refused to queue.", registry=r
        )
        self.prediction_failures = prom.Counter(
            "edgemodel_prediction_failures", "Batches the model failed to predict.", registry=r
        )
        self.unpredicted = prom.Counter(
            "edgemodel_readings_without_model",
            "Valid readings that got no prediction because no model was loaded.",
            registry=r,
        )
        self.outcomes = prom.Counter(
            "edgemodel_outcomes", "Predictions whose true value arrived.", registry=r
        )
        self.latency = prom.Histogram(
            "edgemodel_prediction_latency_seconds",
            "From message arrival to prediction published.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = prom.Histogram(
            "edgemodel_batch_size", "Readings per micro-batch.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.queue_depth = prom.Gauge(
            "edgemodel_queue_depth", "Messages waiting to be processed.", registry=r
        )
        self.devices = prom.Gauge("edgemodel_devices", "Devices with history in this replica.", registry=r)
        self.rmse = prom.Gauge(
            "edgemodel_rolling_rmse", "Rolling RMSE over the drift window (NaN before outcomes).", registry=r
        )
        self.rmse_samples = prom.Gauge(
            "edgemodel_rolling_rmse_samples", "Outcomes in the rolling window.", registry=r
        )
        self.drift_threshold = prom.Gauge(
            "edgemodel_drift_threshold", "Configured RMSE threshold.", registry=r
        )
        self.drift_detected = prom.Gauge(
            "edgemodel_drift_detected", "1 while this replica sees drift.", registry=r
        )
        self.detector_statistic = prom.Gauge(
            "edgemodel_drift_detector_statistic",
            "The change detector's test statistic (Page-Hinkley excess, or the adaptive "
            "window's largest rise minus its bound).",
            registry=r,
        )
        self.detections = prom.Counter(
            "edgemodel_drift_detections", "Times drift started, by rule.", ["reason"], registry=r
        )
        self.feature_psi = prom.Gauge(
            "edgemodel_feature_psi",
            "Population stability index of each input feature against the reference after the model load.",
            ["feature"],
            registry=r,
        )
        self.model_info = prom.Info("edgemodel_model", "The model version serving.", registry=r)
        self.model_loaded = prom.Gauge("edgemodel_model_loaded", "1 when a model serves.", registry=r)
        self.model_error = prom.Gauge(
            "edgemodel_model_error", "1 when the newest model version could not be loaded.", registry=r
        )
        self.model_loads = prom.Counter(
            "edgemodel_model_loads", "Model load attempts, by result.", ["result"], registry=r
        )
        self.mqtt_connected = prom.Gauge("edgemodel_mqtt_connected", "1 while connected.", registry=r)
        self.mqtt_connects = prom.Counter("edgemodel_mqtt_connects", "Successful connections.", registry=r)
        self.reports = prom.Counter(
            "edgemodel_status_reports", "Status reports, by result.", ["result"], registry=r
        )
        self.windows = prom.Counter(
            "edgemodel_training_windows",
            "Training windows logged to MLflow, by result and reason (drift or bootstrap).",
            ["result", "reason"],
            registry=r,
        )
        self.partition_mode = prom.Gauge(
            "edgemodel_partition_mode",
            "1 for the active way of sharing devices: all, static or dynamic.",
            ["mode"],
            registry=r,
        )
        self.partition_members = prom.Gauge(
            "edgemodel_partition_members",
            "Replicas sharing the devices, as this replica sees them (1 when it handles all).",
            registry=r,
        )
        self.owned_devices = prom.Gauge(
            "edgemodel_owned_devices", "Devices this replica owns and has seen.", registry=r
        )
        self.membership_changes = prom.Counter(
            "edgemodel_membership_changes",
            "Times the set of live replicas changed (dynamic partitioning).",
            registry=r,
        )
        self.membership_refreshes = prom.Counter(
            "edgemodel_membership_refreshes",
            "Reads of the live replicas from the EdgeModel, by result.",
            ["result"],
            registry=r,
        )
        self.http_predictions = prom.Counter(
            "edgemodel_http_predict_requests", "POST /predict requests, by HTTP status.", ["code"], registry=r
        )
        self.rmse.set(float("nan"))


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST
