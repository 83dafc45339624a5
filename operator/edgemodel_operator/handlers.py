"""kopf wiring: every trigger asks the runner for the same level-based reconcile.

Triggers: create, update and resume of an EdgeModel; a resync loop; a change in the
replicas' drift reports; a child workload changing (a Job finishing, a Deployment
becoming available, someone editing a child by hand). Handlers stay thin.

With ``shards`` N > 1 each replica acts only on the EdgeModels of the shard whose Lease
it holds (:mod:`edgemodel_operator.shard`, by UID): its passes, resync ticks, takeover
catch-up, kopf's annotations and per-EdgeModel gauges; the other shards' events only
keep its in-memory view current. With N = 1 that shard is every EdgeModel.

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
from edgemodel_operator import kube, leader, memory, metrics, names, observe, reconcile, runner, shard, status
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
    shards: leader.Shards | None = None
    """The shards' Leases; None without leader election (this replica acts on everything)."""
    lease_executor: concurrent.futures.ThreadPoolExecutor | None = None
    tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)
    versions: dict[Key, str | None] = dataclasses.field(default_factory=dict)
    """Each EdgeModel's resourceVersion from the last watch event, for the resync loop."""
    uids: dict[Key, str] = dataclasses.field(default_factory=dict)
    """Each EdgeModel's UID from its watch events: what decides its shard."""

    def is_leader(self) -> bool:
        """Whether this replica holds any shard (with one shard: the leader Lease)."""
        return self.shards is None or bool(self.shards.held)

    def owns_uid(self, uid: str | None) -> bool:
        """Whether this replica holds the shard of the EdgeModel with this UID."""
        return self.shards is None or self.shards.owns(uid)

    def owns(self, namespace: str, name: str) -> bool:
        """Whether this replica acts on this EdgeModel now (its UID as the watch delivered it)."""
        return self.owns_uid(self.uids.get((namespace, name)))

    def owns_body(self, body: Any) -> bool:
        """:meth:`owns_uid` for an EdgeModel's body, as kopf hands it to its storages."""
        return self.owns_uid(_uid(body))

    def in_shard(self, uid: str, index: int) -> bool:
        return self.shards is None or shard.of(uid, self.shards.count) == index


def _uid(body: Any) -> str | None:
    uid = (body.get("metadata") or {}).get("uid") if body is not None else None
    return str(uid) if uid else None


