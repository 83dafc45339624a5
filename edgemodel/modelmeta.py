"""What a registered model version is besides its weights: its metadata, tags and files.

Split from :mod:`edgemodel.registry` (which re-exports all of it) so that a process that
reaches MLflow without its client, the runtime, shares these definitions without
importing MLflow. Pure data; no I/O here.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from edgemodel import contracts, modelstore

__all__ = ["ARTIFACT_DIR", "META_FILE", "TAGS", "LoadedModel", "ModelMeta"]

META_FILE = "edgemodel.json"
ARTIFACT_DIR = "model"
TAGS = {
    "sha256": "edgemodel.sha256",
    "onnx_sha256": "edgemodel.onnx.sha256",  # model.onnx's; only on versions that have one
    "onnx": "edgemodel.onnx",  # "converted: ..." or "skipped: <why>"
    "columns": "edgemodel.columns",
    "algorithm": "edgemodel.algorithm",
    "holdout_rmse": "edgemodel.holdout_rmse",
    "outcome": "edgemodel.outcome",  # Promoted | Rejected | RolledBack
    "reason": "edgemodel.reason",
}


@dataclasses.dataclass(frozen=True)
class ModelMeta:
    """What a serving process must know about a model besides its weights."""

    columns: tuple[str, ...]
    algorithm: str
    features: tuple[str, ...]
    target: str
    horizon: int
    lags: int
    calibration: contracts.DetectorCalibration | None = None
    """The errors on the holdout the drift detector is tuned from; None for versions
    registered before calibrations were recorded (the runtime then uses its default tuning)."""

    def to_json(self) -> str:
        raw: dict[str, Any] = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "calibration"
        }
        if self.calibration is not None:
            raw["calibration"] = self.calibration.model_dump(by_alias=True)
        return json.dumps(raw)

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        """Raises ``ValueError``, ``KeyError`` or ``TypeError`` (a pydantic error is a ``ValueError``)."""
        raw = json.loads(text)
        calibration = raw.get("calibration")
        return cls(
            columns=tuple(raw["columns"]),
            algorithm=str(raw["algorithm"]),
            features=tuple(raw["features"]),
            target=str(raw["target"]),
            horizon=int(raw["horizon"]),
            lags=int(raw["lags"]),
            calibration=None
            if calibration is None
            else contracts.DetectorCalibration.model_validate(calibration),
        )


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    model: modelstore.Predictor
    meta: ModelMeta
    format: str = "skops"
    """Which file serves: ``skops`` (scikit-learn) or ``onnx`` (onnxruntime)."""
