"""Which devices this replica owns, when several replicas read the same topics.

Every replica subscribes to every topic and keeps only the devices it owns, so one
device is always handled by one replica, in order, with its whole history (see
docs/runtime.md for the trade-off against MQTT 5 shared subscriptions). Two ways to own:

- :class:`Partition` (static): ``crc32(device) % count == index``, with a fixed count
  and an index such as a StatefulSet ordinal.
- :class:`Rendezvous` (dynamic): the live replicas share the devices by rendezvous
  hashing. In a cluster they are the Pods behind the inference Service's EndpointSlices
  (:func:`endpoint_members`), so no replica writes anything to be seen; without a Service,
  the replicas that reported lately in the EdgeModel's ``status.replicaDrift``
  (:func:`live_members`). A device
  belongs to the member with the highest :func:`weight` of ``(device, member)``, so when
  a member joins or leaves, only the devices it gains or loses move.

Pure functions; no I/O here.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
import zlib
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Protocol

__all__ = [
    "Mode",
    "Ownership",
    "Partition",
    "Rendezvous",
    "endpoint_members",
    "index_from_pod_name",
    "live_members",
    "owner",
    "weight",
]

Mode = Literal["all", "static", "dynamic"]
"""How a replica decides what it owns: everything, a static partition, or rendezvous."""


class Ownership(Protocol):
    """What the message path asks: does this replica handle ``device``?"""

    @property
    def mode(self) -> Mode: ...

    @property
    def members(self) -> int: ...

    def owns(self, device: str) -> bool: ...


@dataclasses.dataclass(frozen=True)
class Partition:
    """Partition ``index`` of ``count``.

    >>> p = Partition(count=2, index=0)
    >>> [p.owns(d) for d in ("dev-3", "dev-4")]
    [True, False]
    >>> Partition().owns("anything")
    True
    """

    count: int = 1
    index: int = 0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("partition count must be at least 1")
        if not 0 <= self.index < self.count:
            raise ValueError(f"partition index must be in [0, {self.count}), got {self.index}")

    def owns(self, device: str) -> bool:
        if self.count == 1:
            return True
        return zlib.crc32(device.encode("utf-8")) % self.count == self.index

    @property
    def mode(self) -> Mode:
        return "static" if self.count > 1 else "all"

    @property
    def members(self) -> int:
        return self.count


def weight(device: str, member: str) -> int:
    """The rendezvous weight of ``member`` for ``device``: stable across processes and hosts.

    BLAKE2b of both names, separated by NUL (which neither a device id nor a Pod name
    may contain), read as a 64-bit integer.

    >>> weight("dev-1", "rt-a") == weight("dev-1", "rt-a") != weight("dev-1", "rt-b")
    True
    """
    digest = hashlib.blake2b(f"{member}\0{device}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(device: str, members: Iterable[str]) -> str:
    """The member that owns ``device``: the highest weight, ties broken by name.

    >>> owner("dev-1", ["rt-a", "rt-b", "rt-c"]) in {"rt-a", "rt-b", "rt-c"}
    True
    >>> owner("dev-1", ["rt-a"])
    'rt-a'
    """
    best = max(members, key=lambda m: (weight(device, m), m), default=None)
    if best is None:
        raise ValueError("no members")
    return best


class Rendezvous:
    """This replica's share of the devices among ``members`` (which always include ``me``).

    Immutable once built: a membership change builds a new one. ``owns`` caches its
    answers (it is asked once per reading), up to ``cache_size`` devices.

    >>> r = Rendezvous("rt-a", ["rt-a", "rt-b"])
    >>> r.members, sum(r.owns(f"dev-{i}") for i in range(100)) + sum(
    ...     Rendezvous("rt-b", ["rt-a", "rt-b"]).owns(f"dev-{i}") for i in range(100))
    (2, 100)
    >>> Rendezvous("rt-a", []).owns("anything")
    True
    """

    def __init__(self, me: str, members: Iterable[str], *, cache_size: int = 100_000) -> None:
        self.me = me
        self.names: tuple[str, ...] = tuple(sorted({*members, me}))
        self._cache: dict[str, bool] = {}
        self._cache_size = cache_size

    @property
    def mode(self) -> Mode:
        return "dynamic"

    @property
    def members(self) -> int:
        return len(self.names)

    def owns(self, device: str) -> bool:
        if len(self.names) == 1:
            return True
        mine = self._cache.get(device)
        if mine is None:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            mine = self._cache[device] = owner(device, self.names) == self.me
        return mine

    def __repr__(self) -> str:
        return f"Rendezvous(me={self.me!r}, members={list(self.names)!r})"


def live_members(
    replica_drift: Mapping[str, Any] | None,
    *,
    me: str,
    now: datetime.datetime,
    max_age: float,
) -> frozenset[str]:
    """The replicas whose last report (``reportTime``) is at most ``max_age`` seconds old, and ``me``.

    A report time in the future (clock skew) counts as fresh; an entry without a
    readable ``reportTime`` does not count.

    >>> now = datetime.datetime(2030, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
    >>> entries = {"rt-a": {"reportTime": "2030-01-01T11:59:58Z"},
    ...            "rt-b": {"reportTime": "2030-01-01T11:00:00Z"}, "rt-c": None}
    >>> sorted(live_members(entries, me="rt-me", now=now, max_age=15.0))
    ['rt-a', 'rt-me']
    """
    members = {me}
    for name, entry in (replica_drift or {}).items():
        if not isinstance(entry, Mapping):
            continue
        raw = entry.get("reportTime")
        try:
            at = datetime.datetime.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            at = None
        if at is None:
            continue
        if at.tzinfo is None:
            at = at.replace(tzinfo=datetime.UTC)
        if (now - at).total_seconds() <= max_age:
            members.add(name)
    return frozenset(members)


def endpoint_members(slices: Iterable[Mapping[str, Any]], *, me: str) -> frozenset[str]:
    """The Pods behind a Service's EndpointSlices that are not terminating, and ``me``.

    A Pod counts from when it has an address until it is being deleted, ready or not: a
    replica that restarts keeps its devices (their readings wait in its MQTT session), and
    one being deleted hands them over at once.

    >>> slices = [{"endpoints": [
    ...     {"targetRef": {"kind": "Pod", "name": "rt-0"}, "conditions": {"ready": True}},
    ...     {"targetRef": {"kind": "Pod", "name": "rt-1"}, "conditions": {"ready": False}},
    ...     {"targetRef": {"kind": "Pod", "name": "rt-2"}, "conditions": {"terminating": True}},
    ...     {"addresses": ["10.0.0.9"]}]}]
    >>> sorted(endpoint_members(slices, me="rt-3"))
    ['rt-0', 'rt-1', 'rt-3']
    """
    members = {me}
    for endpoint_slice in slices:
        endpoints = endpoint_slice.get("endpoints") if isinstance(endpoint_slice, Mapping) else None
        for endpoint in endpoints if isinstance(endpoints, list) else ():
            if not isinstance(endpoint, Mapping):
                continue
            ref = endpoint.get("targetRef")
            conditions = endpoint.get("conditions")
            if not isinstance(ref, Mapping) or ref.get("kind") != "Pod":
                continue
            if not isinstance(ref.get("name"), str):
                continue
            if isinstance(conditions, Mapping) and conditions.get("terminating") is True:
                continue
            members.add(ref["name"])
    return frozenset(members)


_ORDINAL = re.compile(r"-(\d+)$")


def index_from_pod_name(pod_name: str | None) -> int | None:
    """The StatefulSet ordinal at the end of a Pod name, if there is one.

    >>> index_from_pod_name("edge-runtime-3"), index_from_pod_name("edge-7f9c-x2kq")
    (3, None)
    """
    if not pod_name:
        return None
    match = _ORDINAL.search(pod_name)
    return int(match.group(1)) if match else None
