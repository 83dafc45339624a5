"""The holdout gate: fit a challenger on the older rows, judge it and the champion on the newest, decide.

:func:`challenge` is the one place where a training frame becomes a verdict. The trainer
(:mod:`edgemodel_trainer.pipeline`) calls it between its MLflow steps, and the backtest
(``edgemodel backtest``) calls it in memory on a virtual clock, so both judge models by
exactly the same rule:

1. split the frame in time order (:func:`edgemodel_trainer.train.time_split`, with a gap
   of ``horizon × devices`` rows);
2. fit the challenger on the older part and score it on the holdout;
3. score the champion on the same holdout (:func:`score`);
4. decide with :func:`edgemodel_trainer.promotion.decide`.

The champion comes in as a callable, because the trainer must load it from the registry
(I/O) while the backtest holds it in memory; :func:`score` is the pure part both use.

Pure functions and value types; no I/O here (timing is the caller's, through ``stage``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from edgemodel import api, features, modelstore
from edgemodel_trainer import promotion, train

__all__ = ["NO_CHAMPION", "Challenge", "ChampionScore", "challenge", "score"]


@dataclasses.dataclass(frozen=True)
class ChampionScore:
    """The serving champion on the challenger's holdout."""

    version: str | None
    """None when the alias points nowhere."""
    rmse: float | None
    """None when there is no champion, or it cannot be compared (``reason`` says why)."""
    reason: str = "FirstVersion"
    """The promotion reason when ``rmse`` is None: ``FirstVersion``, ``ChampionUnusable`` or
    ``ChampionIncompatible``."""


NO_CHAMPION = ChampionScore(None, None, "FirstVersion")


@dataclasses.dataclass(frozen=True)
class Challenge:
    """What the gate saw and decided."""

    model: Any
    """The challenger, fitted on ``train_part`` only (the trainer does not refit)."""
    train_part: features.TrainingFrame
    holdout: features.TrainingFrame
    challenger_rmse: float
    train_rmse: float
    baseline_rmse: float | None
    """The last-value forecast on the holdout, when the target is also a feature."""
    champion: ChampionScore
    decision: promotion.Decision


@contextlib.contextmanager
def _untimed(_name: str) -> Iterator[None]:
    yield


def score(
    model: modelstore.Predictor,
    *,
    version: str,
    trained_for: features.FeatureSpec,
    spec: features.FeatureSpec,
    holdout: features.TrainingFrame,
) -> ChampionScore:
    """Score a champion that was trained for ``trained_for`` on a holdout built for ``spec``.

    A champion trained for other features, target, horizon or lags is incompatible; one
    that cannot predict the holdout is unusable. Either way the challenger then only has
    to be usable itself.

    >>> import numpy as np
    >>> class Mean:
    ...     def predict(self, x): return np.full(len(x), 2.0)
    >>> s = features.FeatureSpec(features=("v",), target="v", lags=0)
    >>> f = features.TrainingFrame(np.zeros((2, 1)), np.array([1.0, 3.0]), np.arange(2.0), ("v",))
    >>> score(Mean(), version="1", trained_for=s, spec=s, holdout=f)
    ChampionScore(version='1', rmse=1.0, reason='FirstVersion')
    >>> score(Mean(), version="1", trained_for=features.FeatureSpec(("w",), "w"), spec=s, holdout=f).reason
    'ChampionIncompatible'
    """
    if trained_for != spec:
        return ChampionScore(version, None, "ChampionIncompatible")
    try:
        return ChampionScore(version, train.evaluate(model, holdout), "FirstVersion")
    except Exception:  # noqa: BLE001 - a champion that cannot predict is not comparable
        return ChampionScore(version, None, "ChampionUnusable")


def challenge(
    frame: features.TrainingFrame,
    *,
    spec: features.FeatureSpec,
    algorithm: api.Algorithm,
    margin: float,
    gap: int,
    champion: Callable[[features.TrainingFrame], ChampionScore],
    holdout_fraction: float = train.HOLDOUT_FRACTION,
    seed: int = 0,
    stage: Callable[[str], AbstractContextManager[None]] = _untimed,
) -> Challenge:
    """Fit a challenger on ``frame``'s older rows, judge it against ``champion`` on the newest.

    ``champion`` scores the holdout (see :func:`score`; :data:`NO_CHAMPION` when none
    serves). ``stage(name)`` wraps the fit (``fit_seconds``) and the champion's scoring
    (``champion_seconds``), for a caller that times them. Raises
    :class:`edgemodel_trainer.train.NotEnoughDataError` when the frame is too small.
    """
    train_part, holdout = train.time_split(frame, fraction=holdout_fraction, gap=gap)
    with stage("fit_seconds"):
        model = train.fit(algorithm, train_part, seed=seed)
    challenger_rmse = train.evaluate(model, holdout)
    train_rmse = train.evaluate(model, train_part)
    naive = train.last_value_predictions(holdout, spec)
    baseline_rmse = None if naive is None else train.rmse(holdout.y, naive)
    with stage("champion_seconds"):
        judged = champion(holdout)
    decision = promotion.decide(
        challenger_rmse=challenger_rmse,
        champion_rmse=judged.rmse,
        margin=margin,
        no_champion_reason=judged.reason,
    )
    return Challenge(
        model=model,
        train_part=train_part,
        holdout=holdout,
        challenger_rmse=challenger_rmse,
        train_rmse=train_rmse,
        baseline_rmse=baseline_rmse,
        champion=judged,
        decision=decision,
    )
