"""Which devices this replica owns, when several replicas read the same topics.

Every replica subscribes to every topic and keeps only the devices whose stable hash
falls into its partition: ``crc32(device) % count == index``. One device is therefore
always handled by one replica, in order, with its whole history (see docs/runtime.md for
the trade-off against MQTT 5 shared subscriptions).

Pure functions; no I/O here.
"""

from __future__ import annotations

import dataclasses
import re
import zlib

__all__ = ["Partition", "index_from_pod_name"]


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
