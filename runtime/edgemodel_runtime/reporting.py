"""Reporting this replica's drift state: to the EdgeModel's status, or to the log when standalone.

Only ``status.replicaDrift.<podName>`` is merge-patched, through the status subresource
(:func:`edgemodel.contracts.replica_drift_patch`). :class:`ReportPolicy` (pure) decides
when: a change of state (``detected``, ``reason``, model version or model error) goes
out at once; the figures (RMSE) only when they moved by a set step, at most once per
interval; otherwise the same state is re-sent only as a slow keep-alive. Every write wakes
the operator, so a steady stream writes about once a minute, not every few seconds.

When drift starts, :class:`Reporter` first hands the training window to its
``upload_window`` callable (MLflow), and only then sends the report. The same happens
with reason ``bootstrap`` while no model serves.

With dynamic partitioning the reporter thread also runs ``tick`` every
``tick_interval`` seconds: a read of the live replicas (:class:`Members`). In a cluster
they come from the inference Service's EndpointSlices (:class:`EndpointSliceMembers`),
which cost no write; without a Service, from the replicas' own reports in the status
(:class:`KubernetesSink`), which then must be re-sent every interval as a heartbeat.

I/O: the Kubernetes API over HTTPS (:mod:`edgemodel_runtime.kubeapi`: no kubernetes client), in the
reporter's own thread.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from edgemodel import api, contracts
from edgemodel_runtime import kubeapi, partition, payloads
from edgemodel_runtime import metrics as metrics_

__all__ = [
    "DriftReport",
    "EndpointSliceMembers",
    "KubernetesSink",
    "LogSink",
    "Members",
    "ReportPolicy",
    "Reporter",
    "Sink",
    "api_client_from_environment",
]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DriftReport:
    """A replica's drift state, without the time it is reported at."""

    rmse: float | None = None
    samples: int = 0
    detected: bool = False
    reason: str | None = None
    model_version: str | None = None
    model_error: str | None = None

    def key(self) -> tuple[object, ...]:
        """The part whose change is reported at once."""
        return (self.detected, self.reason, self.model_version, self.model_error)

    def to_entry(self, now: datetime.datetime) -> api.ReplicaDriftEntry:
        return api.ReplicaDriftEntry(
            rmse=None if self.rmse is None else round(self.rmse, 6),
            samples=self.samples,
            detected=self.detected,
            report_time=now,
            model_version=self.model_version,
            reason=self.reason,
            model_error=None if self.model_error is None else self.model_error[:1000],
        )


class ReportPolicy:
    """When to send: a state change at once (at most once per ``min_gap``), else rate-limited.

    >>> p = ReportPolicy(interval=5.0)
    >>> p.due(DriftReport(), now=0.0)
    True
    >>> p.sent(DriftReport(), now=0.0)
    >>> p.due(DriftReport(rmse=1.0), now=1.0), p.due(DriftReport(rmse=1.0), now=5.0)
    (False, True)
    >>> p.due(DriftReport(detected=True, reason="Threshold"), now=1.0)
    True
    >>> p.sent(DriftReport(rmse=1.0), now=5.0)
    >>> p.due(DriftReport(rmse=1.05), now=30.0), p.due(DriftReport(rmse=1.2), now=30.0)
    (False, True)
    >>> p.due(DriftReport(rmse=1.05), now=65.0)  # the keep-alive
    True
    """

    RMSE_STEP = 0.1
    """Without ``rmse_step``: a relative change of the RMSE reported within an interval."""

    def __init__(
        self,
        *,
        interval: float,
        heartbeat: float | None = None,
        min_gap: float = 1.0,
        rmse_step: float | None = None,
        full_window: int | None = None,
    ) -> None:
        self.interval = interval
        self.full_window = full_window
        """Outcomes in a full drift window: the RMSE counts (for the operator) from then on, so
        reaching it is reported at once, like a change of state."""
        self.rmse_step = rmse_step
        """A change of the RMSE reported within an interval (smaller ones wait for the keep-alive)."""
        self.heartbeat = heartbeat if heartbeat is not None else 12 * interval
        self.min_gap = min(min_gap, interval)
        self._last: DriftReport | None = None
        self._last_time = 0.0
        self._not_before = 0.0

    def due(self, state: DriftReport, now: float) -> bool:
        if now < self._not_before:
            return False
        if self._last is None:
            return True
        elapsed = now - self._last_time
        if state.key() != self._last.key() or self._filled(state):
            return elapsed >= self.min_gap
        if elapsed >= self.heartbeat:
            return True
        return elapsed >= self.interval and self._moved(state)

    def _filled(self, state: DriftReport) -> bool:
        """Whether the drift window filled (or emptied) since the last report."""
        last = self._last
        if self.full_window is None or last is None:
            return False
        return (state.samples >= self.full_window) != (last.samples >= self.full_window)

    def _moved(self, state: DriftReport) -> bool:
        """Whether the figures moved by a step since the last report (same state key)."""
        last = self._last
        assert last is not None
        if state.rmse is None or last.rmse is None:
            return state.rmse != last.rmse
        step = self.rmse_step if self.rmse_step is not None else self.RMSE_STEP * abs(last.rmse)
        return abs(state.rmse - last.rmse) > step

    def next_check(self, state: DriftReport, now: float) -> float:
        """Seconds until :meth:`due` may turn true for an unchanged ``state``."""
        if self._last is None or state.key() != self._last.key() or self._filled(state):
            wait = max(self._not_before - now, self._last_time + self.min_gap - now)
        else:
            later = self.interval if self._moved(state) else self.heartbeat
            wait = max(self._not_before - now, self._last_time + later - now)
        return max(wait, 0.0)

    def sent(self, state: DriftReport, now: float) -> None:
        self._last = state
        self._last_time = now

    def failed(self, now: float) -> None:
        """Back off for one interval after a failed send."""
        self._not_before = now + self.interval


