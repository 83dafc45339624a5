"""Shards: an EdgeModel's shard from a stable hash of its UID, and each replica's hold on the Leases.

The hash is pure. The Leases live in the in-memory store of ``test_operator_leader`` (the
API server's optimistic concurrency, injected clocks): no real time passes.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import doctest
import uuid
from typing import Any, cast

import kopf
import prometheus_client
import pytest

from edgemodel_operator import handlers, leader, metrics, runner, shard
from edgemodel_operator.leader import Shards
from edgemodel_operator.settings import Settings, SettingsError
from tests.unit.test_operator_leader import DURATION, T0, Leases

UIDS = [str(uuid.UUID(int=i * 7919 + 17, version=4)) for i in range(4000)]
PATIENCE = 30.0


def test_doctests() -> None:
    result = doctest.testmod(shard)
    assert result.attempted > 0 and result.failed == 0


def test_one_shard_is_always_shard_zero_and_keeps_the_lease_name() -> None:
    assert {shard.of(uid, 1) for uid in UIDS} == {0}
    assert shard.lease_name("edgemodel-operator", 0, 1) == "edgemodel-operator"


@pytest.mark.parametrize("shards", [2, 3, 8])
def test_uids_spread_evenly_over_the_shards(shards: int) -> None:
    counts = collections.Counter(shard.of(uid, shards) for uid in UIDS)
    assert set(counts) == set(range(shards))
    expected = len(UIDS) / shards
    # A fair split: each shard within 10% of its share (4,000 UIDs: about 4 standard deviations).
    assert all(abs(n - expected) < 0.1 * expected for n in counts.values()), counts


def test_the_shard_is_stable_across_processes_and_versions() -> None:
    """SHA-256 of the UID, not ``hash()``: these values are fixed, whatever PYTHONHASHSEED."""
    uid = "6b1f0c2e-8d4a-4c1e-9b7a-3f5e2d1c0b9a"
    assert [shard.of(uid, n) for n in (1, 2, 3, 4, 5, 7, 16)] == [0, 1, 0, 1, 0, 5, 5]


def test_bad_shard_counts_and_indexes_are_refused() -> None:
    with pytest.raises(ValueError):
        shard.of(UIDS[0], 0)
    with pytest.raises(ValueError):
        shard.lease_name("l", 2, 2)


def test_shards_need_leader_election() -> None:
    assert Settings.from_env({"EDGEMODEL_SHARDS": "3"}).shards == 3
    with pytest.raises(SettingsError):
        Settings.from_env({"EDGEMODEL_SHARDS": "2", "EDGEMODEL_LEADER_ELECTION": "false"})
    with pytest.raises(SettingsError):
        Settings.from_env({"EDGEMODEL_SHARDS": "0"})


class Replica:
    def __init__(self, leases: Leases, identity: str, shards: int = 2) -> None:
        self.mono = 1000.0
        self.shards = Shards(
            leases,  # type: ignore[arg-type]
            namespace="ns",
            name="lease",
            identity=identity,
            duration_seconds=DURATION,
            shards=shards,
            patience_seconds=PATIENCE,
            clock=lambda: self.mono,
            wall_clock=lambda: T0 + datetime.timedelta(seconds=self.mono),
        )


def _round(seconds: float, *replicas: Replica) -> None:
    """Every replica steps its shards, then ``seconds`` pass for all."""
    for r in replicas:
        r.shards.step()
    for r in replicas:
        r.mono += seconds


def test_one_shard_is_the_single_leader_lease_of_before() -> None:
    leases = Leases()
    a, b = Replica(leases, "a", shards=1), Replica(leases, "b", shards=1)
    assert a.shards.step() == (frozenset({0}), frozenset())
    assert b.shards.step() == (frozenset(), frozenset())
    assert set(leases.objects) == {"lease"}
    assert a.shards.owns(None) and a.shards.owns(UIDS[0]) and not b.shards.owns(UIDS[0])


def test_two_replicas_take_one_shard_each_and_own_disjoint_halves() -> None:
    leases = Leases()
    a, b = Replica(leases, "a"), Replica(leases, "b")
    for _ in range(20):  # a minute of rounds, every 3 s
        _round(3, a, b)
    assert (a.shards.held, b.shards.held) == (frozenset({0}), frozenset({1}))
    assert set(leases.objects) == {"lease-shard-0", "lease-shard-1"}
    for uid in UIDS[:200]:
        assert a.shards.owns(uid) != b.shards.owns(uid)
    assert not a.shards.owns(None)


def test_a_replica_takes_a_second_shard_only_after_the_patience() -> None:
    """Alone, it holds shard 0 at once and shard 1 once that stayed free PATIENCE longer."""
    leases = Leases()
    a = Replica(leases, "a")
    assert a.shards.step() == (frozenset({0}), frozenset())  # one taken per round: shard 1 unseen
    a.mono += 3
    first_seen = a.mono
    while a.mono < first_seen + PATIENCE:
        assert a.shards.step() == (frozenset(), frozenset())  # renews shard 0, waits for shard 1
        a.mono += 3
    assert a.shards.step() == (frozenset({1}), frozenset())
    assert "lease-shard-1" in leases.objects and a.shards.held == {0, 1}


def test_a_standby_takes_an_orphaned_shard_before_a_holder_does() -> None:
    leases = Leases()
    a, b, standby = Replica(leases, "a"), Replica(leases, "b"), Replica(leases, "c")
    _round(3, a, b)
    _round(3, a, b, standby)
    assert (a.shards.held, b.shards.held, standby.shards.held) == ({0}, {1}, set())
    # b crashes: its Lease expires one duration after the others last saw it renewed.
    for _ in range(int(DURATION / 3) + 1):
        _round(3, a, standby)
    assert standby.shards.held == {1} and a.shards.held == {0}


def test_without_a_standby_the_survivor_serves_the_orphaned_shard() -> None:
    leases = Leases()
    a, b = Replica(leases, "a"), Replica(leases, "b")
    _round(3, a, b)
    _round(3, a, b)
    b.shards.release()  # b stopped cleanly: its Lease is free at once, but a already holds one
    _round(3, a)
    assert a.shards.held == {0}
    rounds = 1
    while a.shards.held != {0, 1}:
        _round(3, a)
        rounds += 1
        assert rounds * 3 <= PATIENCE + 6
    assert rounds * 3 >= PATIENCE
    assert all(a.shards.owns(uid) for uid in UIDS[:50])


def _disjoint(*replicas: Replica) -> bool:
    held = [r.shards.held for r in replicas]
    return sum(len(h) for h in held) == len(frozenset().union(*held))


def test_a_replica_that_comes_back_is_handed_a_shard() -> None:
    """After a failover the survivor holds both; the replacement asks and gets one back."""
    leases = Leases()
    a, b = Replica(leases, "a"), Replica(leases, "b")
    _round(3, a, b)
    assert (a.shards.held, b.shards.held) == ({0}, {1})
    # b crashes; a serves its shard once the Lease expired and PATIENCE passed.
    while a.shards.held != {0, 1}:
        _round(3, a)
    back = Replica(leases, "b2")
    back.mono = a.mono
    rounds = 0
    while back.shards.held != {1}:
        _round(3, a, back)
        assert _disjoint(a, back)
        rounds += 1
        assert rounds <= 3, "ask, hand over, take: three rounds at most"
    assert a.shards.held == {0}
    assert all(
        leader.WANTED_BY not in (o["metadata"].get("annotations") or {}) for o in leases.objects.values()
    )
    for _ in range(int(2 * PATIENCE / 3)):  # and it stays that way
        _round(3, a, back)
        assert (a.shards.held, back.shards.held) == ({0}, {1})


def test_a_replica_never_hands_over_its_only_shard() -> None:
    leases = Leases()
    a, b, c = Replica(leases, "a"), Replica(leases, "b"), Replica(leases, "c")
    _round(3, a, b, c)
    _round(3, a, b, c)
    assert (a.shards.held, b.shards.held, c.shards.held) == ({0}, {1}, set())
    # c holds none, but no one holds two: it asks no one.
    assert all(
        leader.WANTED_BY not in (o["metadata"].get("annotations") or {}) for o in leases.objects.values()
    )
    # An ask written anyway (e.g. while a still held two) is cleared, not obeyed.
    assert c.shards.electors[0].ask()
    assert leases.objects["lease-shard-0"]["metadata"]["annotations"] == {leader.WANTED_BY: "c"}
    _round(3, a, b, c)
    assert (a.shards.held, b.shards.held, c.shards.held) == ({0}, {1}, set())
    assert leader.WANTED_BY not in leases.objects["lease-shard-0"]["metadata"]["annotations"]


# ---------------------------------------------------------------------------- the kopf wiring


class Passes:
    """Stands in for the Reconciler: every EdgeModel is due; records the passes asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def due(self, namespace: str, name: str, resource_version: str | None) -> bool:
        return True

    def reconcile(self, namespace: str, name: str) -> object:
        self.calls.append((namespace, name))
        return object()


