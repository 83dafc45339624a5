"""The drift detector's calibration: what a model's errors on its holdout look like.

The trainer measures it on the holdout of each version it registers and records it with
the version (:class:`edgemodel.registry.ModelMeta`); the runtime tunes its change detector
from the calibration of the version it serves (``edgemodel_runtime.drift.calibrated_tuning``,
where the drift threshold comes in). The statistics are in the target's units, so a change
of the threshold re-tunes the detector without retraining.

Pure: numbers in, a :class:`edgemodel.contracts.DetectorCalibration` out; no I/O here.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edgemodel import contracts, features, modelstore

__all__ = ["measure", "on_holdout"]


def measure(residuals: npt.ArrayLike) -> contracts.DetectorCalibration | None:
    """The calibration from a model's holdout residuals (prediction minus truth).

    None when there is nothing to measure: no residual, or any that is not finite (such a
    model is not promoted; the runtime would use its default tuning).

    >>> c = measure([1.0, -1.0, 3.0, -3.0])
    >>> c.mean_abs, c.std_abs, c.rmse, c.samples
    (2.0, 1.0, 2.23606797749979, 4)
    >>> measure([]) is None, measure([1.0, float("nan")]) is None
    (True, True)
    """
    errors = np.abs(np.asarray(residuals, dtype=np.float64).reshape(-1))
    if errors.size == 0 or not np.all(np.isfinite(errors)):
        return None
    return contracts.DetectorCalibration(
        mean_abs=float(errors.mean()),
        std_abs=float(errors.std()),
        rmse=float(np.sqrt(np.mean(errors * errors))),
        samples=int(errors.size),
    )


def on_holdout(
    model: modelstore.Predictor, holdout: features.TrainingFrame
) -> contracts.DetectorCalibration | None:
    """The calibration of ``model`` from its errors on ``holdout`` (the rows it was judged on)."""
    predictions = np.asarray(model.predict(holdout.x), dtype=np.float64).reshape(-1)
    return measure(predictions - holdout.y)