class Sink(Protocol):
    def send(self, entry: api.ReplicaDriftEntry) -> None: ...


class Members(Protocol):
    """Where the live replicas sharing the devices are read from."""

    needs_heartbeat: bool
    """Whether a replica is seen only while it keeps reporting (then reports are heartbeats)."""

    def live(self, me: str) -> frozenset[str]:
        """The live replicas, ``me`` included."""
        ...

    def remove(self) -> None:
        """On a clean stop: let the others take this replica's devices at once."""
        ...


class LogSink:
    """Standalone: the report is a log line."""

    def send(self, entry: api.ReplicaDriftEntry) -> None:
        log.info("Reported replica drift", extra={"drift": entry.to_wire()})


class KubernetesSink:
    """Merge-patch ``status.replicaDrift.<pod>`` of one EdgeModel; its members are the replicas
    that reported within ``member_ttl`` seconds."""

    needs_heartbeat = True

    def __init__(
        self,
        api_client: kubeapi.Client | Any,
        *,
        namespace: str,
        name: str,
        pod: str,
        member_ttl: float = 15.0,
    ) -> None:
        self.client = kubeapi.client_for(api_client)
        self.status_path = (
            kubeapi.custom_object_path(api.GROUP, api.VERSION, namespace, api.PLURAL, name) + "/status"
        )
        self.namespace = namespace
        self.name = name
        self.pod = pod
        self.member_ttl = member_ttl

    def _patch(self, patch: Any) -> None:
        self.client.merge_patch(self.status_path, patch)

    def send(self, entry: api.ReplicaDriftEntry) -> None:
        self._patch(contracts.replica_drift_patch(self.pod, entry))

    def replica_drift(self) -> Mapping[str, Any]:
        """``status.replicaDrift`` of the EdgeModel: one GET of the status subresource."""
        obj = self.client.request("GET", self.status_path)
        status = obj.get("status") if isinstance(obj, Mapping) else None
        entries = status.get("replicaDrift") if isinstance(status, Mapping) else None
        return entries if isinstance(entries, Mapping) else {}

    def live(self, me: str) -> frozenset[str]:
        now = datetime.datetime.now(datetime.UTC)
        return partition.live_members(self.replica_drift(), me=me, now=now, max_age=self.member_ttl)

    def remove(self) -> None:
        """Remove this replica's entry, so the others take over its devices at once."""
        self._patch(contracts.replica_drift_patch(self.pod, None))


class EndpointSliceMembers:
    """The Pods behind the inference Service (its EndpointSlices): one list per refresh, no writes."""

    needs_heartbeat = False

    def __init__(self, api_client: kubeapi.Client | Any, *, namespace: str, service: str) -> None:
        self.client = kubeapi.client_for(api_client)
        self.namespace = namespace
        self.selector = f"kubernetes.io/service-name={service}"

    def live(self, me: str) -> frozenset[str]:
        body = self.client.list_endpoint_slices(self.namespace, label_selector=self.selector)
        items = body.get("items") if isinstance(body, Mapping) else None
        return partition.endpoint_members(items if isinstance(items, list) else [], me=me)

    def remove(self) -> None:
        """Nothing to remove: a Pod being deleted is marked terminating in its EndpointSlice."""


