"""When a resync timer tick needs a full pass (Reconciler.due): answered from memory, no I/O."""

from __future__ import annotations

import pytest

from edgemodel_operator.reconcile import Reconciler
from edgemodel_operator.settings import Settings

SETTINGS = Settings(full_resync_seconds=600.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reconciler() -> tuple[Reconciler, Clock]:
    clock = Clock()
    # `due` never touches the client; no API server is involved in this decision.
    return Reconciler(None, SETTINGS, clock=clock), clock  # type: ignore[arg-type]


def test_an_edgemodel_never_passed_over_is_due():
    r, _ = _reconciler()
    assert r.due("ns", "em", "5")


def test_nothing_changed_is_not_due_until_the_full_resync():
    r, clock = _reconciler()
    r.passed("ns", "em", "5")
    assert not r.due("ns", "em", "5")
    clock.now += 599
    assert not r.due("ns", "em", "5")
    clock.now += 1
    assert r.due("ns", "em", "5")


def test_a_spec_change_or_a_runtime_report_is_due():
    """Both change the EdgeModel's resourceVersion, which the timer is given."""
    r, _ = _reconciler()
    r.passed("ns", "em", "5")
    assert r.due("ns", "em", "6")
    assert not r.due("ns", "em", "5")


def test_a_child_changed_by_hand_is_due_until_the_next_pass():
    r, _ = _reconciler()
    r.passed("ns", "em", "5")
    r.mark_dirty("ns", "em")
    assert r.due("ns", "em", "5")
    r.mark_dirty("ns", "em")
    r.forget("ns", "em")
    assert r.due("ns", "em", "5")  # forgotten: due again when next seen


def test_a_cooldown_ending_or_a_report_going_stale_is_due_at_that_moment():
    r, clock = _reconciler()
    r.passed("ns", "em", "5", requeue_after=30.0)
    clock.now += 29
    assert not r.due("ns", "em", "5")
    clock.now += 1
    assert r.due("ns", "em", "5")


def test_requeue_after_never_exceeds_the_full_resync():
    r, clock = _reconciler()
    r.passed("ns", "em", "5", requeue_after=10_000.0)
    clock.now += 600
    assert r.due("ns", "em", "5")


def test_a_pass_that_failed_half_way_is_due():
    r, _ = _reconciler()
    r.passed("ns", "em", "5")
    with pytest.raises(AttributeError):  # the client is None here: the pass fails at its first call
        r.reconcile("ns", "em")
    assert r.due("ns", "em", "5")
