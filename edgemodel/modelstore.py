"""Safe model files: skops format, an allow-list that lives in this code, and a recorded hash.

Why not ``mlflow.sklearn.load_model``: MLflow's loader reads the skops trusted-types list
from the model artifact itself, so a tampered artifact could widen what it is allowed to
construct. Here the allow-list is :data:`TRUSTED_TYPES`, in our code, and a file whose
SHA-256 differs from the one recorded at registration is refused before it is parsed.

Used by the trainer (save, and load the champion for comparison) and the runtime (load
for hot reload). File I/O only; no network.
"""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import skops.io

__all__ = [
    "MODEL_FILE",
    "TRUSTED_TYPES",
    "ModelLoadError",
    "Predictor",
    "load",
    "sanity_check",
    "save",
    "sha256_file",
]

MODEL_FILE = "model.skops"

# Types beyond skops' defaults that our algorithms need. skops trusts plain sklearn
# estimators and numpy arrays already; tree ensembles also carry the Cython Tree type.
TRUSTED_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)


class ModelLoadError(RuntimeError):
    """A model file was refused: missing, tampered, corrupted, untrusted or unusable."""


class Predictor(Protocol):
    """What serving needs from a model."""

    def predict(self, x: npt.NDArray[np.float64], /) -> Any: ...


def sha256_file(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save(model: Any, path: pathlib.Path) -> str:
    """Write ``model`` in skops format; return the file's SHA-256 to record with it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    skops.io.dump(model, path)
    return sha256_file(path)


def load(path: pathlib.Path, *, expected_sha256: str | None) -> Predictor:
    """Load a model written by :func:`save`, refusing anything not proven safe.

    ``expected_sha256`` is the digest recorded at registration; pass ``None`` only for
    files this process wrote itself.
    """
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise ModelLoadError(
                f"model file {path} has SHA-256 {actual[:12]}…, but {expected_sha256[:12]}… "
                "was recorded at registration; refusing a changed artifact"
            )
    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:
        raise ModelLoadError(f"model file {path} is not a readable skops file: {exc}") from exc
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise ModelLoadError(f"model file {path} needs types outside the allow-list: {refused}")
    try:
        model = skops.io.load(path, trusted=list(TRUSTED_TYPES))
    except Exception as exc:
        raise ModelLoadError(f"model file {path} could not be loaded: {exc}") from exc
    if not callable(getattr(model, "predict", None)):
        raise ModelLoadError(f"model file {path} holds {type(model).__name__}, which cannot predict")
    return model  # type: ignore[no-any-return]


def sanity_check(model: Predictor, n_features: int) -> None:
    """Refuse a model that cannot predict a finite value for a row of the expected width."""
    probe = np.zeros((2, n_features), dtype=np.float64)
    try:
        out = np.asarray(model.predict(probe), dtype=np.float64)
    except Exception as exc:
        raise ModelLoadError(f"model fails on a row of {n_features} features: {exc}") from exc
    if out.shape != (2,) or not np.all(np.isfinite(out)):
        raise ModelLoadError(f"model returned {out.shape} non-finite or misshapen predictions")
