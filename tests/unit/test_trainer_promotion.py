"""The promotion gate and the rollback decision: pure, no I/O."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgemodel_operator import rollback
from edgemodel_trainer import promotion

MARGIN = 0.02


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "reason"),
    [
        (1.0, None, True, "FirstVersion"),
        (0.90, 1.0, True, "BeatChampion"),
        (0.979, 1.0, True, "BeatChampion"),
        (0.98, 1.0, False, "BelowPromotionMargin"),  # exactly the margin is not enough
        (0.99, 1.0, False, "BelowPromotionMargin"),
        (1.00, 1.0, False, "BelowPromotionMargin"),
        (1.50, 1.0, False, "BelowPromotionMargin"),
        (0.5, 0.0, False, "BelowPromotionMargin"),
        (math.inf, 1.0, False, "ChallengerNotFinite"),
        (math.nan, None, False, "ChallengerNotFinite"),
        (1.0, math.inf, True, "ChampionNotFinite"),
    ],
)
def test_gate(challenger: float, champion: float | None, promote: bool, reason: str) -> None:
    decision = promotion.decide(challenger_rmse=challenger, champion_rmse=champion, margin=MARGIN)
    assert (decision.promote, decision.reason) == (promote, reason)
    assert decision.message


def test_gate_carries_why_there_is_no_champion() -> None:
    decision = promotion.decide(
        challenger_rmse=1.0, champion_rmse=None, margin=MARGIN, no_champion_reason="ChampionUnusable"
    )
    assert decision.promote
    assert decision.reason == "ChampionUnusable"


@pytest.mark.parametrize("margin", [-0.01, 1.0, 2.0])
def test_gate_refuses_a_meaningless_margin(margin: float) -> None:
    with pytest.raises(ValueError):
        promotion.decide(challenger_rmse=1.0, champion_rmse=1.0, margin=margin)


@given(
    champion=st.floats(0.01, 1e6),
    ratio=st.floats(0.0, 3.0),
    margin=st.floats(0.0, 0.5),
)
def test_gate_promotes_exactly_when_relative_improvement_exceeds_margin(
    champion: float, ratio: float, margin: float
) -> None:
    challenger = champion * ratio
    decision = promotion.decide(challenger_rmse=challenger, champion_rmse=champion, margin=margin)
    assert decision.promote == (challenger < champion * (1 - margin))


@pytest.mark.parametrize(
    ("new", "previous", "samples", "roll_back", "reason"),
    [
        (2.0, 1.0, 100, True, "LiveRmseWorse"),
        (1.11, 1.0, 100, True, "LiveRmseWorse"),
        (1.10, 1.0, 100, False, "WithinTolerance"),
        (0.5, 1.0, 100, False, "WithinTolerance"),
        (9.0, 1.0, 49, False, "NotEnoughSamples"),
        (9.0, None, 100, False, "NoBaseline"),
        (9.0, math.nan, 100, False, "NoBaseline"),
        (None, 1.0, 100, False, "NoLiveRmse"),
        (math.inf, 1.0, 100, True, "LiveRmseNotFinite"),
        (math.nan, 1.0, 100, True, "LiveRmseNotFinite"),
        (0.0, 0.0, 100, False, "WithinTolerance"),
    ],
)
def test_rollback_decision(
    new: float | None, previous: float | None, samples: int, roll_back: bool, reason: str
) -> None:
    decision = rollback.decide(new_live_rmse=new, previous_rmse=previous, samples=samples)
    assert (decision.roll_back, decision.reason) == (roll_back, reason)


def test_rollback_policy_is_configurable_and_validated() -> None:
    strict = rollback.RollbackPolicy(tolerance=0.0, min_samples=1)
    assert rollback.decide(new_live_rmse=1.01, previous_rmse=1.0, samples=1, policy=strict).roll_back
    with pytest.raises(ValueError):
        rollback.RollbackPolicy(tolerance=-0.1)
    with pytest.raises(ValueError):
        rollback.RollbackPolicy(min_samples=0)


@given(new=st.floats(0, 100), previous=st.floats(0, 100), tolerance=st.floats(0, 1))
def test_rollback_matches_its_formula(new: float, previous: float, tolerance: float) -> None:
    policy = rollback.RollbackPolicy(tolerance=tolerance, min_samples=1)
    decision = rollback.decide(new_live_rmse=new, previous_rmse=previous, samples=1, policy=policy)
    assert decision.roll_back == (new > previous * (1 + tolerance))
