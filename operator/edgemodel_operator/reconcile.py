"""One idempotent reconcile of one EdgeModel: read, render, apply, plan, report.

It never depends on which event woke it: create, update, resume, the resync timer, a
runtime's drift report and a finished Job all run the same pass. Every long-lived child
is rendered from the spec and server-side applied each time, so hand edits are put
right and spec changes roll out; children the spec no longer wants are deleted.

An apply is skipped when the rendered child equals the one last applied and the watch of
that kind shows the live child unchanged since (:func:`edgemodel_operator.observe.apply_reason`):
the handlers feed every watch event of a child into :meth:`Reconciler.observe_child`, so
the skip costs no request. Kinds no watch feeds (the managed broker's Secret) are applied
every pass, and every ``full_resync_seconds`` a pass applies everything regardless.

I/O: through :class:`edgemodel_operator.kube.Kube` only.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import logging
import secrets
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from edgemodel import api
from edgemodel_operator import kube, memory, metrics, names, observe, render, status, summary, trust
from edgemodel_operator.render import broker, jobs
from edgemodel_operator.resource import EdgeModel, InvalidSpecError
from edgemodel_operator.settings import Settings

__all__ = ["InvalidSpecError", "Outcome", "Reconciler"]

log = logging.getLogger(__name__)

# Long-lived kinds the operator prunes when the spec stops wanting them.
PRUNABLE = (
    "StatefulSet",
    "Deployment",
    "Service",
    "ConfigMap",
    "Secret",
    "PersistentVolumeClaim",
    "HorizontalPodAutoscaler",
    "CronJob",
    "RoleBinding",
    "Role",
    "ServiceAccount",
    "NetworkPolicy",
)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one reconcile did, for logs, metrics and tests."""

    applied: int
    """Long-lived children the pass brought in line with the spec: applied, or skipped as unchanged."""
    created: tuple[str, ...]
    updated: tuple[str, ...]
    pruned: tuple[str, ...]
    started_job: str | None
    status_written: bool
    skipped: tuple[str, ...] = ()
    """Children whose apply was skipped: rendered as last applied, and unchanged since."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _status_patch(
    old: api.EdgeModelStatus, new: api.EdgeModelStatus, gone: Sequence[str]
) -> dict[str, Any] | None:
    """A merge patch for everything the operator owns in status; None when nothing changed.

    ``replicaDrift`` belongs to the runtime Pods: the operator only removes gone entries.
    """

    def owned(s: api.EdgeModelStatus) -> dict[str, Any]:
        wire = s.model_dump(by_alias=True, mode="json", exclude={"replica_drift"})
        return wire

    new_wire, old_wire = owned(new), owned(old)
    if new_wire == old_wire and not gone:
        return None
    body: dict[str, Any] = dict(new_wire)
    if gone:
        body["replicaDrift"] = {pod: None for pod in gone}
    return {"status": body}


class Reconciler:
    def __init__(
        self,
        client: kube.Kube,
        settings: Settings,
        *,
        operator_metrics: metrics.OperatorMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        watched_kinds: Collection[str] = (),
    ) -> None:
        """``watched_kinds``: the child kinds whose every watch event reaches :meth:`observe_child`.

        Only their applies may be skipped; with none (the default) every pass applies everything.
        """
        self.kube = client
        self.watched_kinds = frozenset(watched_kinds)
        self._clock = clock
        self.settings = settings
        self.metrics = operator_metrics
        # Every cache is keyed by the EdgeModel's (namespace, name), holds at most one entry
        # per live EdgeModel (``_applied_at``: one per child the spec wants now), and
        # :meth:`forget` drops all of them when the EdgeModel is gone.
        self._pruned_generation: dict[tuple[str, str], tuple[str, int]] = {}
        self._policies_removed: dict[tuple[str, str], str] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._seen: dict[tuple[str, str], tuple[str | None, float]] = {}
        self._seen_lock = threading.Lock()  # passes (worker threads) and absorb (event loop) write it
        self._applied_at: dict[tuple[str, str], dict[tuple[str, str], str]] = {}
        # For skipping applies: what the last apply of each child left, what the watch last
        # showed of it (small records, no bodies), and when a pass last applied everything.
        self._applied: dict[tuple[str, str], dict[tuple[str, str], observe.Applied]] = {}
        self._live: dict[tuple[str, str], dict[tuple[str, str], observe.Live]] = {}
        self._full_apply_at: dict[tuple[str, str], float] = {}

    # ------------------------------------------------------------------ helpers

    def _broker_credentials(self, em: EdgeModel) -> tuple[dict[str, str] | None, str]:
        """The managed broker's generated credentials, and the version of the credentials Secret.

        Read every pass (the Secret is not watched), so a password someone rotated there is
        what the pass applies back, never a remembered one (issue 12, item 6). A missing
        Secret, or one without every key, is applied here first, so the Pod templates carry
        the version the API server holds from the start. The version (``<uid>/<resourceVersion>``)
        rolls the broker and the runtime when the Secret changes; empty without a Secret.
        """
        ref = em.spec.broker.credentials_secret
        if ref is None and not em.spec.broker.managed:
            return None, ""
        secret = self.kube.get(
            "Secret", em.namespace, ref.name if ref is not None else names.broker_credentials(em.name)
        )
        data: dict[str, str] | None = None
        if ref is None:
            live = {
                k: base64.b64decode(v).decode(errors="surrogateescape")
                for k, v in ((secret or {}).get("data") or {}).items()
            }
            fresh = (secrets.token_urlsafe(24), secrets.token_urlsafe(24))
            data = broker.managed_credentials(live, fresh=fresh)
            if secret is None or any(live.get(k) != v for k, v in data.items()):
                rv = None if secret is None else (secret.get("metadata") or {}).get("resourceVersion")
                secret = self.kube.apply(broker.secret(em, data, rv))
        meta = (secret or {}).get("metadata") or {}
        return data, f"{meta.get('uid')}/{meta.get('resourceVersion')}" if secret is not None else ""

    def _change(
        self, obj: Mapping[str, Any], started: str, previous: str | None, applied: dict[tuple[str, str], str]
    ) -> str | None:
        """``Created``/``Updated`` when this apply changed the object, from its managedFields.

        ``previous`` is the object's managedFields time after the last pass's apply; this
        pass's goes into ``applied``.
        """
        meta = obj.get("metadata") or {}
        ours = [
            m
            for m in meta.get("managedFields") or []
            if m.get("manager") == self.kube.field_manager
            and m.get("operation") == "Apply"
            and not m.get("subresource")
        ]
        stamp = str(ours[0].get("time") or "") if ours else ""
        applied[(str(obj.get("kind")), str(meta.get("name")))] = stamp
        if previous is not None and stamp == previous:
            return None
        # Created by this apply: the object is no older than this pass (a Role's managedFields
        # time may be a second after its creationTimestamp on a busy server).
        if stamp and stamp >= started and str(meta.get("creationTimestamp") or "") >= started:
            return "Created"
        if previous is not None and stamp != previous:
            return "Updated"
        if previous is None and stamp >= started:
            return "Updated"
        return None

    def _event(self, em: EdgeModel, event: status.Event) -> None:
        try:
            self.kube.event(
                {
                    "apiVersion": api.API_VERSION,
                    "kind": api.KIND,
                    "name": em.name,
                    "namespace": em.namespace,
                    "uid": em.uid,
                },
                type_=event.type,
                reason=event.reason,
                message=event.message,
                component=self.settings.field_manager,
                instance=self.settings.identity,
            )
        except kube.ApiException as exc:
            log.warning("Failed to record Event %s for %s: %s", event.reason, em.key, exc.reason)

    def _refusal(self, em: EdgeModel) -> trust.Refusal | None:
        """Why the operator will not act for this EdgeModel's author (issue 12, item 4), if so."""
        ref = em.spec.broker.credentials_secret
        tracking = em.spec.model.tracking_secret_ref
        tls = em.spec.broker.tls_secret_ref
        return (
            trust.image_refusal(em, self.settings)
            or trust.secret_refusal(
                em, None if ref is None else self.kube.get("Secret", em.namespace, ref.name)
            )
            or trust.tracking_secret_refusal(
                em, None if tracking is None else self.kube.get("Secret", em.namespace, tracking.name)
            )
            or trust.broker_tls_secret_refusal(
                em, None if tls is None else self.kube.get("Secret", em.namespace, tls.name)
            )
        )

    def _refuse(self, em: EdgeModel, refusal: trust.Refusal, *, now: datetime.datetime) -> Outcome:
        """Apply, start and prune nothing; say why in ``Degraded``; look again at the next timer tick.

        The Secret is not watched, so a label added later is seen by the next tick.
        """
        plan = status.refused(em, refusal, now=now)
        patch = {
            "status": {
                "conditions": [c.model_dump(by_alias=True, mode="json") for c in plan.status.conditions]
            }
        }
        written = self.kube.patch_status(em.namespace, em.name, patch)
        self.passed(em.namespace, em.name, (written.get("metadata") or {}).get("resourceVersion"), 0.0)
        for event in plan.events:
            self._event(em, event)
            log.warning("Refused EdgeModel %s: %s", em.key, event.message)
        return Outcome(applied=0, created=(), updated=(), pruned=(), started_job=None, status_written=True)

    def _owned(self, em: EdgeModel, kind: str) -> list[dict[str, Any]]:
        """Objects of ``kind`` labelled as this EdgeModel's (ownership is checked by the caller).

        Secrets are read by name, never listed: the operator may not list Secrets (least
        privilege), and the managed broker's is the only Secret it ever creates.
        """
        if kind == "Secret":
            secret = self.kube.get("Secret", em.namespace, names.broker_credentials(em.name))
            return [secret] if secret is not None else []
        if kind == "PersistentVolumeClaim":  # the broker's only, read by name like the Secret
            claim = self.kube.get(kind, em.namespace, names.broker_data(em.name))
            return [claim] if claim is not None else []
        return self.kube.list(kind, em.namespace, {names.LABEL_EDGEMODEL: em.name})

    def _prune(
        self, em: EdgeModel, desired: Sequence[Mapping[str, Any]], *, kinds: Sequence[str] = PRUNABLE
    ) -> list[str]:
        wanted = {(o["kind"], o["metadata"]["name"]) for o in desired}
        pruned = []
        for kind in kinds:
            for obj in self._owned(em, kind):
                meta = obj["metadata"]
                owners = meta.get("ownerReferences") or []
                if not any(o.get("uid") == em.uid for o in owners):
                    continue  # not ours: a namesake from another EdgeModel or a user
                if (kind, meta["name"]) not in wanted and self.kube.delete(kind, em.namespace, meta["name"]):
                    pruned.append(f"{kind}/{meta['name']}")
        return pruned

    @staticmethod
    def _pruned_before(em: EdgeModel) -> bool:
        """Whether a pass already pruned for this generation, or there can be nothing to prune.

        A pass writes ``status.observedGeneration`` only after pruning for that generation,
        so an equal one says a pass (of any replica) did. An EdgeModel whose spec never
        changed (generation 1) that no pass finished yet has only children that very spec
        wants. Either way the lists of every prunable kind (ten requests) are not needed.
        """
        seen = em.status.observed_generation
        return seen == em.generation or (seen is None and em.generation == 1)

    def _job_infos(self, em: EdgeModel, now: datetime.datetime) -> list[observe.JobInfo]:
        infos = []
        last_done = em.status.retraining.last_completed_time
        for job in self.kube.list(
            "Job", em.namespace, {names.LABEL_EDGEMODEL: em.name, names.LABEL_COMPONENT: "trainer"}
        ):
            info = observe.job_info(job, [], now=now)
            unfolded = (
                info.finished is not None
                and (last_done is None or (info.finished_time is not None and info.finished_time > last_done))
                and info.name != em.status.retraining.last_completed_job
            )
            if unfolded:
                pods = self.kube.list("Pod", em.namespace, {"batch.kubernetes.io/job-name": info.name})
                info = observe.job_info(job, pods, now=now)
            infos.append(info)
        return infos

    # ------------------------------------------------------------------ when to pass

    def observe_child(
        self, namespace: str, owner: str, kind: str, body: Mapping[str, Any], *, deleted: bool = False
    ) -> None:
        """A watch event of ``owner``'s child: remember what a later pass needs to skip its apply.

        Kept only for EdgeModels a pass has begun on (and dropped by :meth:`forget`), so
        the children of a deleted EdgeModel leave nothing behind. Called from the event
        loop; a pass reads the records from its worker thread (single dict operations).
        """
        children = self._live.get((namespace, owner))
        if children is None or kind not in self.watched_kinds:
            return
        name = str((body.get("metadata") or {}).get("name"))
        children[(kind, name)] = observe.live(kind, body, deleted=deleted)

    def mark_dirty(self, namespace: str, name: str) -> None:
        """A child changed (from a watch event): the next timer tick must do the full pass."""
        self._dirty.add((namespace, name))

    def due(self, namespace: str, name: str, resource_version: str | None) -> bool:
        """Whether a timer tick needs a pass; answered from memory, with no API call.

        Yes when this replica has not passed over the EdgeModel yet, when a child changed
        (or a pass failed) since the last pass, when the EdgeModel's resourceVersion differs
        from the one the last pass left (a spec, annotation or runtime report change), and
        when the clock alone may have changed the plan (``Plan.requeue_after``) or
        ``full_resync_seconds`` have passed.
        """
        key = (namespace, name)
        seen = self._seen.get(key)
        if seen is None or key in self._dirty:
            return True
        rv, next_due = seen
        return rv != resource_version or self._clock() >= next_due

    def passed(
        self, namespace: str, name: str, resource_version: str | None, requeue_after: float | None = None
    ) -> None:
        """Record a pass that left the EdgeModel at ``resource_version``, for :meth:`due`."""
        wait = self.settings.full_resync_seconds
        if requeue_after is not None:
            wait = min(wait, requeue_after)
        with self._seen_lock:
            self._seen[(namespace, name)] = (resource_version, self._clock() + wait)

    def absorb(self, namespace: str, name: str, previous: str | None, current: str | None) -> bool:
        """The EdgeModel went from ``previous`` to ``current`` by a change no pass acts on.

        That is a runtime report that changes no drift state (a new RMSE, sample count or
        report time; the handlers tell). If the last pass left the EdgeModel at
        ``previous``, it is now taken to have left it at ``current``, so the resync does
        not find it due for that change alone. The clock still makes it due when a report
        may go stale (``Plan.requeue_after``). Returns whether it was absorbed.
        """
        key = (namespace, name)
        with self._seen_lock:
            seen = self._seen.get(key)
            if seen is None or key in self._dirty or seen[0] != previous:
                return False
            self._seen[key] = (current, seen[1])
        return True

    def forget(self, namespace: str, name: str) -> None:
        """The EdgeModel is gone: drop everything kept about it."""
        key = (namespace, name)
        self._seen.pop(key, None)
        self._dirty.discard(key)
        self._pruned_generation.pop(key, None)
        self._policies_removed.pop(key, None)
        self._applied_at.pop(key, None)
        self._applied.pop(key, None)
        self._live.pop(key, None)
        self._full_apply_at.pop(key, None)

    def tracked_children(self, namespace: str, name: str) -> frozenset[tuple[str, str]]:
        """The (kind, name) of the children whose last apply this replica remembers."""
        return frozenset(self._applied_at.get((namespace, name), {}))

    def cached(self) -> set[tuple[str, str]]:
        """The EdgeModels any cache holds something about (for tests and debugging)."""
        return {
            *self._seen,
            *self._dirty,
            *self._pruned_generation,
            *self._policies_removed,
            *self._applied_at,
            *self._applied,
            *self._live,
            *self._full_apply_at,
        }

    # ------------------------------------------------------------------ the pass

    def reconcile(self, namespace: str, name: str) -> Outcome | None:
        """Bring one EdgeModel's children and status in line with its spec; None if it is gone."""
        started_clock = time.monotonic()
        try:
            outcome = self._reconcile(namespace, name)
        except InvalidSpecError:
            if self.metrics:
                self.metrics.reconciles.labels("invalid").inc()
            raise
        except Exception as exc:
            # A pass that failed half way must not look done to the next timer tick.
            self.mark_dirty(namespace, name)
            if self.metrics:
                self.metrics.reconcile_errors.labels(type(exc).__name__).inc()
                self.metrics.reconciles.labels("error").inc()
            raise
        finally:
            if self.metrics:
                self.metrics.reconcile_seconds.observe(time.monotonic() - started_clock)
        if self.metrics:
            self.metrics.reconciles.labels("ok" if outcome is not None else "gone").inc()
        return outcome

    def _reconcile(self, namespace: str, name: str) -> Outcome | None:
        key = (namespace, name)
        self._dirty.discard(key)
        body = self.kube.get(api.KIND, namespace, name)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            if self.metrics:
                self.metrics.forget(namespace, name)
            self.forget(namespace, name)
            return None
        rv = (body.get("metadata") or {}).get("resourceVersion")
        try:
            em = EdgeModel.from_body(body)
        except InvalidSpecError:
            # Nothing to do until the spec changes, which changes the resourceVersion.
            self.passed(namespace, name, rv)
            raise
        now = _now()
        started = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        refusal = self._refusal(em)
        if refusal is not None:
            return self._refuse(em, refusal, now=now)
        # The policy plans from what the operator remembers (the annotation), not from what
        # status says; status keeps a copy for people (issue 12, item 2).
        stored = em.status
        em = memory.recall(em)

        credentials, credentials_version = self._broker_credentials(em)
        desired = render.desired(
            em,
            self.settings,
            generated_password=None,
            credentials=credentials,
            credentials_version=credentials_version,
        )
        created, updated, skipped = [], [], []
        workloads: dict[tuple[str, str], observe.Workload | None] = {}
        last_applied = self._applied_at.get(key, {})
        applied: dict[tuple[str, str], str] = {}
        # From here on the watch's events of this EdgeModel's children are kept (observe_child).
        seen = dict(self._live.setdefault(key, {}))
        full = (
            self._clock() - self._full_apply_at.get(key, -float("inf")) >= self.settings.full_resync_seconds
        )
        last_records = {} if full else self._applied.get(key, {})
        records: dict[tuple[str, str], observe.Applied] = {}
        for obj in desired:
            child = (obj["kind"], obj["metadata"]["name"])
            label = f"{obj['kind']} {obj['metadata']['name']}"
            last = last_records.get(child)
            if (
                last is not None
                and child[0] in self.watched_kinds
                and observe.apply_reason(obj, last, seen.get(child)) is None
            ):
                records[child] = last
                applied[child] = last_applied.get(child, "")
                live = seen.get(child)
                workloads[child] = live.workload if live is not None else last.workload
                skipped.append(label)
                continue
            result = self.kube.apply(obj)
            records[child] = observe.applied(child[0], observe.digest(obj), result)
            workloads[child] = records[child].workload
            change = self._change(result, started, last_applied.get(child), applied)
            if change == "Created":
                created.append(label)
            elif change == "Updated":
                updated.append(label)
        # Only the children the spec wants now: one pruned or renamed leaves no entry behind.
        self._applied_at[key] = applied
        self._applied[key] = records
        if full:
            self._full_apply_at[key] = self._clock()
        pruned: list[str] = []
        if self._pruned_generation.get(key) != (em.uid, em.generation):
            if not self._pruned_before(em):
                pruned = self._prune(em, desired)
            self._pruned_generation[key] = (em.uid, em.generation)
        if not self.settings.network_policies and self._policies_removed.get(key) != em.uid:
            # Switched off by the operator's settings, not the spec: no new generation prunes
            # them, so each replica looks once per EdgeModel for policies an earlier run made.
            pruned += self._prune(em, desired, kinds=("NetworkPolicy",))
            self._policies_removed[key] = em.uid

        # The Pods matter only to tell which reports come from live replicas.
        pods = (
            self.kube.list("Pod", namespace, names.selector(name, "inference"))
            if em.status.replica_drift
            else []
        )
        observed = status.Observed(
            inference=workloads.get(("StatefulSet", names.inference(name))) or observe.statefulset(None),
            broker=(workloads.get(("Deployment", names.broker(name))) or observe.deployment(None))
            if em.spec.broker.managed
            else None,
            live_pods=summary.replica_pods(pods, statefulset=names.inference(name)),
            jobs=self._job_infos(em, now),
        )
        plan = status.plan(em, observed, now=now, settings=self.settings)

        started_job = None
        if plan.start_job is not None:
            req = plan.start_job
            job = jobs.job(
                em,
                self.settings,
                kind=req.kind,
                number=req.number,
                reason=req.reason,
                rollback_to=req.rollback_to,
                window_since=req.window_since,
            )
            started_job = job["metadata"]["name"]
            if not any(j.name == started_job for j in observed.jobs):
                self.kube.apply(job)
                created.append(f"Job {started_job}")
                if self.metrics:
                    self.metrics.jobs_started.labels(req.kind).inc()

        patch = _status_patch(stored, plan.status, plan.gone_replicas)
        if plan.hold:
            # The stored status does not parse: write the condition that says so, nothing else.
            patch = {
                "status": {
                    "conditions": [c.model_dump(by_alias=True, mode="json") for c in plan.status.conditions]
                }
            }
        if self.metrics:
            for _pod, why in plan.ignored_reports:
                self.metrics.drift_reports_ignored.labels(why).inc()
        remembered = None if plan.hold else memory.patch(em, plan.status)
        if remembered is not None:
            rv = (self.kube.apply(remembered).get("metadata") or {}).get("resourceVersion")
        if patch is not None:
            rv = (self.kube.patch_status(namespace, name, patch).get("metadata") or {}).get("resourceVersion")
        self.passed(namespace, name, rv, plan.requeue_after)

        # One Event per kind of change in a pass, naming every child, not one per child.
        if created:
            self._event(em, status.Event("Normal", "Created", f"Created {', '.join(created)}"))
        if updated:
            self._event(em, status.Event("Normal", "Updated", f"Updated {', '.join(updated)}"))
        if pruned:
            self._event(
                em,
                status.Event(
                    "Normal", "Deleted", f"Deleted {', '.join(pruned)}: the spec no longer needs them"
                ),
            )
        for event in plan.events:
            self._event(em, event)
        if created or updated or pruned or plan.events:
            log.info(
                "Reconciled EdgeModel %s: created %s, updated %s, deleted %s, events %s",
                em.key,
                created,
                updated,
                pruned,
                [e.reason for e in plan.events],
            )
        if self.metrics:
            self.metrics.observe_status(namespace, name, plan.status)
        return Outcome(
            applied=len(desired),
            created=tuple(created),
            updated=tuple(updated),
            pruned=tuple(pruned),
            started_job=started_job if plan.start_job is not None else None,
            status_written=patch is not None,
            skipped=tuple(skipped),
        )
