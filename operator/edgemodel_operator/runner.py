"""Serialise and coalesce reconciles per EdgeModel, and run them off the event loop.

Any number of triggers (kopf handlers, the timer, watches of children) may ask for a
reconcile of the same EdgeModel at once. One runs at a time per EdgeModel; requests that
arrive meanwhile collapse into a single follow-up run. Nothing runs unless this replica
leads.

I/O: none itself; it calls :class:`edgemodel_operator.reconcile.Reconciler` in a thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

from edgemodel_operator.reconcile import Outcome, Reconciler

__all__ = ["Runner"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Slot:
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    pending: bool = False


class Runner:
    def __init__(self, reconciler: Reconciler, *, is_leader: Callable[[], bool]) -> None:
        self.reconciler = reconciler
        self._is_leader = is_leader
        self._slots: dict[tuple[str, str], _Slot] = {}

    async def request(self, namespace: str, name: str) -> Outcome | None:
        """Reconcile now, or make sure a reconcile follows the one already running."""
        if not self._is_leader():
            return None
        slot = self._slots.setdefault((namespace, name), _Slot())
        if slot.lock.locked():
            slot.pending = True
            return None
        outcome = None
        async with slot.lock:
            while True:
                slot.pending = False
                outcome = await asyncio.to_thread(self.reconciler.reconcile, namespace, name)
                if not slot.pending or not self._is_leader():
                    break
        if outcome is None:
            self._slots.pop((namespace, name), None)
        return outcome
