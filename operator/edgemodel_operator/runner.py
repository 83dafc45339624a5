"""Serialise and coalesce reconciles per EdgeModel, and run them off the event loop.

Any number of triggers (kopf handlers, the timer, watches of children) may ask for a
reconcile of the same EdgeModel at once. One runs at a time per EdgeModel; requests that
arrive meanwhile collapse into a single follow-up run. Nothing runs unless this replica
owns the EdgeModel (holds the Lease of its shard), but nothing asked for is lost either:

- a request made while this replica does not own the EdgeModel is *deferred*, and
  :meth:`Runner.resume` (called after every Lease round that holds a shard) runs every
  deferred one it now owns;
- a reconcile that raises is retried after a backoff (``retry_base_seconds`` doubling up
  to ``retry_max_seconds``), except an invalid spec, which only a spec change can fix.
  This is the only retry of a failed pass: the kopf handlers raise nothing to kopf for
  it, so kopf does not retry the same pass again.

Reconciles run on a bounded executor of their own, so a burst of them cannot starve
anything else that needs a thread (the leader Lease renewals have their own thread).

I/O: none itself; it calls :class:`edgemodel_operator.reconcile.Reconciler` in threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from edgemodel_operator.reconcile import InvalidSpecError, Outcome, Reconciler

__all__ = ["Runner"]

log = logging.getLogger(__name__)

Key = tuple[str, str]


@dataclasses.dataclass
class _Slot:
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    pending: bool = False


class Runner:
    def __init__(
        self,
        reconciler: Reconciler,
        *,
        owns: Callable[[str, str], bool],
        workers: int = 8,
        retry_base_seconds: float = 2.0,
        retry_max_seconds: float = 60.0,
    ) -> None:
        self.reconciler = reconciler
        self._owns = owns
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, workers), thread_name_prefix="reconcile"
        )
        self._retry_base = retry_base_seconds
        self._retry_max = retry_max_seconds
        self._slots: dict[Key, _Slot] = {}
        self._deferred: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._retries: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ state, for tests and logs

    @property
    def deferred(self) -> frozenset[Key]:
        """Requests made while this replica did not own their EdgeModel, waiting for :meth:`resume`."""
        return frozenset(self._deferred)

    @property
    def retrying(self) -> frozenset[Key]:
        """EdgeModels whose last reconcile failed and that have a retry scheduled."""
        return frozenset(self._retries)

    def busy(self, namespace: str, name: str) -> bool:
        """Whether a reconcile of this EdgeModel is running or waiting for a worker."""
        slot = self._slots.get((namespace, name))
        return slot is not None and slot.lock.locked()

    # ------------------------------------------------------------------ requests

    async def request(self, namespace: str, name: str) -> Outcome | None:
        """Reconcile now, or make sure a reconcile follows the one already running.

        Returns the outcome of a reconcile this call ran; None when the EdgeModel is gone,
        when the request was folded into a run already going, or when it was deferred
        because this replica does not own the EdgeModel. Raises what the reconcile raised (after
        scheduling a retry).
        """
        key = (namespace, name)
        if not self._owns(namespace, name):
            self._deferred.add(key)
            log.debug("Deferred the reconcile of EdgeModel %s/%s: not holding its shard", namespace, name)
            return None
        slot = self._slots.setdefault(key, _Slot())
        if slot.lock.locked():
            slot.pending = True
            return None
        outcome = None
        loop = asyncio.get_running_loop()
        async with slot.lock:
            while True:
                slot.pending = False
                if not self._owns(namespace, name):
                    self._deferred.add(key)
                    break
                try:
                    outcome = await loop.run_in_executor(
                        self._executor, self.reconciler.reconcile, namespace, name
                    )
                except InvalidSpecError:
                    self._failures.pop(key, None)
                    if slot.pending:  # perhaps the fix of the spec; look again at once
                        self._retry_later(key, 0.0)
                    raise
                except Exception:
                    failures = self._failures[key] = self._failures.get(key, 0) + 1
                    self._retry_later(key, min(self._retry_max, self._retry_base * 2 ** (failures - 1)))
                    raise
                self._failures.pop(key, None)
                if not slot.pending:
                    break
        if outcome is None and not slot.pending:
            self._slots.pop(key, None)
        return outcome

    def submit(self, namespace: str, name: str) -> None:
        """Request a reconcile in the background; failures are retried, not raised."""
        self.spawn(self._quietly(namespace, name))

    def resume(self) -> int:
        """Run every deferred request whose EdgeModel this replica now owns; return how many.

        The others stay deferred: another replica holds their shard (and reconciles them),
        and they run here only if this replica takes that shard.
        """
        keys = {k for k in self._deferred if self._owns(*k)}
        if not keys:
            return 0
        self._deferred -= keys
        for namespace, name in sorted(keys):
            self.submit(namespace, name)
        log.info("Running %d reconciles requested while not holding their shard", len(keys))
        return len(keys)

    def discard(self, namespace: str, name: str) -> None:
        """Forget a deferred request of an EdgeModel that is gone."""
        self._deferred.discard((namespace, name))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background, holding a reference until it ends; :meth:`close` cancels it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel scheduled retries and background requests; stop the executor."""
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ internals

    async def _quietly(self, namespace: str, name: str) -> None:
        try:
            await self.request(namespace, name)
        except InvalidSpecError as exc:
            log.warning("EdgeModel %s/%s has an invalid spec: %s", namespace, name, exc)
        except Exception:  # a retry is already scheduled
            log.warning("Reconcile of EdgeModel %s/%s failed, will retry", namespace, name, exc_info=True)

    def _retry_later(self, key: Key, delay: float) -> None:
        handle = self._retries.get(key)
        loop = asyncio.get_running_loop()
        if handle is not None:
            if handle.when() <= loop.time() + delay:
                return
            handle.cancel()
        self._retries[key] = loop.call_later(delay, self._retry_now, key)

    def _retry_now(self, key: Key) -> None:
        self._retries.pop(key, None)
        self.submit(*key)