class LeaderProgressStorage(kopf.AnnotationsProgressStorage):
    """kopf's progress annotations, written only by the replica that holds the object's shard.

    Another replica's handlers only defer their request (the Runner runs nothing outside
    the shards this replica holds), so it has no progress worth keeping, and writes
    nothing. ``owns`` takes the body kopf passes (its UID decides the shard).
    """

    def __init__(self, owns: Callable[[Any], bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._owns = owns

    def store(self, **kwargs: Any) -> None:
        if self._owns(kwargs.get("body")):
            super().store(**kwargs)

    def purge(self, **kwargs: Any) -> None:
        if self._owns(kwargs.get("body")):
            super().purge(**kwargs)

    def touch(self, **kwargs: Any) -> None:
        if self._owns(kwargs.get("body")):
            super().touch(**kwargs)


class LeaderDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's last-handled-configuration annotation, written only by the object's shard holder.

    The holder's write is the one that counts: another replica sees it in the next event
    and so finds nothing new to handle.
    """

    def __init__(self, owns: Callable[[Any], bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._owns = owns

    def store(self, **kwargs: Any) -> None:
        if self._owns(kwargs.get("body")):
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


async def _lead_forever(op: Operator, shards: leader.Shards, executor: concurrent.futures.Executor) -> None:
    """Keep the shards' Leases; on taking a shard, reconcile each of its EdgeModels that needs it.

    The Lease steps run on ``executor``, a thread of their own: reconciles have their own
    executor too, so however many are queued, a renewal never waits behind them. After
    every round that holds a shard, the requests deferred for its EdgeModels are run. On
    losing a shard, its EdgeModels' gauges are dropped: their new holder reports them.
    """
    loop = asyncio.get_running_loop()
    interval = max(1.0, shards.duration.total_seconds() / 5)
    while True:
        try:
            gained, lost = await loop.run_in_executor(executor, shards.step)
        except Exception:
            log.exception("Leader election step failed")
            gained, lost = frozenset(), frozenset()
        held = shards.held
        op.metrics.leader.set(1 if held else 0)
        for i in range(shards.count):
            op.metrics.shard_leader.labels(str(i)).set(1 if i in held else 0)
        for index in sorted(lost):
            for (ns, name), uid in list(op.uids.items()):
                if op.in_shard(uid, index):
                    op.metrics.forget(ns, name)
        for index in sorted(gained):
            op.runner.spawn(_resync_all(op, index))
        if held:
            op.runner.resume()
        await asyncio.sleep(interval)


async def _resync_all(op: Operator, index: int = 0) -> None:
    """Reconcile every EdgeModel of shard ``index`` that may have changed while another held it."""
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
        ns, name, uid = str(meta["namespace"]), str(meta["name"]), _uid(item)
        if uid is not None:
            op.uids.setdefault((ns, name), uid)
        if uid is None or not op.in_shard(uid, index):
            continue
        # One already running or queued (a deferred request) started after this replica
        # took the Lease, which is all this safety net asks for.
        if not run.busy(ns, name) and run.reconciler.due(ns, name, meta.get("resourceVersion")):
            run.submit(ns, name)


def resync_due(op: Operator) -> int:
    """One resync tick: request a pass of every EdgeModel :meth:`Reconciler.due` says needs one.

    Answered from memory (the resourceVersions the watch delivered), with no API call;
    only EdgeModels of the shards this replica holds. Returns how many were requested.
    """
    if not op.is_leader():
        return 0
    run = op.runner
    due = [
        k
        for k, rv in list(op.versions.items())
        if op.owns(*k) and not run.busy(*k) and run.reconciler.due(*k, rv)
    ]
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
    shards = None
    if config.leader_election:
        shards = leader.Shards(
            client,
            namespace=config.lease_namespace,
            name=config.lease_name,
            identity=config.identity,
            duration_seconds=config.lease_duration_seconds,
            shards=config.shards,
            patience_seconds=config.shard_takeover_seconds,
        )
    run = runner.Runner(
        reconciler,
        owns=lambda namespace, name: op.owns(namespace, name),  # noqa: PLW0108 - op is bound below
        workers=config.reconcile_workers,
    )
    op = Operator(settings=config, runner=run, metrics=operator_metrics, shards=shards)
    # Only the shard's holder writes: kopf's annotations are written by it alone.
    settings.persistence.progress_storage = LeaderProgressStorage(op.owns_body, prefix="edgeml.dev")
    settings.persistence.diffbase_storage = LeaderDiffBaseStorage(
        op.owns_body, prefix="edgeml.dev", key="last-handled-configuration"
    )
    if shards is not None:
        op.lease_executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")
        op.tasks.append(asyncio.create_task(_lead_forever(op, shards, op.lease_executor)))
    else:
        operator_metrics.leader.set(1)
        operator_metrics.shard_leader.labels("0").set(1)
    op.tasks.append(asyncio.create_task(_resync_forever(op)))
    memo[MEMO_OPERATOR] = op
    log.info("Started edgemodel-operator as %s (%d shards)", config.identity, config.shards)


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
    if op.shards is not None and op.lease_executor is not None:
        await asyncio.get_running_loop().run_in_executor(op.lease_executor, op.shards.release)
        op.lease_executor.shutdown(wait=False)


@kopf.on.resume(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.create(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.update(api.GROUP, api.VERSION, api.PLURAL)
async def changed(
    namespace: str | None, name: str | None, uid: str | None, memo: kopf.Memo, **_: Any
) -> None:
    op = _operator(memo)
    if namespace is not None and name is not None and uid:
        op.uids[(namespace, name)] = uid
    await _reconcile(op.runner, namespace, name)


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
        op.uids.pop(key, None)
        op.runner.discard(namespace, name)
        op.runner.reconciler.forget(namespace, name)
        op.metrics.forget(namespace, name)
        return
    if kind not in ("MODIFIED", "ADDED"):
        return
    uid = _uid(obj)
    if uid is not None:
        op.uids[key] = uid
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
    # Remembered only once a reconcile has seen it: a request deferred (not its shard's holder),
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


def _owner_uid(body: Any, owner: str) -> str | None:
    """The UID of the EdgeModel ``owner`` from the child's ownerReferences, if it names it."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == api.KIND and ref.get("name") == owner and ref.get("uid"):
            return str(ref["uid"])
    return None


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
    if (namespace, owner) not in op.uids and (uid := _owner_uid(body, owner)) is not None:
        op.uids[(namespace, owner)] = uid  # a child's event may come before its EdgeModel's
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
