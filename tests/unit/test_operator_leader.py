"""Lease expiry on the local clock, as client-go measures it: from when a change was seen.

Each replica has its own monotonic clock and its own (skewed) wall clock; they share a
Lease in an in-memory store with the API server's optimistic concurrency (a replace
with a stale resourceVersion is a 409). No real time passes: the clocks are injected.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any

import pytest

from edgemodel_operator import kube
from edgemodel_operator.leader import LeaderElector

DURATION = 15.0
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


class Leases:
    """Leases by name, with resourceVersions: the part of the API server the elector uses."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0

    def _store(self, body: Any) -> dict[str, Any]:
        self.version += 1
        obj = copy.deepcopy(dict(body))
        obj["metadata"]["resourceVersion"] = str(self.version)
        obj["spec"] = {k: v for k, v in obj["spec"].items() if v is not None}
        self.objects[obj["metadata"]["name"]] = obj
        return copy.deepcopy(obj)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get(name))

    def create(self, kind: str, namespace: str, body: Any) -> dict[str, Any]:
        if body["metadata"]["name"] in self.objects:
            raise kube.ApiException(status=409, reason="AlreadyExists")
        return self._store(body)

    def replace(self, kind: str, namespace: str, name: str, body: Any) -> dict[str, Any]:
        if body["metadata"].get("resourceVersion") != self.objects[name]["metadata"]["resourceVersion"]:
            raise kube.ApiException(status=409, reason="Conflict")
        return self._store(body)


class Replica:
    """One operator replica: a monotonic clock and a wall clock ``skew`` seconds off."""

    def __init__(self, leases: Leases, identity: str, *, skew: float = 0.0) -> None:
        self.mono = 1000.0
        self.skew = skew
        self.elector = LeaderElector(
            leases,  # type: ignore[arg-type]
            namespace="ns",
            name="lease",
            identity=identity,
            duration_seconds=DURATION,
            clock=lambda: self.mono,
            wall_clock=lambda: T0 + datetime.timedelta(seconds=self.mono + self.skew),
        )


def _tick(seconds: float, *replicas: Replica) -> None:
    for r in replicas:
        r.mono += seconds


@pytest.mark.parametrize("skew", [-3600.0, 0.0, 3600.0])
def test_a_standby_takes_over_one_duration_after_it_last_saw_a_renewal_whatever_the_holders_clock(
    skew: float,
) -> None:
    """A holder an hour behind looks long expired by renewTime; an hour ahead, never expiring."""
    leases = Leases()
    holder, standby = Replica(leases, "a", skew=skew), Replica(leases, "b")
    assert holder.elector.step()
    for _ in range(5):  # the holder renews every 3 s: the standby never takes over
        assert not standby.elector.step()
        _tick(3, holder, standby)
        assert holder.elector.step()
    assert not standby.elector.step()  # saw the last renewal now

    # The holder stops renewing (a crash). The Lease expires one duration after the
    # standby saw the last change, on the standby's clock.
    _tick(DURATION - 0.5, standby)
    assert not standby.elector.step() and not standby.elector.is_leader
    _tick(0.5, standby)
    assert standby.elector.step() and standby.elector.is_leader
    assert leases.objects["lease"]["spec"]["holderIdentity"] == "b"
    assert leases.objects["lease"]["spec"]["leaseTransitions"] == 1


def test_a_standby_that_just_started_waits_a_full_duration_even_for_an_old_renew_time() -> None:
    """It has seen no renewal yet; client-go waits a duration from its first look."""
    leases = Leases()
    holder = Replica(leases, "a", skew=-86400.0)  # renewTime a day in the past
    assert holder.elector.step()
    late = Replica(leases, "b")
    assert not late.elector.step()
    _tick(DURATION - 1, late)
    assert not late.elector.step()
    _tick(1, late)
    assert late.elector.step()


def test_a_released_lease_is_taken_at_once() -> None:
    leases = Leases()
    holder, standby = Replica(leases, "a", skew=600.0), Replica(leases, "b")
    assert holder.elector.step()
    assert not standby.elector.step()
    holder.elector.release()
    assert not holder.elector.is_leader
    assert "holderIdentity" not in leases.objects["lease"]["spec"]
    assert standby.elector.step()


def test_leadership_lapses_locally_without_a_renewal() -> None:
    """The holder stops acting two thirds of a duration after its last successful renewal began."""
    leases = Leases()
    holder = Replica(leases, "a")
    assert holder.elector.step()
    _tick(DURATION * 2 / 3 - 0.1, holder)
    assert holder.elector.is_leader
    _tick(0.1, holder)
    assert not holder.elector.is_leader
