"""Leader election on a coordination.k8s.io Lease, so that replicas never act twice.

Only the replica holding the Lease reconciles; the others stand by and take over when
the holder stops renewing for ``lease_duration_seconds``. Acquisition and renewal are
optimistic writes on the Lease's resourceVersion, so two replicas cannot both win.

Expiry is measured as client-go measures it: on this replica's monotonic clock, from
when it last saw the Lease's record (holder, renewTime, ...) change, never by comparing
the holder's renewTime with this replica's wall clock, so clock skew between nodes
cannot hand the Lease over early or late. A released Lease has no holder and may be
taken at once.

:class:`Shards` runs one elector per shard (:mod:`edgemodel_operator.shard`): a replica
that holds no shard takes the first free or expired one at once; one that holds a shard
takes another only after it has stayed free ``patience`` seconds longer, so a standby or
a starting replica gets it first and a shard whose replica is gone is still served. A
replica that holds no shard while another holds several asks for one of them with the
``edgeml.dev/wanted-by`` annotation on its Lease; the holder, at its next renewal, frees
that Lease instead of renewing it (only while it holds more than one), and the asker takes
it at once. So a replica that comes back after a failover gets a shard again.

I/O: the Lease, through :class:`edgemodel_operator.kube.Kube`.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

from edgemodel_operator import kube, observe, shard

__all__ = ["LeaderElector", "Shards"]

log = logging.getLogger(__name__)

WANTED_BY = "edgeml.dev/wanted-by"
"""Annotation on a shard's Lease: the identity of a replica with no shard that asks for it."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _fmt(ts: datetime.datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        client: kube.Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime.datetime] = _now,
    ) -> None:
        self._kube = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = datetime.timedelta(seconds=duration_seconds)
        self._clock = clock
        self._wall_clock = wall_clock
        self._leading_until: float | None = None
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self.holder: str | None = None
        """The Lease's holder when this replica last read it (None: free or never read)."""

    @property
    def is_leader(self) -> bool:
        """True while a renewal succeeded within the last two thirds of a lease duration."""
        return self._leading_until is not None and self._clock() < self._leading_until

    def _observe(self, spec: dict[str, Any]) -> float:
        """Note the Lease's record; return when (on the local clock) it last changed."""
        fields = ("holderIdentity", "renewTime", "acquireTime", "leaseTransitions", "leaseDurationSeconds")
        record = tuple(spec.get(k) for k in fields)
        if record != self._observed:
            self._observed, self._observed_at = record, self._clock()
        return self._observed_at

    def _spec(self, now: datetime.datetime, transitions: int, acquire: datetime.datetime) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration.total_seconds()),
            "acquireTime": _fmt(acquire),
            "renewTime": _fmt(now),
            "leaseTransitions": transitions,
        }

    def step(self, patience: float = 0.0, *, may_hand_over: bool = False) -> bool:
        """Try once to acquire or renew the Lease; return whether this replica leads.

        ``patience``: take a Lease held by another (or by none) only once it has been
        expired (or free, or absent) for this many seconds more; renewal never waits.
        ``may_hand_over``: when another replica asked for this Lease (:data:`WANTED_BY`),
        free it instead of renewing it.
        """
        now = self._wall_clock()
        started = self._clock()  # the deadline counts from before the write, never after
        was_leader = self.is_leader
        try:
            lease = self._kube.get("Lease", self.namespace, self.name)
            if lease is None:
                self.holder = None
            if lease is None and patience > 0 and self._clock() < self._observe({}) + patience:
                self._leading_until = None
                return False
            if lease is None:
                self._kube.create(
                    "Lease",
                    self.namespace,
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": self._spec(now, 0, now),
                    },
                )
            else:
                spec = lease.get("spec") or {}
                holder = spec.get("holderIdentity")
                self.holder = holder
                annotations = (lease.get("metadata") or {}).get("annotations") or {}
                wanted_by = annotations.get(WANTED_BY)
                if holder == self.identity and wanted_by not in (None, self.identity) and may_hand_over:
                    self._hand_over(lease, now, wanted_by)
                    return False
                seen_at = self._observe(spec)
                duration = float(spec.get("leaseDurationSeconds") or 15)
                expired = self._clock() >= seen_at + (duration if holder else 0.0) + patience
                if holder != self.identity and not expired:
                    self._leading_until = None
                    return False
                transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
                acquire = observe.parse_time(spec.get("acquireTime")) if holder == self.identity else now
                lease["spec"] = self._spec(now, transitions, acquire or now)
                if wanted_by is not None:
                    # Taken, or kept as this replica's only shard: the ask is answered or moot.
                    annotations.pop(WANTED_BY)
                    lease["metadata"]["annotations"] = annotations
                self._kube.replace("Lease", self.namespace, self.name, lease)
        except kube.ApiException as exc:
            if exc.status in (404, 409):  # lost a race; try again next step
                self._leading_until = None
                return False
            raise
        self.holder = self.identity
        self._leading_until = started + self.duration.total_seconds() * 2 / 3
        if not was_leader:
            log.info("Acquired leader Lease %s/%s as %s", self.namespace, self.name, self.identity)
        return True

    def _hand_over(self, lease: dict[str, Any], now: datetime.datetime, to: str) -> None:
        """Free the Lease (no holder) for the replica that asked for it; it takes it at once."""
        was_leader = self.is_leader
        self._leading_until = None
        lease["metadata"]["annotations"].pop(WANTED_BY)
        self._free(lease, now)
        self.holder = None
        if was_leader:
            log.info("Handed leader Lease %s/%s over to %s", self.namespace, self.name, to)

    def ask(self) -> bool:
        """Ask the Lease's holder to hand it over (:data:`WANTED_BY`); whether the ask was written."""
        try:
            lease = self._kube.get("Lease", self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") in (None, self.identity):
                return False
            annotations = lease["metadata"].get("annotations") or {}
            if annotations.get(WANTED_BY) == self.identity:
                return False
            annotations[WANTED_BY] = self.identity
            lease["metadata"]["annotations"] = annotations
            self._kube.replace("Lease", self.namespace, self.name, lease)
        except kube.ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        log.info(
            "Asked %s for leader Lease %s/%s", lease["spec"]["holderIdentity"], self.namespace, self.name
        )
        return True

    def release(self) -> None:
        """Give the Lease up on shutdown, so a standby takes over at once."""
        if not self.is_leader:
            return
        self._leading_until = None
        try:
            lease = self._kube.get("Lease", self.namespace, self.name)
            if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                self._free(lease, self._wall_clock())
        except kube.ApiException as exc:
            log.warning("Failed to release leader Lease: %s", exc.reason)

    def _free(self, lease: dict[str, Any], now: datetime.datetime) -> None:
        """Write the Lease with no holder: free to take at once (release and hand-over)."""
        lease["spec"]["holderIdentity"] = None
        lease["spec"]["renewTime"] = _fmt(now)
        self._kube.replace("Lease", self.namespace, self.name, lease)


class Shards:
    """This replica's hold on the shards' Leases: at most one taken per round, and one asked
    for while it holds none and another replica holds several.

    With one shard this is one :class:`LeaderElector` on ``name`` itself, as before sharding.
    """

    def __init__(
        self,
        client: kube.Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration_seconds: float,
        shards: int = 1,
        patience_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime.datetime] = _now,
    ) -> None:
        self.count = shards
        self.identity = identity
        self.patience = patience_seconds
        self.electors = [
            LeaderElector(
                client,
                namespace=namespace,
                name=shard.lease_name(name, i, shards),
                identity=identity,
                duration_seconds=duration_seconds,
                clock=clock,
                wall_clock=wall_clock,
            )
            for i in range(shards)
        ]

    @property
    def duration(self) -> datetime.timedelta:
        return self.electors[0].duration

    @property
    def held(self) -> frozenset[int]:
        """The shards whose Lease this replica holds now."""
        return frozenset(i for i, e in enumerate(self.electors) if e.is_leader)

    def holds(self, index: int) -> bool:
        return self.electors[index].is_leader

    def owns(self, uid: str | None) -> bool:
        """Whether this replica holds the shard of the EdgeModel with this UID.

        With one shard the UID is not needed; with more, an unknown UID is owned by none.
        """
        if self.count == 1:
            return self.electors[0].is_leader
        return uid is not None and self.electors[shard.of(uid, self.count)].is_leader

    def step(self) -> tuple[frozenset[int], frozenset[int]]:
        """One round: renew what this replica holds, then try to take one more shard.

        A replica holding none tries every shard in order and takes the first it can;
        one holding some takes one only after ``patience_seconds`` more. Returns the
        shards (gained, lost) in this round. An elector that fails is logged and counts
        as not held this round (its hold lapses on its own clock).
        """
        before = self.held
        keeping = len(before)
        for i in sorted(before):
            # Hand a shard over when asked, but never the last one.
            if not self._step(i, 0.0, may_hand_over=keeping > 1):
                keeping -= 1
        renewed = self.held
        for i, _elector in enumerate(self.electors):
            if i not in renewed and self._step(i, self.patience if renewed else 0.0):
                break
        after = self.held
        if not after:
            self._ask_for_one()
        for i in sorted(before - after):
            log.warning("Lost the Lease %s/%s", self.electors[i].namespace, self.electors[i].name)
        return after - before, before - after

    def _ask_for_one(self) -> None:
        """Holding none: ask the replica holding the most shards (two or more) for its last one."""
        held_by: dict[str, list[int]] = {}
        for i, elector in enumerate(self.electors):
            if elector.holder is not None and elector.holder != self.identity:
                held_by.setdefault(elector.holder, []).append(i)
        most = max(held_by.values(), key=len, default=[])
        if len(most) > 1:
            try:
                self.electors[most[-1]].ask()
            except Exception:
                log.exception("Asking for Lease %s failed", self.electors[most[-1]].name)

    def _step(self, index: int, patience: float, *, may_hand_over: bool = False) -> bool:
        try:
            return self.electors[index].step(patience, may_hand_over=may_hand_over)
        except Exception:
            log.exception("Leader election step on Lease %s failed", self.electors[index].name)
            return False

    def release(self) -> None:
        """Give up every held Lease, so standbys take over at once."""
        for elector in self.electors:
            elector.release()