def _operator_holding_shard_0() -> tuple[handlers.Operator, Passes, list[str], list[str]]:
    leases = Leases()
    replica = Replica(leases, "a")
    assert replica.shards.step() == (frozenset({0}), frozenset())
    passes = Passes()
    op: handlers.Operator
    run = runner.Runner(passes, owns=lambda ns, name: op.owns(ns, name))  # type: ignore[arg-type]  # noqa: PLW0108
    op = handlers.Operator(
        settings=Settings(shards=2),
        runner=run,
        metrics=metrics.OperatorMetrics(prometheus_client.CollectorRegistry()),
        shards=replica.shards,
    )
    mine = [u for u in UIDS[:40] if shard.of(u, 2) == 0]
    theirs = [u for u in UIDS[:40] if shard.of(u, 2) == 1]
    for uid in UIDS[:40]:
        op.uids[("ns", uid)] = uid  # named by their UID, for the test
        op.versions[("ns", uid)] = "1"
    return op, passes, mine, theirs


def test_kopf_annotations_are_written_only_for_the_shard_held() -> None:
    op, _, mine, theirs = _operator_holding_shard_0()
    diffbase = handlers.LeaderDiffBaseStorage(
        op.owns_body, prefix="edgeml.dev", key="last-handled-configuration"
    )
    progress = handlers.LeaderProgressStorage(op.owns_body, prefix="edgeml.dev")
    for uid in (mine[0], theirs[0]):
        body = kopf.Body({"metadata": {"uid": uid, "name": uid, "namespace": "ns"}, "spec": {"a": 1}})
        patch = kopf.Patch()
        diffbase.store(body=body, patch=patch, essence=cast(Any, {"spec": {"a": 1}}))
        progress.store(body=body, patch=patch, key=cast(Any, "changed"), record=cast(Any, {"started": "x"}))
        assert bool(patch) == (uid in mine), patch


def test_a_resync_tick_and_the_runner_pass_only_the_shard_held() -> None:
    op, passes, mine, theirs = _operator_holding_shard_0()

    async def tick() -> None:
        assert handlers.resync_due(op) == len(mine)
        while len(passes.calls) < len(mine):
            await asyncio.sleep(0.01)
        assert await op.runner.request("ns", theirs[0]) is None  # deferred: another replica's shard
        await op.runner.close()

    asyncio.run(asyncio.wait_for(tick(), 10))
    assert sorted(name for _, name in passes.calls) == sorted(mine)
    assert op.runner.deferred == {("ns", theirs[0])}
    assert op.runner.resume() == 0  # still not this replica's shard
