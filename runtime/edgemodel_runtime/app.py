"""The I/O shell around the pure pipeline: MQTT in, batches through it, predictions and reports out.

What a batch means (parsing, ownership, rows, predictions, outcomes, drift and the
training-window hand-off) is decided by :class:`~edgemodel_runtime.pipeline.Pipeline`;
this module does the I/O around it: publishing, metrics, logs, reports, model polling,
membership and HTTP.

Threads, each with one job:

- paho's network thread parses nothing; it appends ``(topic, payload, arrival)`` to the
  :class:`~edgemodel_runtime.inference.MicroBatcher` and never waits; predictions leave on
  a second connection with its own network thread;
- the worker thread takes batches in arrival order, so one device's readings are handled
  in order, and does everything else on the message path: validation, history,
  prediction, publishing, drift. It starts once the model poller has answered whether a
  model serves (so a restart does not drain its backlog unpredicted while the model
  loads). A reading is acknowledged to the broker only once its batch is done and the
  broker has its predictions (see :mod:`edgemodel_runtime.mqtt`), so a process killed at
  any point loses no reading: the broker sends it to the next one;
- the model poller follows the MLflow alias and swaps the model between batches;
- the reporter sends drift reports (and, when drift starts or while no model serves, the
  training window first) and, with dynamic partitioning, re-reads the live replicas;
- the HTTP server answers probes, metrics and one-off predictions.

``App(settings).start()`` and ``.stop()`` run it in-process; ``main`` runs it as a CLI.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from edgemodel import modelmeta
from edgemodel_runtime import (
    config,
    drift,
    http,
    inference,
    kubeapi,
    logs,
    mlflowapi,
    models,
    mqtt,
    partition,
    pipeline,
    reporting,
    windowlog,
)
from edgemodel_runtime import metrics as metrics_
from edgemodel_runtime.window import FreshReadings, TrainingWindow

__all__ = ["App"]

log = logging.getLogger(__name__)

PUBLISH_WAIT = 5.0
"""Longest the worker waits for PUBACKs before publishing a batch anyway."""
HEALTH_TIMEOUT = 30.0
"""/healthz fails when the worker loop has not turned for this long."""
_IDLE_WAIT = 0.2
RMSE_REPORT_STEP = 0.1
"""The RMSE is reported within an interval when it moved by this share of the drift threshold."""
BOOTSTRAP_MIN_READINGS = 200
"""Without a model, the window is uploaded once it holds min(trainingWindow, this) readings."""

Message = pipeline.Message


class App:
    """One runtime process; every thread it starts is stopped by :meth:`stop`."""

    def __init__(
        self,
        settings: config.Settings,
        *,
        registry: CollectorRegistry | None = None,
        api_client: kubeapi.Client | Any = None,
        status_sink: reporting.Sink | None = None,
        members: reporting.Members | None = None,
    ) -> None:
        self.settings = settings
        c = settings.config
        self.spec = settings.spec
        self.schema = settings.schema
        self.partition = settings.partition
        self.metrics = metrics_.Metrics(registry if registry is not None else CollectorRegistry())
        self.metrics.drift_threshold.set(c.drift_threshold)
        self.batcher: inference.MicroBatcher[Message] = inference.MicroBatcher(
            max_size=c.batch_max_size,
            max_delay=c.batch_max_delay_ms / 1000.0,
            capacity=settings.options.queue_capacity,
        )
        self.pipeline = pipeline.Pipeline(
            self.spec,
            self.schema,
            threshold=c.drift_threshold,
            drift_window=c.drift_window,
            detector=c.drift_detector,
            training_window=c.training_window,
            fresh_max_seconds=settings.options.fresh_window_max_seconds,
            max_devices=settings.options.max_devices,
            bootstrap_min=BOOTSTRAP_MIN_READINGS,
            bootstrap_period=settings.options.bootstrap_upload_seconds,
        )
        self.holder = models.ModelHolder()
        self._reported_error: str | None = None
        self._rejections = logs.RateLimiter(burst=5, per=10.0)
        self._stopping = threading.Event()
        self._heartbeat = time.monotonic()
        self._gauges_at = 0.0
        self._outputs: dict[str, tuple[str, str]] = {}

        self.mlflow: mlflowapi.Client | None = (
            registry_client(c.mlflow_tracking_uri) if c.mlflow_tracking_uri else None
        )
        self.poller = (
            models.ModelPoller(
                self.holder,
                self.mlflow,
                name=c.model_name,
                alias=c.model_alias,
                spec=self.spec,
                interval=c.model_poll_seconds,
                on_load=lambda result: self.metrics.model_loads.labels(result).inc(),
            )
            if self.mlflow is not None
            else None
        )
        sink = status_sink if status_sink is not None else self._default_sink(api_client)
        if members is None and isinstance(sink, reporting.KubernetesSink):
            members = self._default_members(sink)
        self.members = members if settings.partition_mode == "dynamic" else None
        if settings.partition_mode == "dynamic" and self.members is None:
            log.warning("Dynamic partitioning has no way to read the replicas; this one handles all devices")
        self.ownership: partition.Ownership = (
            partition.Rendezvous(settings.pod_name or "", [])
            if settings.partition_mode == "dynamic"
            else self.partition
        )
        self._owned_by: partition.Ownership = self.ownership
        self.reporter = reporting.Reporter(
            sink,
            interval=c.report_interval_seconds,
            metrics=self.metrics,
            upload_window=self._upload_window if self.mlflow is not None else None,
            # members seen through their reports must report once per interval, or the others drop them
            heartbeat=c.report_interval_seconds
            if self.members is not None and self.members.needs_heartbeat
            else None,
            # the RMSE is written when it moves by a tenth of the threshold, not on every wiggle
            rmse_step=RMSE_REPORT_STEP * c.drift_threshold,
            full_window=c.drift_window,  # from then on the operator counts this replica's RMSE
            tick=self.refresh_membership if self.members is not None else None,
            tick_interval=settings.options.membership_refresh_seconds,
        )
        self._show_ownership()
        self.connection = mqtt.Connection(
            host=c.broker_host,
            port=c.broker_port,
            client_id=settings.client_id,
            topics=c.topics,
            on_message=self._on_message,
            username=settings.mqtt_username,
            password=settings.mqtt_password,
            tls=c.broker_tls,
            ca_file=settings.options.broker_ca_file,
            cert_file=settings.options.broker_cert_file,
            key_file=settings.options.broker_key_file,
            session_expiry=settings.options.session_expiry_seconds,
            output_qos=settings.options.output_qos,
            max_pending=settings.options.queue_capacity,
            on_connection_change=self._on_connection_change,
        )
        self.http = http.Server(self, bind=settings.options.http_bind, port=c.http_port)
        self._worker = threading.Thread(target=self._work, name="worker", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def _default_sink(self, api_client: kubeapi.Client | Any) -> reporting.Sink:
        ref = self.settings.edgemodel_ref()
        if ref is None or not self.settings.pod_name:
            if ref is not None:
                log.warning("POD_NAME is not set; drift goes to the log only")
            return reporting.LogSink()
        client = api_client if api_client is not None else reporting.api_client_from_environment()
        return reporting.KubernetesSink(
            client,
            namespace=ref[0],
            name=ref[1],
            pod=self.settings.pod_name,
            member_ttl=self.settings.member_ttl,
        )

    def _default_members(self, sink: reporting.KubernetesSink) -> reporting.Members:
        """The inference Service's EndpointSlices when the config names it, else the reports in the status."""
        service = self.settings.config.peer_service
        if service is None:
            return sink
        return reporting.EndpointSliceMembers(sink.client, namespace=sink.namespace, service=service)

    @property
    def http_port(self) -> int:
        return self.http.port

    @property
    def drift(self) -> drift.DriftMonitor:
        return self.pipeline.drift

    @property
    def window(self) -> TrainingWindow:
        return self.pipeline.window

    @property
    def _serving(self) -> str | None:
        return self.pipeline.serving

    def start(self) -> App:
        self.http.start()
        if self.members is not None:
            self.refresh_membership()  # know the others before the first message
        self.reporter.start()
        self._worker.start()
        if self.poller is not None:
            self.poller.start()
        self.connection.start()
        log.info(
            "Started runtime",
            extra={
                "topics": self.settings.config.topics,
                "partition": self.ownership.mode,
                "members": self.ownership.members,
                "client_id": self.settings.client_id,
                "http_port": self.http_port,
            },
        )
        return self

    def stop(self) -> None:
        """Take no more readings, finish the queued ones, send their predictions, then stop every thread."""
        self.connection.close_input()
        self._stopping.set()
        if self._worker.is_alive():
            self._worker.join(60)
        if not self.connection.flush(timeout=10.0):
            log.warning(
                "Stopped with %d predictions unacknowledged by the broker", self.connection.unacknowledged
            )
        self.connection.stop()
        if self.poller is not None:
            self.poller.stop()
        self.reporter.stop()
        if self.members is not None:
            self._leave()
        self.http.stop()
        log.info("Stopped runtime")

    # ------------------------------------------------------------------ membership

    def refresh_membership(self) -> None:
        """Read the live replicas; adopt them if they changed (reporter thread)."""
        assert self.members is not None
        me = self.settings.pod_name or ""
        try:
            live = self.members.live(me)
        except Exception as exc:  # noqa: BLE001 - keep the last membership; try again next tick
            self.metrics.membership_refreshes.labels("failed").inc()
            if self._rejections.allow("membership"):
                log.warning("Failed to read the live replicas: %s", exc)
            return
        self.metrics.membership_refreshes.labels("ok").inc()
        current = self.ownership
        if isinstance(current, partition.Rendezvous) and set(current.names) == live:
            return
        self.ownership = partition.Rendezvous(me, live)  # one reference swap; the worker adopts it
        self.metrics.membership_changes.inc()
        self._show_ownership()
        log.info(
            "Changed the replicas sharing the devices",
            extra={"members": sorted(live), "previous": list(getattr(current, "names", ()))},
        )

    def _leave(self) -> None:
        """On a clean stop, remove this replica's entry so the others take its devices at once."""
        assert self.members is not None
        try:
            self.members.remove()
        except Exception as exc:  # noqa: BLE001 - the operator removes it once the Pod is gone
            log.warning("Failed to remove this replica's status entry: %s", exc)

    def _show_ownership(self) -> None:
        ownership = self.ownership
        for mode in ("all", "static", "dynamic"):
            self.metrics.partition_mode.labels(mode).set(1 if mode == ownership.mode else 0)
        self.metrics.partition_members.set(ownership.members)

    def wait_connected(self, timeout: float = 30.0) -> bool:
        return self.connection.wait_connected(timeout)

    def __enter__(self) -> App:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ message path

    def _on_message(self, topic: str, payload: bytes) -> None:
        """paho's network thread: queue the message (the connection bounds how many wait)."""
        self.batcher.push((topic, payload, time.monotonic(), time.time()))

    def _on_connection_change(self, connected: bool) -> None:
        self.metrics.mqtt_connected.set(1 if connected else 0)
        if connected:
            self.metrics.mqtt_connects.inc()

    def _work(self) -> None:
        while not (self._stopping.is_set() and len(self.batcher) == 0):
            self._heartbeat = time.monotonic()
            if not self._model_known():
                if self._stopping.is_set():
                    break  # never acknowledged: the broker keeps these readings for the next start
                continue
            batch = self.batcher.next_batch(timeout=_IDLE_WAIT)
            self._heartbeat = time.monotonic()
            predictions: list[int] = []
            try:
                model = self._follow_model()
                self._follow_ownership()
                if batch:
                    predictions = self._process(batch, model)
                self._refresh_gauges()
            except Exception:
                log.exception("Failed to process a batch of %d messages", len(batch))
            # Done with the batch, even one that failed (it would fail again): acknowledge its
            # readings once the broker has their predictions.
            self.connection.done(len(batch), predictions)
            self.connection.settle()

    def _model_known(self) -> bool:
        """Whether the poller has answered which model serves (or that none does) yet; waits a little."""
        return self.poller is None or self.poller.resolved.wait(_IDLE_WAIT)

    def _follow_model(self) -> modelmeta.LoadedModel | None:
        """Between batches: adopt a swapped model, notice load errors; return the model to use."""
        state = self.holder.state
        if self.pipeline.adopt_model(state.version):
            self.metrics.feature_psi.clear()
            if state.model is not None:
                self.metrics.model_info.info({"name": state.model.name, "version": state.model.version})
                self.metrics.model_loaded.set(1)
                self._tune_detector(state.model)
            self._report()
        if state.error != self._reported_error:
            self._reported_error = state.error
            self.metrics.model_error.set(0 if state.error is None else 1)
            self._report()
        return state.model

    def _tune_detector(self, model: modelmeta.LoadedModel) -> None:
        """Tune the change detector for the version now serving: its calibration; hand-set values win."""
        tuning = self.settings.detector_tuning(model.meta.calibration)
        self.pipeline.drift.retune(tuning)
        log.info(
            "Tuned the change detector for version %s (%s): delta %.4g, threshold %.4g",
            model.version, tuning.source, tuning.delta, tuning.threshold,
            extra={"version": model.version, "tuning": tuning.source},
        )  # fmt: skip

    def _follow_ownership(self) -> None:
        """Between batches: adopt a new membership and forget the devices that moved away."""
        ownership = self.ownership
        if ownership is self._owned_by:
            return
        self._owned_by = ownership
        moved = self.pipeline.forget(ownership.owns)
        if moved:
            log.info("Handed over %d devices to other replicas", moved)

    def _process(self, batch: Sequence[Message], model: modelmeta.LoadedModel | None) -> list[int]:
        """Run the batch through the pipeline, then publish, count, log and report what it gave.

        Returns the message ids of the predictions published.
        """
        m = self.metrics
        owner = self._owned_by
        step = self.pipeline.process(
            batch,
            model,
            owns=None if owner.mode == "all" else owner.owns,
            now=time.monotonic(),
            may_bootstrap=self.poller is not None and self.poller.resolved.is_set(),
        )
        m.messages.inc(step.messages)
        m.batch_size.observe(step.messages)
        for rejection in step.rejected:
            self._reject(rejection.reason, rejection.detail, rejection.topic)
        if step.others:
            m.other_partition.inc(step.others)
        m.readings.inc(len(step.plan.accepted))
        if step.unpredicted:
            m.unpredicted.inc(step.unpredicted)
        if step.bootstrap:
            log.info(
                "Handing the training window over for a bootstrap",
                extra={"readings": len(self.pipeline.window)},
            )
            self._report(window_reason="bootstrap")
        if step.prediction_error is not None:
            m.prediction_failures.inc()
            if self._rejections.allow("predict"):
                log.error(
                    "Failed to predict a batch of %d rows: %s", len(step.plan.rows), step.prediction_error
                )
        published: list[int] = []
        if step.predictions is not None and step.version is not None:
            published = self._publish(step.plan, step.version, step.arrivals)
        self._record(step)
        return published

    def _output(self, device: str) -> tuple[str, str]:
        """The output topic of ``device`` and its id as a JSON string, remembered."""
        out = self._outputs.get(device)
        if out is None:
            if len(self._outputs) >= self.settings.options.max_devices:
                self._outputs.clear()
            template = self.settings.config.output_topic
            out = self._outputs[device] = (template.replace("{device}", device), json.dumps(device))
        return out

    def _publish(self, plan: inference.Plan, version: str, arrivals: dict[int, float]) -> list[int]:
        """Publish the batch's predictions, in order; their message ids. Metrics: once per batch."""
        connection = self.connection
        if not connection.wait_for_window(PUBLISH_WAIT):
            log.warning("Publishing although %d predictions are unacknowledged", connection.unacknowledged)
        publish = connection.publish
        output = self._output
        accepted = plan.accepted
        # The same text as json.dumps of the dict: floats are written with repr, ids are
        # JSON strings; a prediction that is not finite was left as None.
        tail = f', "modelVersion": {json.dumps(version)}, "horizon": {self.spec.horizon}}}'
        sent: list[float] = []
        mids: list[int] = []
        failed = 0
        for slot, index in zip(plan.row_slots, plan.row_readings, strict=True):
            if slot.prediction is None:
                continue
            topic, device = output(slot.device)
            body = f'{{"device": {device}, "ts": {slot.ts!r}, "prediction": {slot.prediction!r}{tail}'
            mid = publish(topic, body.encode())
            if mid is not None:
                mids.append(mid)
                sent.append(arrivals[id(accepted[index])])
            else:
                failed += 1
        done = time.monotonic()
        m = self.metrics
        if sent:
            m.predictions.inc(len(sent))
            observe = m.latency.observe
            for arrived in sent:
                observe(done - arrived)
        if failed:
            m.publish_failures.inc(failed)
        return mids

    def _record(self, step: pipeline.Step) -> None:
        """Count, log and report what the batch did to the drift state."""
        if not step.outcomes:
            return
        self.metrics.outcomes.inc(step.outcomes)
        name = self.settings.config.model_name
        if step.drift_started is not None:
            self.metrics.detections.labels(step.drift_started).inc()
            log.warning(
                "Detected drift of model %s version %s",
                name,
                self._serving,
                extra={"reason": step.drift_started, "rmse": self.drift.rmse, "samples": self.drift.samples},
            )
        elif step.drift_cleared:
            log.info("Drift of model %s version %s cleared", name, self._serving)
        if step.drift_started is None and step.window_reason == "drift" and step.fresh is not None:
            log.info(
                "Handing over the training window with the changed plant",
                extra={"readings_after_change": step.fresh.count, "change_ts": step.fresh.change_ts},
            )
        self._report(window_reason=step.window_reason, fresh=step.fresh)

    def _reject(self, reason: str, detail: str, topic: str | None) -> None:
        self.metrics.rejected.labels(reason).inc()
        if self._rejections.allow(reason):
            log.warning(
                "Rejected payload: %s",
                detail,
                extra={"reason": reason, "topic": topic, "suppressed": self._rejections.suppressed(reason)},
            )

    def _report(self, *, window_reason: str | None = None, fresh: FreshReadings | None = None) -> None:
        state = self.holder.state
        report = reporting.DriftReport(
            rmse=self.drift.rmse,
            samples=self.drift.samples,
            detected=self.drift.detected,
            reason=self.drift.reason,
            model_version=self._serving,
            model_error=state.error,
        )
        handoff = None
        if window_reason is not None:
            handoff = reporting.WindowHandoff(
                self.pipeline.window.snapshot(),
                reason=window_reason,
                change_ts=None if fresh is None else fresh.change_ts,
                readings_after_change=None if fresh is None else min(fresh.count, len(self.pipeline.window)),
            )
        self.reporter.update(report, window=handoff)

    def _refresh_gauges(self) -> None:
        now = time.monotonic()
        m = self.metrics
        m.queue_depth.set(len(self.batcher))
        rmse = self.drift.rmse
        m.rmse.set(float("nan") if rmse is None else rmse)
        m.rmse_samples.set(self.drift.samples)
        m.drift_detected.set(1 if self.drift.detected else 0)
        m.detector_statistic.set(self.drift.statistic)
        if now - self._gauges_at >= 1.0:
            self._gauges_at = now
            devices = self.pipeline.inference.devices
            m.devices.set(devices)
            m.owned_devices.set(devices)
            for feature, value in self.pipeline.psi.psi().items():
                m.feature_psi.labels(feature).set(value)

    def _upload_window(self, handoff: reporting.WindowHandoff, state: reporting.DriftReport) -> None:
        assert self.mlflow is not None
        run_id = windowlog.upload(
            self.mlflow,
            handoff.readings,
            fields=self.spec.fields,
            model_name=self.settings.config.model_name,
            edgemodel=self.settings.config.edgemodel,
            pod=self.settings.pod_name,
            reason=handoff.reason,
            model_version=state.model_version,
            change_ts=handoff.change_ts,
            readings_after_change=handoff.readings_after_change,
        )
        log.info(
            "Logged the training window",
            extra={
                "run_id": run_id,
                "readings": len(handoff.readings),
                "reason": handoff.reason,
                "readings_after_change": handoff.readings_after_change,
            },
        )

    # ------------------------------------------------------------------ HTTP endpoints

    def metrics_text(self) -> tuple[bytes, str]:
        self.metrics.queue_depth.set(len(self.batcher))
        return metrics_.render(self.metrics.registry)

    def health(self) -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - self._heartbeat
        ok = self._worker.is_alive() and age < HEALTH_TIMEOUT
        return ok, {"status": "ok" if ok else "stalled", "workerLoopAgeSeconds": round(age, 3)}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        healthy, _ = self.health()
        state = self.holder.state
        ok = healthy and self.connection.connected
        return ok, {
            "status": "ready" if ok else "not ready",
            "mqttConnected": self.connection.connected,
            "modelVersion": state.version,
            "modelError": state.error,
        }

    def predict(self, body: bytes) -> tuple[int, dict[str, Any]]:
        code, answer = self._predict_request(body)
        self.metrics.http_predictions.labels(str(code)).inc()
        return code, answer

    def _predict_request(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """The answer to a ``/predict`` body (parsed by :func:`http.parse_predict`)."""
        try:
            readings = http.parse_predict(body, self.schema, lags=self.spec.lags, received=time.time())
        except http.BadRequestError as exc:
            return 400, exc.answer
        model = self.holder.state.model
        if model is None:
            return 503, {"error": "no_model", "detail": "no model version has been loaded yet"}
        try:
            value = self.pipeline.predict_one(model, readings)
        except Exception as exc:  # noqa: BLE001
            return 500, {"error": "prediction_failed", "detail": str(exc)[:200]}
        last = readings[-1]
        return 200, {
            "device": last.device,
            "ts": last.ts,
            "prediction": value,
            "modelVersion": model.version,
            "horizon": self.spec.horizon,
        }


def registry_client(uri: str) -> mlflowapi.Client:
    """The tracking server, reached through MLflow's REST API (no MLflow client in the runtime)."""
    return mlflowapi.Client(uri)
