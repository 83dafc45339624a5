"""Whether a freshly promoted model version should be rolled back, judged from live error.

The operator calls :func:`decide` with what the runtime replicas report: the live RMSE
of the new champion, how many labelled predictions that RMSE rests on, and the RMSE of
the previous champion (its live RMSE before the switch, or its recorded holdout RMSE).
When the answer is to roll back, the operator starts a Job running
``edgemodel-trainer rollback --to-version <previous>``; the trainer never decides this
on its own, because only the operator sees every replica's reports.

Pure functions and value types; no I/O here.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["RollbackDecision", "RollbackPolicy", "decide"]


@dataclasses.dataclass(frozen=True)
class RollbackPolicy:
    """How much worse, on how much evidence, a new version may be before it is rolled back."""

    tolerance: float = 0.10
    """Relative slack: roll back when ``new_live > previous * (1 + tolerance)``."""
    min_samples: int = 50
    """Labelled live predictions needed before the new version is judged at all."""

    def __post_init__(self) -> None:
        if self.tolerance < 0:
            raise ValueError("tolerance must not be negative")
        if self.min_samples < 1:
            raise ValueError("min_samples must be at least 1")


@dataclasses.dataclass(frozen=True)
class RollbackDecision:
    """The verdict, with a CamelCase ``reason`` fit for a condition and a readable message."""

    roll_back: bool
    reason: str
    message: str


def decide(
    *,
    new_live_rmse: float | None,
    previous_rmse: float | None,
    samples: int,
    policy: RollbackPolicy = RollbackPolicy(),
) -> RollbackDecision:
    """Decide whether the new version is clearly worse than the one it replaced.

    >>> decide(new_live_rmse=2.0, previous_rmse=1.0, samples=100).roll_back
    True
    >>> decide(new_live_rmse=1.05, previous_rmse=1.0, samples=100).reason
    'WithinTolerance'
    >>> decide(new_live_rmse=9.0, previous_rmse=1.0, samples=3).reason
    'NotEnoughSamples'
    """
    if samples < policy.min_samples:
        return RollbackDecision(
            False, "NotEnoughSamples", f"{samples} live samples; {policy.min_samples} needed to judge"
        )
    if previous_rmse is None or not math.isfinite(previous_rmse) or previous_rmse < 0:
        return RollbackDecision(False, "NoBaseline", f"no usable previous RMSE ({previous_rmse})")
    if new_live_rmse is None:
        return RollbackDecision(False, "NoLiveRmse", "the new version has no live RMSE yet")
    if not math.isfinite(new_live_rmse):
        return RollbackDecision(True, "LiveRmseNotFinite", f"live RMSE is {new_live_rmse}")
    limit = previous_rmse * (1.0 + policy.tolerance)
    if new_live_rmse > limit:
        return RollbackDecision(
            True,
            "LiveRmseWorse",
            f"live RMSE {new_live_rmse:.6g} exceeds {limit:.6g} "
            f"(previous {previous_rmse:.6g} + {policy.tolerance:.0%}) over {samples} samples",
        )
    return RollbackDecision(
        False,
        "WithinTolerance",
        f"live RMSE {new_live_rmse:.6g} within {limit:.6g} over {samples} samples",
    )