def api_client_from_environment() -> kubeapi.Client:
    """In-cluster credentials when in a Pod, else the kubeconfig (``KUBECONFIG``)."""
    return kubeapi.from_environment()


@dataclasses.dataclass(frozen=True)
class WindowHandoff:
    """A training window to log before the next report."""

    readings: Sequence[payloads.Reading]
    reason: str = "drift"
    """``drift`` or ``bootstrap``."""
    change_ts: float | None = None
    """Reading time from which the window shows the changed plant."""
    readings_after_change: int | None = None


WindowUpload = Callable[[WindowHandoff, DriftReport], None]
"""``(window, state)``: log a training window to MLflow."""


class Reporter:
    """Sends :class:`DriftReport` updates from its own thread, so no message waits for the API."""

    def __init__(
        self,
        sink: Sink,
        *,
        interval: float,
        metrics: metrics_.Metrics,
        upload_window: WindowUpload | None = None,
        heartbeat: float | None = None,
        rmse_step: float | None = None,
        full_window: int | None = None,
        tick: Callable[[], None] | None = None,
        tick_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.policy = ReportPolicy(
            interval=interval, heartbeat=heartbeat, rmse_step=rmse_step, full_window=full_window
        )
        self.metrics = metrics
        self.upload_window = upload_window
        self.tick = tick
        """Run in the reporter thread every ``tick_interval`` seconds (membership refresh)."""
        self.tick_interval = tick_interval
        self._next_tick = 0.0
        self._clock = clock
        self._cond = threading.Condition()
        self._state = DriftReport()
        self._window: WindowHandoff | None = None
        self._uploading = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="reporter", daemon=True)

    def start(self) -> Reporter:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def update(
        self,
        state: DriftReport,
        *,
        window: WindowHandoff | None = None,
    ) -> None:
        """Record the newest state; ``window`` is uploaded before this state is reported."""
        with self._cond:
            self._state = state
            if window is not None:
                self._window = window
            self._cond.notify_all()

    @property
    def state(self) -> DriftReport:
        return self._state

    @property
    def uploading(self) -> bool:
        """Whether a training window waits for, or is in, its upload."""
        with self._cond:
            return self._window is not None or self._uploading

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = self._clock()
                wait = self.policy.next_check(self._state, now)
                tick_wait = self._next_tick - now if self.tick is not None else wait
                if wait > 0 and tick_wait > 0 and self._window is None:
                    self._cond.wait(min(wait, tick_wait, 5.0))
                    continue
                state, window, self._window = self._state, self._window, None
                self._uploading = window is not None
            if self.tick is not None and self._clock() >= self._next_tick:
                self._run_tick()
            uploaded = window is not None and self._upload(window, state)
            self._uploading = False
            if uploaded or self.policy.due(state, self._clock()):
                self._send(state)

    def _run_tick(self) -> None:
        assert self.tick is not None
        self._next_tick = self._clock() + self.tick_interval
        try:
            self.tick()
        except Exception:  # the tick handles its own errors; this only keeps the reporter alive
            log.exception("Failed to run the reporter's periodic task")

    def _upload(self, window: WindowHandoff, state: DriftReport) -> bool:
        """Upload ``window``; True when it was logged (the report then follows at once)."""
        if self.upload_window is None:
            return False
        reason = window.reason
        try:
            self.upload_window(window, state)
        except Exception as exc:  # noqa: BLE001 - the drift is reported anyway
            self.metrics.windows.labels("failed", reason).inc()
            log.error("Failed to log the training window (%s): %s", reason, exc)
            return False
        self.metrics.windows.labels("logged", reason).inc()
        return True

    def _send(self, state: DriftReport) -> None:
        now = self._clock()
        try:
            self.sink.send(state.to_entry(datetime.datetime.now(datetime.UTC)))
        except Exception as exc:  # noqa: BLE001 - API down or object gone: retry later
            self.metrics.reports.labels("failed").inc()
            self.policy.failed(now)
            log.warning("Failed to report replica drift: %s", exc)
        else:
            self.metrics.reports.labels("sent").inc()
            self.policy.sent(state, now)
