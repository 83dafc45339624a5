"""The Runner: per-EdgeModel serialising, coalescing, deferral while not leading, retries.

The Runner is pure asyncio bookkeeping around ``Reconciler.reconcile``; here a recording
stand-in takes the reconciler's place (no API server is involved at this level: the real
reconcile is exercised by the integration tests).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from edgemodel_operator.reconcile import InvalidSpecError
from edgemodel_operator.runner import Runner

KEY = ("ns", "em")


class Recorder:
    """Stands in for Reconciler: records calls; can block, fail, or fail on an invalid spec."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail: list[BaseException] = []
        self.gate: threading.Event | None = None
        self.started = threading.Event()

    def reconcile(self, namespace: str, name: str) -> Any:
        self.calls.append((namespace, name))
        self.started.set()
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail:
            raise self.fail.pop(0)
        return object()


class Flag:
    def __init__(self, value: bool) -> None:
        self.value = value

    def __call__(self) -> bool:
        return self.value


def _run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.005)


def _runner(rec: Recorder, leading: Flag, **kw: Any) -> Runner:
    return Runner(rec, owns=lambda namespace, name: leading(), **kw)  # type: ignore[arg-type]


def test_a_request_made_while_not_leading_runs_once_leadership_returns() -> None:
    """The lost wake-up: a runtime's report arrived while the Lease was being re-acquired."""

    async def test() -> None:
        rec, leading = Recorder(), Flag(False)
        run = _runner(rec, leading)
        assert await run.request(*KEY) is None
        assert rec.calls == [] and run.deferred == {KEY}
        assert run.resume() == 0  # still not leading: nothing runs, nothing is forgotten
        assert run.deferred == {KEY}
        leading.value = True
        assert run.resume() == 1
        await _until(lambda: rec.calls == [KEY])
        await _until(lambda: not run.deferred)
        await run.close()

    _run(test)


def test_only_the_leader_reconciles() -> None:
    async def test() -> None:
        rec_a, rec_b = Recorder(), Recorder()
        a, b = _runner(rec_a, Flag(True)), _runner(rec_b, Flag(False))
        for run in (a, b):
            await run.request(*KEY)
            await run.request("ns", "other")
        assert rec_a.calls == [KEY, ("ns", "other")]
        assert rec_b.calls == [] and b.deferred == {KEY, ("ns", "other")}
        await a.close()
        await b.close()

    _run(test)


def test_requests_during_a_run_fold_into_one_follow_up() -> None:
    async def test() -> None:
        rec, leading = Recorder(), Flag(True)
        rec.gate = threading.Event()
        run = _runner(rec, leading)
        first = asyncio.create_task(run.request(*KEY))
        await _until(rec.started.is_set)
        assert run.busy(*KEY) and not run.busy("ns", "other")
        for _ in range(5):
            assert await run.request(*KEY) is None
        rec.gate.set()
        assert await first is not None
        assert rec.calls == [KEY, KEY] and not run.busy(*KEY)
        await run.close()

    _run(test)


def test_a_follow_up_pending_when_leadership_is_lost_is_deferred_not_dropped() -> None:
    async def test() -> None:
        rec, leading = Recorder(), Flag(True)
        rec.gate = threading.Event()
        run = _runner(rec, leading)
        first = asyncio.create_task(run.request(*KEY))
        await _until(rec.started.is_set)
        await run.request(*KEY)  # folded into a follow-up
        leading.value = False
        rec.gate.set()
        await first
        assert rec.calls == [KEY] and run.deferred == {KEY}
        leading.value = True
        run.resume()
        await _until(lambda: len(rec.calls) == 2)
        await run.close()

    _run(test)


def test_a_failed_reconcile_is_retried_with_backoff() -> None:
    async def test() -> None:
        rec, leading = Recorder(), Flag(True)
        rec.fail = [RuntimeError("API server hiccup"), RuntimeError("again")]
        run = _runner(rec, leading, retry_base_seconds=0.01, retry_max_seconds=0.05)
        with pytest.raises(RuntimeError):
            await run.request(*KEY)
        assert run.retrying == {KEY}
        await _until(lambda: len(rec.calls) == 3)  # two retries, the second succeeds
        await _until(lambda: not run.retrying)
        await asyncio.sleep(0.1)
        assert len(rec.calls) == 3  # and then no more
        await run.close()

    _run(test)


def test_an_invalid_spec_is_not_retried() -> None:
    async def test() -> None:
        rec, leading = Recorder(), Flag(True)
        rec.fail = [InvalidSpecError("bad")]
        run = _runner(rec, leading, retry_base_seconds=0.01)
        with pytest.raises(InvalidSpecError):
            await run.request(*KEY)
        assert not run.retrying
        await asyncio.sleep(0.05)
        assert rec.calls == [KEY]
        await run.close()

    _run(test)


def test_a_retry_due_while_not_leading_is_deferred() -> None:
    async def test() -> None:
        rec, leading = Recorder(), Flag(True)
        rec.fail = [RuntimeError("boom")]
        run = _runner(rec, leading, retry_base_seconds=0.02)
        with pytest.raises(RuntimeError):
            await run.request(*KEY)
        leading.value = False
        await _until(lambda: run.deferred == {KEY})
        assert rec.calls == [KEY]
        leading.value = True
        run.resume()
        await _until(lambda: len(rec.calls) == 2)
        await run.close()

    _run(test)


def test_reconciles_of_different_edgemodels_run_at_once_up_to_the_worker_bound() -> None:
    async def test() -> None:
        rec, leading = Recorder(), Flag(True)
        rec.gate = threading.Event()
        run = _runner(rec, leading, workers=2)
        tasks = [asyncio.create_task(run.request("ns", f"em{i}")) for i in range(4)]
        await _until(lambda: len(rec.calls) == 2)
        await asyncio.sleep(0.05)
        assert len(rec.calls) == 2  # the other two wait for a worker
        rec.gate.set()
        await asyncio.gather(*tasks)
        assert sorted(rec.calls) == [("ns", f"em{i}") for i in range(4)]
        await run.close()

    _run(test)
