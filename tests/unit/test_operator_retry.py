"""One retry path: a failed pass is retried by the Runner only, never again through kopf.

kopf retries a change handler that raises (``kopf.TemporaryError`` or any other error);
the handlers therefore raise nothing for a failed pass, and the Runner's backoff is the
only retry. A recording stand-in takes the reconciler's place (no API server here).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import kopf
import pytest

from edgemodel_operator import handlers, kube
from edgemodel_operator.reconcile import InvalidSpecError
from edgemodel_operator.runner import Runner


class Failing:
    """Stands in for Reconciler: raises the given errors in turn, then succeeds."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def reconcile(self, namespace: str, name: str) -> object:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return object()


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.005)


@pytest.mark.parametrize(
    "error",
    [kube.ApiException(status=500, reason="Internal"), kube.ApiException(status=409), RuntimeError("x")],
    ids=["5xx", "conflict", "other"],
)
def test_a_failed_pass_is_retried_once_by_the_runner_and_not_by_kopf(error: BaseException) -> None:
    async def test() -> None:
        rec = Failing(error)
        run = Runner(rec, owns=lambda namespace, name: True, retry_base_seconds=0.01)  # type: ignore[arg-type]
        # The handler returns normally: kopf has nothing to retry.
        assert await handlers._reconcile(run, "ns", "em") is None
        assert run.retrying == {("ns", "em")}
        await _until(lambda: rec.calls == 2 and not run.retrying)  # the runner's one retry
        # Nothing else is scheduled: a retried pass that succeeds ends it.
        assert not run.retrying and rec.calls == 2
        await run.close()

    asyncio.run(asyncio.wait_for(test(), 10))


def test_an_invalid_spec_is_permanent_and_not_retried() -> None:
    async def test() -> None:
        rec = Failing(InvalidSpecError("bad"))
        run = Runner(rec, owns=lambda namespace, name: True, retry_base_seconds=0.01)  # type: ignore[arg-type]
        with pytest.raises(kopf.PermanentError):
            await handlers._reconcile(run, "ns", "em")
        assert not run.retrying and rec.calls == 1
        await run.close()

    asyncio.run(asyncio.wait_for(test(), 10))
