"""Prometheus metrics of the operator, and per-EdgeModel gauges that alerts and dashboards use.

The registry is a parameter, so tests can use a fresh one.
I/O: none here; ``edgemodel_operator.main`` serves the registry over HTTP.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import prometheus_client as prom
from prometheus_client import metrics_core
from prometheus_client.registry import Collector

from edgemodel import api

__all__ = ["OperatorMetrics", "ServingModels"]


class ServingModels(Collector):
    """``edgemodel_model_info``: 1 for each EdgeModel's serving model version, read at scrape time.

    A labelled Gauge would keep the old version's series at 1 after a promotion (its
    labels are the version); this collector holds one entry per EdgeModel and yields only
    what is serving now.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._serving: dict[tuple[str, str], tuple[str, str]] = {}

    def set(self, namespace: str, name: str, model: str, version: str) -> None:
        with self._lock:
            self._serving[(namespace, name)] = (model, version)

    def remove(self, namespace: str, name: str) -> None:
        with self._lock:
            self._serving.pop((namespace, name), None)

    def collect(self) -> Iterator[metrics_core.Metric]:
        family = metrics_core.GaugeMetricFamily(
            "edgemodel_model_info",
            "1 for the serving model version",
            labels=["namespace", "edgemodel", "model", "version"],
        )
        with self._lock:
            serving = sorted(self._serving.items())
        for (namespace, name), (model, version) in serving:
            family.add_metric([namespace, name, model, version], 1.0)
        yield family


class OperatorMetrics:
    def __init__(self, registry: prom.CollectorRegistry = prom.REGISTRY) -> None:
        self.registry = registry
        self.reconciles = prom.Counter(
            "edgemodel_operator_reconciles_total", "Reconciles by result", ["result"], registry=registry
        )
        self.reconcile_errors = prom.Counter(
            "edgemodel_operator_reconcile_errors_total",
            "Reconciles that raised",
            ["error"],
            registry=registry,
        )
        self.reconcile_seconds = prom.Histogram(
            "edgemodel_operator_reconcile_duration_seconds",
            "Time of one reconcile",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.api_requests = prom.Counter(
            "edgemodel_operator_api_requests_total",
            "Requests to the Kubernetes API by HTTP method (GET reads, the others write) and kind",
            ["method", "kind"],
            registry=registry,
        )
        self.jobs_started = prom.Counter(
            "edgemodel_operator_jobs_started_total", "Trainer Jobs started", ["kind"], registry=registry
        )
        self.drift_reports_ignored = prom.Counter(
            "edgemodel_operator_drift_reports_ignored_total",
            "Replica drift reports ignored: not_a_live_replica, future_report_time or malformed",
            ["reason"],
            registry=registry,
        )
        self.leader = prom.Gauge(
            "edgemodel_operator_leader",
            "1 while this replica holds the leader Lease (with shards: the Lease of any shard)",
            registry=registry,
        )
        self.shard_leader = prom.Gauge(
            "edgemodel_operator_shard_leader",
            "1 while this replica holds the Lease of the shard (0 to shards - 1)",
            ["shard"],
            registry=registry,
        )
        labels = ["namespace", "edgemodel"]
        self.drift_rmse = prom.Gauge(
            "edgemodel_drift_rmse", "Rolling RMSE of the worst eligible replica", labels, registry=registry
        )
        self.drift_threshold = prom.Gauge(
            "edgemodel_drift_threshold", "Drift threshold from the spec", labels, registry=registry
        )
        self.condition = prom.Gauge(
            "edgemodel_condition",
            "1 for the current status of each condition",
            [*labels, "type", "status"],
            registry=registry,
        )
        self.retrains = prom.Gauge(
            "edgemodel_retrains", "Retraining Jobs started for the EdgeModel", labels, registry=registry
        )
        self.model_info = ServingModels()
        registry.register(self.model_info)
        self.model_trained = prom.Gauge(
            "edgemodel_model_last_trained_timestamp_seconds",
            "When the serving model's last training finished",
            labels,
            registry=registry,
        )

    def api_request(self, method: str, kind: str) -> None:
        """Count one request the operator's client sends (``Kube``'s ``on_request``)."""
        self.api_requests.labels(method, kind).inc()

    def observe_status(self, namespace: str, name: str, status: api.EdgeModelStatus) -> None:
        key = (namespace, name)
        if status.drift.rmse is not None:
            self.drift_rmse.labels(*key).set(status.drift.rmse)
        if status.drift.threshold is not None:
            self.drift_threshold.labels(*key).set(status.drift.threshold)
        for cond in status.conditions:
            for value in ("True", "False", "Unknown"):
                self.condition.labels(*key, cond.type, value).set(1.0 if cond.status == value else 0.0)
        self.retrains.labels(*key).set(status.retraining.count)
        if status.model.version is not None and status.model.name is not None:
            self.model_info.set(*key, status.model.name, status.model.version)
        else:
            self.model_info.remove(*key)
        if status.model.last_trained_time is not None:
            self.model_trained.labels(*key).set(status.model.last_trained_time.timestamp())

    def forget(self, namespace: str, name: str) -> None:
        """Drop the gauges of a deleted EdgeModel."""
        for gauge in (self.drift_rmse, self.drift_threshold, self.retrains, self.model_trained):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)
        self.model_info.remove(namespace, name)
        for labels in list(getattr(self.condition, "_metrics", {})):
            if labels[:2] == (namespace, name):
                self.condition.remove(*labels)
