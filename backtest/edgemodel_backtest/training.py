"""A trainer Job in memory: the readings of a training window in, a judged challenger out.

The steps are the trainer's own (:mod:`edgemodel_trainer.pipeline`), minus MLflow:

1. the window's readings as the table the runtime logs (``device``, ``ts``, fields), cut
   to the readings after a marked change when enough follow it
   (:func:`edgemodel_trainer.data.since_change`), then
   :func:`~edgemodel_trainer.data.normalise` and
   :func:`~edgemodel_trainer.data.most_recent` (``trainingWindow`` readings);
2. rows by :func:`edgemodel.features.build_training_frame`;
3. :func:`edgemodel_trainer.gate.challenge`: fit on the older part, score it and the
   champion (:func:`edgemodel_trainer.gate.score`, the model in memory) on the newest
   part, decide with the promotion margin;
4. the detector calibration on the challenger's holdout
   (:func:`edgemodel_trainer.calibration.on_holdout`), which the trainer records with
   the version and the runtime tunes its change detector from.

What is left out, because nothing is stored: registering the version, the skops round
trip and the alias check. A challenger is therefore never refused for its artifact here.

Pure functions and value types; no I/O here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pandas as pd

from edgemodel import api, contracts, features
from edgemodel_backtest import stream
from edgemodel_runtime import payloads
from edgemodel_trainer import calibration, data, gate, train

__all__ = ["Verdict", "table", "train_on"]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What a Job reported: ``Promoted``, ``Rejected`` or ``Failed``."""

    outcome: str
    reason: str
    """``Reason: detail``, as the trainer writes it."""
    model: Any | None = None
    """The challenger, when one was fitted."""
    holdout_rmse: float | None = None
    champion_rmse: float | None = None
    samples: int = 0
    calibration: contracts.DetectorCalibration | None = None
    """Measured on the challenger's holdout, as the trainer measures it for every version it registers."""


def table(readings: Sequence[payloads.Reading], fields: Sequence[str]) -> pd.DataFrame:
    """The readings as a window table (:func:`edgemodel_runtime.window.to_csv`'s columns)."""
    return pd.DataFrame(
        {
            data.DEVICE: [r.device for r in readings],
            data.TIMESTAMP: [r.ts for r in readings],
            **{f: [r.values[f] for r in readings] for f in fields},
        }
    )


def train_on(
    readings: Sequence[payloads.Reading],
    *,
    spec: api.EdgeModelSpec,
    champion: stream.Served | None,
    change_ts: float | None = None,
    seed: int = 0,
) -> Verdict:
    """Train and judge a challenger on ``readings`` against ``champion``, as a trainer Job would."""
    fspec = stream.feature_spec(spec)
    raw = table(readings, fspec.fields)
    if change_ts is not None:
        raw, _ = data.since_change(raw, change_ts)
    window = (
        data.most_recent(data.normalise(raw, fspec), spec.retraining.training_window) if len(raw) else raw
    )
    if window.empty:
        return Verdict("Failed", "NoTrainingData: the training window holds no usable reading")
    frame = features.build_training_frame(fspec, data.readings(window, fspec))
    gap = fspec.horizon * int(window[data.DEVICE].nunique())

    def score(holdout: features.TrainingFrame) -> gate.ChampionScore:
        if champion is None:
            return gate.NO_CHAMPION
        return gate.score(
            champion.model, version=champion.version, trained_for=fspec, spec=fspec, holdout=holdout
        )

    try:
        judged = gate.challenge(
            frame,
            spec=fspec,
            algorithm=spec.model.algorithm,
            margin=spec.retraining.promotion_margin,
            gap=gap,
            champion=score,
            seed=seed,
        )
    except train.NotEnoughDataError as exc:
        return Verdict("Failed", f"NotEnoughData: {exc}", samples=len(frame))
    decision = judged.decision
    return Verdict(
        outcome="Promoted" if decision.promote else "Rejected",
        reason=f"{decision.reason}: {decision.message}",
        model=judged.model,
        holdout_rmse=judged.challenger_rmse,
        champion_rmse=judged.champion.rmse,
        samples=len(frame),
        calibration=calibration.on_holdout(judged.model, judged.holdout),
    )
