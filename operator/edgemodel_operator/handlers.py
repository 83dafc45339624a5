"""kopf wiring: every trigger asks the runner for the same level-based reconcile.

Triggers: create, update and resume of an EdgeModel; a resync loop; a change in the
replicas' drift reports; a child workload changing (a Job finishing, a Deployment
becoming available, someone editing a child by hand). Handlers stay thin.

Nothing is read or built at import: :func:`startup` takes the settings from kopf's
``memo`` (``edgemodel-operator`` puts them there) or, under ``kopf run -m
edgemodel_operator.handlers``, loads them from the environment then; it keeps what the
handlers share, an :class:`Operator`, in the memo, which kopf hands to every handler.

I/O: none beyond what kopf does; the work happens in :mod:`edgemodel_operator.reconcile`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import datetime
import logging
import os
from collections.abc import Callable
from typing import Any

import kopf
import prometheus_client

from edgemodel import api
from edgemodel_operator import kube, leader, memory, metrics, names, observe, reconcile, runner, status
from edgemodel_operator.settings import Settings

__all__ = [
    "MEMO_OPERATOR",
    "MEMO_SETTINGS",
    "LeaderDiffBaseStorage",
    "LeaderProgressStorage",
    "Operator",
    "watched_namespaces",
]

log = logging.getLogger(__name__)

MANAGED = {"app.kubernetes.io/managed-by": names.MANAGED_BY}
WATCHED_KINDS = frozenset(
    {
        "Job",
        "Deployment",
        "StatefulSet",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "CronJob",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
    }
)
"""The child kinds :func:`child_changed` watches: the Reconciler may skip their unchanged applies."""
MEMO_SETTINGS = "settings"
"""Key of the :class:`Settings` in kopf's operator memo (optional: else loaded at startup)."""
MEMO_OPERATOR = "operator"
"""Key of the :class:`Operator` in kopf's memo (each object's memo is a copy that shares it)."""

Key = tuple[str, str]


@dataclasses.dataclass
class Operator:
    """What the handlers share, built by :func:`startup` and kept in kopf's memo."""

    settings: Settings
    runner: runner.Runner
    metrics: metrics.OperatorMetrics
    elector: leader.LeaderElector | None = None
    lease_executor: concurrent.futures.ThreadPoolExecutor | None = None
    tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)
    versions: dict[Key, str | None] = dataclasses.field(default_factory=dict)
    """Each EdgeModel's resourceVersion from the last watch event, for the resync loop."""

    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader


