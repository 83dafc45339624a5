"""Whether a challenger replaces the champion: the promotion gate.

The challenger and the champion are scored on the same most-recent holdout. The
challenger is promoted only when its RMSE is lower than the champion's by more than
``margin``, relative: ``challenger < champion * (1 - margin)``. With ``margin = 0.02``
a challenger must be at least 2 % better; a tie keeps the champion, because swapping
models has a cost of its own (a reload on every replica, and a new unknown).

Pure functions and value types; no I/O here.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["Decision", "decide"]


@dataclasses.dataclass(frozen=True)
class Decision:
    """The verdict, with a CamelCase ``reason`` and a readable ``message``."""

    promote: bool
    reason: str
    message: str


def decide(
    *,
    challenger_rmse: float,
    champion_rmse: float | None,
    margin: float,
    no_champion_reason: str = "FirstVersion",
) -> Decision:
    """Decide on promotion; ``champion_rmse=None`` means no usable champion exists.

    >>> decide(challenger_rmse=0.9, champion_rmse=1.0, margin=0.02).promote
    True
    >>> decide(challenger_rmse=0.99, champion_rmse=1.0, margin=0.02).reason
    'BelowPromotionMargin'
    >>> decide(challenger_rmse=5.0, champion_rmse=None, margin=0.02).reason
    'FirstVersion'
    """
    if not 0.0 <= margin < 1.0:
        raise ValueError("margin must be at least 0 and below 1")
    if not math.isfinite(challenger_rmse):
        return Decision(False, "ChallengerNotFinite", f"challenger holdout RMSE is {challenger_rmse}")
    if champion_rmse is None:
        return Decision(True, no_champion_reason, f"challenger holdout RMSE {challenger_rmse:.6g}")
    if not math.isfinite(champion_rmse):
        return Decision(
            True,
            "ChampionNotFinite",
            f"champion holdout RMSE is {champion_rmse}; challenger {challenger_rmse:.6g}",
        )
    bar = champion_rmse * (1.0 - margin)
    if challenger_rmse < bar:
        return Decision(
            True,
            "BeatChampion",
            f"challenger holdout RMSE {challenger_rmse:.6g} < {bar:.6g} "
            f"(champion {champion_rmse:.6g} - {margin:.1%})",
        )
    return Decision(
        False,
        "BelowPromotionMargin",
        f"challenger holdout RMSE {challenger_rmse:.6g} is not below {bar:.6g} "
        f"(champion {champion_rmse:.6g} - {margin:.1%})",
    )
