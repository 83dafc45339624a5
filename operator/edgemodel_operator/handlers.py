"""kopf wiring: every trigger asks the runner for the same level-based reconcile.

Triggers: create, update and resume of an EdgeModel; a resync timer; a change in the
replicas' drift reports; a child workload changing (a Job finishing, a Deployment
becoming available, someone editing a child by hand). Handlers stay thin.

I/O: none beyond what kopf does; the work happens in :mod:`edgemodel_operator.reconcile`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
from typing import Any

import kopf
import prometheus_client

from edgemodel import api
from edgemodel_operator import kube, leader, metrics, names, observe, reconcile, runner
from edgemodel_operator.settings import Settings

log = logging.getLogger(__name__)

SETTINGS = Settings.from_env(os.environ)
MANAGED = {"app.kubernetes.io/managed-by": names.MANAGED_BY}


class _State:
    runner: runner.Runner | None = None
    elector: leader.LeaderElector | None = None
    metrics: metrics.OperatorMetrics | None = None
    task: asyncio.Task[None] | None = None
    lease_executor: concurrent.futures.ThreadPoolExecutor | None = None


STATE = _State()


def watched_namespaces(value: str | None) -> list[str]:
    """The namespaces named by ``EDGEMODEL_NAMESPACE`` (comma-separated); empty means all."""
    return [n.strip() for n in (value or "").split(",") if n.strip()]


def _runner() -> runner.Runner:
    if STATE.runner is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return STATE.runner


async def _reconcile(run: runner.Runner, namespace: str | None, name: str | None) -> reconcile.Outcome | None:
    """Ask ``run`` for a pass; None when none ran or it failed.

    One retry path: a failed pass is retried by the Runner, with its backoff, whatever
    woke it. So a failure is logged here and never raised to kopf, which would retry the
    handler (and so the pass) again on its own schedule. An invalid spec is a
    :class:`kopf.PermanentError`: only a spec change can fix it.
    """
    if namespace is None or name is None:
        return None
    try:
        return await run.request(namespace, name)
    except reconcile.InvalidSpecError as exc:
        raise kopf.PermanentError(f"invalid spec: {exc}") from exc
    except Exception:
        log.warning("Failed to reconcile EdgeModel %s/%s, will retry", namespace, name, exc_info=True)
        return None


async def _lead_forever(
    elector: leader.LeaderElector,
    run: runner.Runner,
    gauge: Any,
    executor: concurrent.futures.Executor,
) -> None:
    """Keep the Lease; on becoming leader, reconcile every EdgeModel that needs it.

    The Lease steps run on ``executor``, a thread of their own: reconciles have their own
    executor too, so however many are queued, a renewal never waits behind them. After
    every step that leads, the requests deferred while not leading are run.
    """
    loop = asyncio.get_running_loop()
    interval = max(1.0, elector.duration.total_seconds() / 5)
    while True:
        was_leading = elector.is_leader
        try:
            now_leading = await loop.run_in_executor(executor, elector.step)
        except Exception:
            log.exception("Leader election step failed")
            now_leading = False
        gauge.set(1 if now_leading else 0)
        if now_leading:
            if not was_leading:
                run.spawn(_resync_all(run))
            run.resume()
        await asyncio.sleep(interval)


async def _resync_all(run: runner.Runner) -> None:
    """Reconcile every EdgeModel that may have changed while this replica did not lead."""
    client = run.reconciler.kube
    items: list[dict[str, Any]] = []
    try:
        scopes: list[str | None] = [*watched_namespaces(SETTINGS.namespace)] or [None]
        for namespace in scopes:
            items += await asyncio.to_thread(client.list_all, api.KIND, namespace)
    except kube.ApiException:
        log.exception("Failed to list EdgeModels for a resync")
        return
    for item in items:
        meta = item.get("metadata") or {}
        ns, name = str(meta["namespace"]), str(meta["name"])
        # One already running or queued (a deferred request) started after this replica
        # took the Lease, which is all this safety net asks for.
        if not run.busy(ns, name) and run.reconciler.due(ns, name, meta.get("resourceVersion")):
            run.submit(ns, name)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="edgeml.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="edgeml.dev", key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 8
    STATE.metrics = metrics.OperatorMetrics()
    client = kube.Kube.from_environment(
        field_manager=SETTINGS.field_manager, on_request=STATE.metrics.api_requests.inc
    )
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
        STATE.runner = runner.Runner(
            reconciler, is_leader=lambda: elector.is_leader, workers=SETTINGS.reconcile_workers
        )
        STATE.lease_executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="lease"
        )
        STATE.task = asyncio.create_task(
            _lead_forever(elector, STATE.runner, STATE.metrics.leader, STATE.lease_executor)
        )
    else:
        STATE.runner = runner.Runner(reconciler, is_leader=lambda: True, workers=SETTINGS.reconcile_workers)
        STATE.metrics.leader.set(1)
    log.info("Started edgemodel-operator as %s", SETTINGS.identity)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if STATE.task is not None:
        STATE.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await STATE.task
    if STATE.runner is not None:
        await STATE.runner.close()
    if STATE.elector is not None:
        if STATE.lease_executor is not None:
            await asyncio.get_running_loop().run_in_executor(STATE.lease_executor, STATE.elector.release)
            STATE.lease_executor.shutdown(wait=False)
        else:
            await asyncio.to_thread(STATE.elector.release)


@kopf.on.resume(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.create(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.update(api.GROUP, api.VERSION, api.PLURAL)
async def changed(namespace: str | None, name: str | None, **_: Any) -> None:
    await _reconcile(_runner(), namespace, name)


@kopf.timer(
    api.GROUP,
    api.VERSION,
    api.PLURAL,
    interval=SETTINGS.resync_seconds,
    initial_delay=SETTINGS.resync_seconds,
)
async def resync(namespace: str | None, name: str | None, meta: kopf.Meta, **_: Any) -> None:
    """Level-based safety net; a tick with nothing new to look at costs no API call."""
    if namespace is None or name is None or STATE.runner is None:
        return
    if STATE.runner.reconciler.due(namespace, name, meta.get("resourceVersion")):
        await _reconcile(_runner(), namespace, name)


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
    if event.get("type") == "ADDED" and "reports" not in memo:
        # The first sight of an EdgeModel: the create or resume handler reconciles it, and
        # that pass reads these reports. A pass from here too would hold kopf's queue for
        # this object (the create handler waits behind it) and cost a second full pass.
        memo["reports"] = fingerprint
        return
    if memo.get("reports") == fingerprint:
        return
    # Remembered only once a reconcile has seen it: a request deferred (not leading),
    # folded into a run already going, or failed leaves it unremembered, so the next
    # event with the same reports asks again (kopf does not retry event handlers).
    outcome = None
    with contextlib.suppress(kopf.PermanentError):
        outcome = await _reconcile(_runner(), namespace, name)
    if outcome is not None:
        memo["reports"] = fingerprint


def _owner(body: Any) -> str | None:
    labels = (body.get("metadata") or {}).get("labels") or {}
    owner = labels.get(names.LABEL_EDGEMODEL)
    return str(owner) if owner else None


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("apps", "v1", "statefulsets", labels=MANAGED)
@kopf.on.event("", "v1", "services", labels=MANAGED)
@kopf.on.event("", "v1", "configmaps", labels=MANAGED)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=MANAGED)
async def child_changed(
    event: kopf.RawEvent, body: kopf.Body, namespace: str | None, memo: Any, **_: Any
) -> None:
    """A child changed: a Job finished, a workload's availability moved, or a hand edit."""
    owner = _owner(body)
    kind = str(body.get("kind") or "")
    if owner is None or namespace is None or event.get("type") not in ("ADDED", "MODIFIED", "DELETED"):
        return
    fingerprint = observe.child_fingerprint(kind, body)
    if event.get("type") == "ADDED" or (event.get("type") == "MODIFIED" and memo.get("child") == fingerprint):
        # ADDED: the pass that created it, or the resume after a restart, covers it. An
        # unchanged fingerprint: a controller's bookkeeping no pass acts on.
        memo["child"] = fingerprint
        return
    memo["child"] = fingerprint
    if STATE.runner is not None:
        STATE.runner.reconciler.mark_dirty(namespace, owner)
    with contextlib.suppress(kopf.PermanentError):
        await _reconcile(_runner(), namespace, owner)
