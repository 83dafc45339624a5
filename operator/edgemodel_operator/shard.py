"""Which shard an EdgeModel belongs to, and the name of each shard's Lease.

With ``shards`` N > 1, operator replicas share the EdgeModels: an EdgeModel belongs to
shard ``of(uid, N)``, a stable hash of its UID (SHA-256, the same in every process and
Python version, unlike :func:`hash`), and only the replica holding that shard's Lease
acts on it. With N = 1 every EdgeModel is in shard 0 and the one Lease keeps its name.

Pure: no I/O here.
"""

from __future__ import annotations

import hashlib

__all__ = ["lease_name", "of"]


def of(uid: str, shards: int) -> int:
    """The shard of the EdgeModel with this UID, in ``[0, shards)``.

    >>> of("0b7c5a4e-2f53-4b0e-9a55-0e4d7f4c8a11", 1)
    0
    >>> of("0b7c5a4e-2f53-4b0e-9a55-0e4d7f4c8a11", 2) == of("0b7c5a4e-2f53-4b0e-9a55-0e4d7f4c8a11", 2)
    True
    """
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    if shards == 1:
        return 0
    digest = hashlib.sha256(uid.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def lease_name(base: str, index: int, shards: int) -> str:
    """The Lease of shard ``index``: ``base`` itself when there is one shard (as before sharding).

    >>> lease_name("edgemodel-operator", 0, 1)
    'edgemodel-operator'
    >>> lease_name("edgemodel-operator", 1, 3)
    'edgemodel-operator-shard-1'
    """
    if not 0 <= index < shards:
        raise ValueError(f"shard {index} is not in [0, {shards})")
    return base if shards == 1 else f"{base}-shard-{index}"
