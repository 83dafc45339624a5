"""kopf wiring: every trigger asks the runner for the same level-based reconcile.

Triggers: create, update and resume of an EdgeModel; a resync timer; a change in the
replicas' drift reports; a child workload changing (a Job finishing, a Deployment
becoming available, someone editing a child by hand). Handlers stay thin.

I/O: none beyond what kopf does; the work happens in :mod:`edgemodel_operator.reconcile`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import kopf
import prometheus_client

from edgemodel import api
from edgemodel_operator import kube, leader, metrics, names, reconcile, runner
from edgemodel_operator.settings import Settings

log = logging.getLogger(__name__)

SETTINGS = Settings.from_env(os.environ)
MANAGED = {"app.kubernetes.io/managed-by": names.MANAGED_BY}


class _State:
    runner: runner.Runner | None = None
    elector: leader.LeaderElector | None = None
    metrics: metrics.OperatorMetrics | None = None
    task: asyncio.Task[None] | None = None


STATE = _State()


def _runner() -> runner.Runner:
    if STATE.runner is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return STATE.runner


async def _reconcile(namespace: str | None, name: str | None) -> None:
    if namespace is None or name is None:
        return
    try:
        await _runner().request(namespace, name)
    except reconcile.InvalidSpecError as exc:
        raise kopf.PermanentError(f"invalid spec: {exc}") from exc
    except kube.ApiException as exc:
        if exc.status in (409, 429) or (exc.status or 0) >= 500:
            raise kopf.TemporaryError(f"API server said {exc.status} {exc.reason}", delay=2) from exc
        raise


async def _lead_forever(elector: leader.LeaderElector, run: runner.Runner, gauge: Any) -> None:
    """Keep the Lease; on becoming leader, reconcile every EdgeModel once."""
    interval = max(1.0, elector.duration.total_seconds() / 5)
    leading = False
    while True:
        try:
            now_leading = await asyncio.to_thread(elector.step)
        except Exception:
            log.exception("Leader election step failed")
            now_leading = False
        gauge.set(1 if now_leading else 0)
        if now_leading and not leading:
            asyncio.create_task(_resync_all(run))  # noqa: RUF006 - fire and forget
        leading = now_leading
        await asyncio.sleep(interval)


async def _resync_all(run: runner.Runner) -> None:
    client = run.reconciler.kube
    namespaces = [SETTINGS.namespace] if SETTINGS.namespace else None
    try:
        if namespaces is None:
            items = (
                await asyncio.to_thread(
                    client._request, "GET", f"/apis/{api.GROUP}/{api.VERSION}/{api.PLURAL}"
                )
            ).get("items") or []
        else:
            items = []
            for ns in namespaces:
                items += (
                    await asyncio.to_thread(
                        client._request,
                        "GET",
                        f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{ns}/{api.PLURAL}",
                    )
                ).get("items") or []
    except kube.ApiException:
        log.exception("Failed to list EdgeModels for a resync")
        return
    for item in items:
        meta = item.get("metadata") or {}
        with contextlib.suppress(Exception):
            await run.request(str(meta["namespace"]), str(meta["name"]))


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="edgeml.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="edgeml.dev", key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 8
    client = kube.Kube.from_environment(field_manager=SETTINGS.field_manager)
    STATE.metrics = metrics.OperatorMetrics()
    if SETTINGS.metrics_port:
        prometheus_client.start_http_server(SETTINGS.metrics_port, addr=SETTINGS.bind_address)
    reconciler = reconcile.Reconciler(client, SETTINGS, operator_metrics=STATE.metrics)
    if SETTINGS.leader_election:
        elector = leader.LeaderElector(
            client,
            namespace=SETTINGS.lease_namespace,
            name=SETTINGS.lease_name,
            identity=SETTINGS.identity,
            duration_seconds=SETTINGS.lease_duration_seconds,
        )
        STATE.elector = elector
        STATE.runner = runner.Runner(reconciler, is_leader=lambda: elector.is_leader)
        STATE.task = asyncio.create_task(_lead_forever(elector, STATE.runner, STATE.metrics.leader))
    else:
        STATE.runner = runner.Runner(reconciler, is_leader=lambda: True)
        STATE.metrics.leader.set(1)
    log.info("Started edgemodel-operator as %s", SETTINGS.identity)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if STATE.task is not None:
        STATE.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await STATE.task
    if STATE.elector is not None:
        await asyncio.to_thread(STATE.elector.release)


@kopf.on.resume(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.create(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.update(api.GROUP, api.VERSION, api.PLURAL)
async def changed(namespace: str | None, name: str | None, **_: Any) -> None:
    await _reconcile(namespace, name)


@kopf.timer(
    api.GROUP,
    api.VERSION,
    api.PLURAL,
    interval=SETTINGS.resync_seconds,
    initial_delay=SETTINGS.resync_seconds,
)
async def resync(namespace: str | None, name: str | None, **_: Any) -> None:
    await _reconcile(namespace, name)


def _report_fingerprint(status: Any) -> tuple[Any, ...]:
    drift = (status or {}).get("replicaDrift") or {}
    return tuple(
        sorted(
            (pod, e.get("detected"), e.get("modelVersion"), e.get("modelError"), (e.get("samples") or 0) >= 1)
            for pod, e in drift.items()
        )
    )


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def reported(event: kopf.RawEvent, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """A runtime's report changed what matters (drift detected, model version): act at once."""
    if event.get("type") not in ("MODIFIED", "ADDED"):
        return
    obj: Any = event.get("object") or {}
    fingerprint = _report_fingerprint(obj.get("status"))
    if memo.get("reports") == fingerprint:
        return
    memo["reports"] = fingerprint
    with contextlib.suppress(kopf.PermanentError):
        await _reconcile(namespace, name)


def _owner(body: Any) -> str | None:
    labels = (body.get("metadata") or {}).get("labels") or {}
    owner = labels.get(names.LABEL_EDGEMODEL)
    return str(owner) if owner else None


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("", "v1", "services", labels=MANAGED)
@kopf.on.event("", "v1", "configmaps", labels=MANAGED)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=MANAGED)
async def child_changed(event: kopf.RawEvent, body: kopf.Body, namespace: str | None, **_: Any) -> None:
    """A child changed: a Job finished, a Deployment's availability moved, or a hand edit."""
    owner = _owner(body)
    if owner is None or event.get("type") not in ("MODIFIED", "DELETED"):
        return
    with contextlib.suppress(kopf.PermanentError, kopf.TemporaryError):
        await _reconcile(namespace, owner)