class LeaderProgressStorage(kopf.AnnotationsProgressStorage):
    """kopf's progress annotations, written only while this replica leads.

    A standby's handlers only defer their request (the Runner runs nothing unless this
    replica leads), so it has no progress worth keeping, and writes nothing.
    """

    def __init__(self, is_leader: Callable[[], bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._is_leader = is_leader

    def store(self, **kwargs: Any) -> None:
        if self._is_leader():
            super().store(**kwargs)

    def purge(self, **kwargs: Any) -> None:
        if self._is_leader():
            super().purge(**kwargs)

    def touch(self, **kwargs: Any) -> None:
        if self._is_leader():
            super().touch(**kwargs)


class LeaderDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's last-handled-configuration annotation, written only while this replica leads.

    The leader's write is the one that counts: a standby sees it in the next event and
    so finds nothing new to handle.
    """

    def __init__(self, is_leader: Callable[[], bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._is_leader = is_leader

    def store(self, **kwargs: Any) -> None:
        if self._is_leader():
            super().store(**kwargs)


def watched_namespaces(value: str | None) -> list[str]:
    """The namespaces named by ``EDGEMODEL_NAMESPACE`` (comma-separated); empty means all."""
    return [n.strip() for n in (value or "").split(",") if n.strip()]


def _operator(memo: Any) -> Operator:
    op = memo.get(MEMO_OPERATOR) if memo is not None else None
    if not isinstance(op, Operator):  # kopf runs startup before any resource handler
        raise RuntimeError("the operator has not started")
    return op


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
    op: Operator, elector: leader.LeaderElector, executor: concurrent.futures.Executor
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
        op.metrics.leader.set(1 if now_leading else 0)
        if now_leading:
            if not was_leading:
                op.runner.spawn(_resync_all(op))
            op.runner.resume()
        await asyncio.sleep(interval)


async def _resync_all(op: Operator) -> None:
    """Reconcile every EdgeModel that may have changed while this replica did not lead."""
    run = op.runner
    client = run.reconciler.kube
    items: list[dict[str, Any]] = []
    try:
        scopes: list[str | None] = [*watched_namespaces(op.settings.namespace)] or [None]
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


def resync_due(op: Operator) -> int:
    """One resync tick: request a pass of every EdgeModel :meth:`Reconciler.due` says needs one.

    Answered from memory (the resourceVersions the watch delivered), with no API call;
    nothing while this replica does not lead. Returns how many were requested.
    """
    if not op.is_leader():
        return 0
    run = op.runner
    due = [k for k, rv in list(op.versions.items()) if not run.busy(*k) and run.reconciler.due(*k, rv)]
    for namespace, name in due:
        run.submit(namespace, name)
    return len(due)


async def _resync_forever(op: Operator) -> None:
    """The level-based safety net: a tick every ``resync_seconds``; one loop for all EdgeModels.

    One task in place of a kopf timer per EdgeModel: its interval comes from the settings
    at startup, and kopf adds no finalizer to each EdgeModel (a timer needs one).
    """
    while True:
        await asyncio.sleep(op.settings.resync_seconds)
        resync_due(op)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = memo.get(MEMO_SETTINGS)
    if not isinstance(config, Settings):
        config = Settings.from_env(os.environ)
        memo[MEMO_SETTINGS] = config
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 8
    operator_metrics = metrics.OperatorMetrics()
    client = kube.Kube.from_environment(
        field_manager=config.field_manager, on_request=operator_metrics.api_request
    )
    if config.metrics_port:
        prometheus_client.start_http_server(config.metrics_port, addr=config.bind_address)
    reconciler = reconcile.Reconciler(
        client, config, operator_metrics=operator_metrics, watched_kinds=WATCHED_KINDS
    )
    elector = None
    if config.leader_election:
        elector = leader.LeaderElector(
            client,
            namespace=config.lease_namespace,
            name=config.lease_name,
            identity=config.identity,
            duration_seconds=config.lease_duration_seconds,
        )
    run = runner.Runner(
        reconciler,
        is_leader=(lambda: elector.is_leader) if elector is not None else (lambda: True),
        workers=config.reconcile_workers,
    )
    op = Operator(settings=config, runner=run, metrics=operator_metrics, elector=elector)
    # A standby makes no write requests: kopf's annotations are written by the leader only.
    settings.persistence.progress_storage = LeaderProgressStorage(op.is_leader, prefix="edgeml.dev")
    settings.persistence.diffbase_storage = LeaderDiffBaseStorage(
        op.is_leader, prefix="edgeml.dev", key="last-handled-configuration"
    )
    if elector is not None:
        op.lease_executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")
        op.tasks.append(asyncio.create_task(_lead_forever(op, elector, op.lease_executor)))
    else:
        operator_metrics.leader.set(1)
    op.tasks.append(asyncio.create_task(_resync_forever(op)))
    memo[MEMO_OPERATOR] = op
    log.info("Started edgemodel-operator as %s", config.identity)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    op = memo.get(MEMO_OPERATOR)
    if not isinstance(op, Operator):
        return
    for task in op.tasks:
        task.cancel()
    for task in op.tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await op.runner.close()
    if op.elector is not None and op.lease_executor is not None:
        await asyncio.get_running_loop().run_in_executor(op.lease_executor, op.elector.release)
        op.lease_executor.shutdown(wait=False)


@kopf.on.resume(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.create(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.update(api.GROUP, api.VERSION, api.PLURAL)
async def changed(namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any) -> None:
    await _reconcile(_operator(memo).runner, namespace, name)


def _essence(obj: Any) -> str:
    """What a pass reads of an EdgeModel, but the replicas' reports: a change here needs a pass."""
    meta = obj.get("metadata") or {}
    status = {k: v for k, v in (obj.get("status") or {}).items() if k != "replicaDrift"}
    return observe.digest(
        {
            "generation": meta.get("generation"),
            "labels": meta.get("labels") or {},
            # The annotations a pass reads; kopf's own (progress, last handled spec) are no news.
            "retry": (meta.get("annotations") or {}).get(names.ANNOTATION_RETRY),
            "memory": (meta.get("annotations") or {}).get(memory.ANNOTATION),
            "deletion": meta.get("deletionTimestamp"),
            "finalizers": meta.get("finalizers") or [],
            "spec": obj.get("spec") or {},
            "status": status,
        }
    )


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def reported(event: kopf.RawEvent, namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    """A runtime's report changed what matters (drift detected, model version): act at once.

    Every event also keeps the resync loop's resourceVersion current; a deleted
    EdgeModel is forgotten at once.
    """
    op = _operator(memo)
    kind = event.get("type")
    obj: Any = event.get("object") or {}
    if namespace is None:
        return
    key = (namespace, name)
    if kind == "DELETED":
        op.versions.pop(key, None)
        op.runner.reconciler.forget(namespace, name)
        op.metrics.forget(namespace, name)
        return
    if kind not in ("MODIFIED", "ADDED"):
        return
    previous = op.versions.get(key)
    current = op.versions[key] = (obj.get("metadata") or {}).get("resourceVersion")
    now = datetime.datetime.now(datetime.UTC)
    fingerprint, essence = status.report_fingerprint(obj, op.settings, now=now), _essence(obj)
    same_essence = memo.get("essence") == essence
    memo["essence"] = essence
    if kind == "ADDED" and "reports" not in memo:
        # The first sight of an EdgeModel: the create or resume handler reconciles it, and
        # that pass reads these reports. A pass from here too would hold kopf's queue for
        # this object (the create handler waits behind it) and cost a second full pass.
        memo["reports"] = fingerprint
        return
    if memo.get("reports") == fingerprint:
        if same_essence:
            # Only a report that changes no drift state (the runtimes' cadence): no pass
            # now, and none from the resync for it either.
            op.runner.reconciler.absorb(namespace, name, previous, current)
        return
    # Remembered only once a reconcile has seen it: a request deferred (not leading),
    # folded into a run already going, or failed leaves it unremembered, so the next
    # event with the same reports asks again (kopf does not retry event handlers).
    outcome = None
    with contextlib.suppress(kopf.PermanentError):
        outcome = await _reconcile(op.runner, namespace, name)
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
@kopf.on.event("networking.k8s.io", "v1", "networkpolicies", labels=MANAGED)
@kopf.on.event("batch", "v1", "cronjobs", labels=MANAGED)
@kopf.on.event("", "v1", "serviceaccounts", labels=MANAGED)
@kopf.on.event("rbac.authorization.k8s.io", "v1", "roles", labels=MANAGED)
@kopf.on.event("rbac.authorization.k8s.io", "v1", "rolebindings", labels=MANAGED)
async def child_changed(
    event: kopf.RawEvent, body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """A child changed: a Job finished, a workload's availability moved, or a hand edit.

    Every event first goes to the Reconciler's record of the child, which lets a pass
    skip the apply of a child that is as the last apply left it.
    """
    owner = _owner(body)
    kind = str(body.get("kind") or "")
    if owner is None or namespace is None or event.get("type") not in ("ADDED", "MODIFIED", "DELETED"):
        return
    op = _operator(memo)
    op.runner.reconciler.observe_child(namespace, owner, kind, body, deleted=event.get("type") == "DELETED")
    fingerprint = observe.child_fingerprint(kind, body)
    if event.get("type") == "ADDED" or (event.get("type") == "MODIFIED" and memo.get("child") == fingerprint):
        # ADDED: the pass that created it, or the resume after a restart, covers it. An
        # unchanged fingerprint: a controller's bookkeeping no pass acts on.
        memo["child"] = fingerprint
        return
    memo["child"] = fingerprint
    op.runner.reconciler.mark_dirty(namespace, owner)
    with contextlib.suppress(kopf.PermanentError):
        await _reconcile(op.runner, namespace, owner)
