"""Safe model files: skops format, an allow-list that lives in this code, and a recorded hash.

Why not ``mlflow.sklearn.load_model``: MLflow's loader reads the skops trusted-types list
from the model artifact itself, so a tampered artifact could widen what it is allowed to
construct. Here the allow-list is :data:`TRUSTED_TYPES`, in our code, and a file whose
SHA-256 differs from the one recorded at registration is refused before it is parsed.

ONNX (issue 13): the trainer also converts each model with skl2onnx (:func:`to_onnx`, float64
input, kept only if its predictions agree with the model's on the holdout rows), and the
runtime serves it with onnxruntime (:func:`load_onnx`: the SHA-256 is checked on the bytes
before the graph is parsed). skops, scikit-learn, skl2onnx and onnxruntime are imported only
by the functions that use them, so a runtime serving ONNX never imports scikit-learn.

Used by the trainer (save, convert, and load the champion for comparison) and the runtime
(load for hot reload). File I/O only; no network.
"""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "MODEL_FILE",
    "ONNX_FILE",
    "ONNX_RTOL",
    "TRUSTED_TYPES",
    "ModelLoadError",
    "OnnxModel",
    "Predictor",
    "load",
    "load_onnx",
    "sanity_check",
    "save",
    "sha256_file",
    "to_onnx",
]

MODEL_FILE = "model.skops"
ONNX_FILE = "model.onnx"
ONNX_RTOL = 1e-9
"""How close the ONNX model's predictions must be to the model's on the holdout rows, relative
to the larger of the prediction and the rows' largest prediction (the ridge agrees to ~1e-16;
float32 tree ensembles differ by ~1e-7 and are not kept)."""

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
    import skops.io  # noqa: PLC0415 - only the skops path pays for skops and scikit-learn

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
    import skops.io  # noqa: PLC0415 - only the skops path pays for skops and scikit-learn

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


class OnnxModel:
    """An ONNX graph in an onnxruntime session (CPU, one thread), with the model's ``predict``."""

    def __init__(self, session: Any) -> None:
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise ModelLoadError(f"ONNX model has {len(inputs)} inputs and {len(outputs)} outputs")
        if inputs[0].type != "tensor(double)":
            raise ModelLoadError(f"ONNX model takes {inputs[0].type}, not tensor(double)")
        self.session = session
        self.input = str(inputs[0].name)
        self.output = str(outputs[0].name)

    def predict(self, x: npt.NDArray[np.float64], /) -> npt.NDArray[np.float64]:
        rows = np.ascontiguousarray(x, dtype=np.float64)
        (out,) = self.session.run([self.output], {self.input: rows})
        return np.asarray(out, dtype=np.float64).reshape(len(rows))


def load_onnx(raw: bytes, *, expected_sha256: str | None) -> OnnxModel:
    """An :class:`OnnxModel` from the bytes of an ONNX file, refusing them if their SHA-256 differs.

    The hash is checked before onnxruntime parses anything; ``expected_sha256`` is the one
    recorded at registration (``None`` only for bytes this process made itself).
    """
    if expected_sha256 is not None:
        actual = hashlib.sha256(raw).hexdigest()
        if actual != expected_sha256:
            raise ModelLoadError(
                f"{ONNX_FILE} has SHA-256 {actual[:12]}…, but {expected_sha256[:12]}… was recorded "
                "at registration; refusing a changed artifact"
            )
    import onnxruntime  # noqa: PLC0415 - only the ONNX path pays for onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(raw, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelLoadError(f"{ONNX_FILE} could not be loaded by onnxruntime: {exc}") from exc
    return OnnxModel(session)


def to_onnx(model: Any, rows: npt.NDArray[np.float64]) -> tuple[bytes | None, str]:
    """``model`` converted by skl2onnx for float64 input, if it predicts ``rows`` as ``model`` does.

    Returns the ONNX file's bytes (or ``None``) and what happened, for the version's tag:
    ``converted: ...`` with the largest relative difference, or ``skipped: ...`` with why
    (skl2onnx cannot convert it, onnxruntime cannot run it in float64, or the predictions
    differ by more than :data:`ONNX_RTOL`). ``rows`` are the holdout's input rows.
    """
    x = np.ascontiguousarray(rows, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        return None, f"skipped: no rows to check the conversion on (shape {x.shape})"
    try:
        from skl2onnx import convert  # noqa: PLC0415 - the trainer's only

        raw = convert.to_onnx(model, x[:1]).SerializeToString()
        converted = load_onnx(raw, expected_sha256=None)
        got = converted.predict(x)
    except Exception as exc:  # noqa: BLE001 - any failure means: no ONNX for this version
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"skipped: {type(exc).__name__}: {first[:300]}"
    want = np.asarray(model.predict(x), dtype=np.float64).reshape(len(x))
    scale = np.maximum(np.abs(want), float(np.max(np.abs(want))) or 1.0)
    worst = float(np.max(np.abs(got - want) / scale))
    if not np.all(np.isfinite(got)) or not worst <= ONNX_RTOL:
        return None, (
            f"skipped: predictions differ from the model's by {worst:.2g} relative on {len(x)} "
            f"holdout rows (more than {ONNX_RTOL:g})"
        )
    return raw, f"converted: float64, agrees to {worst:.2g} relative on {len(x)} holdout rows"


def sanity_check(model: Predictor, n_features: int) -> None:
    """Refuse a model that cannot predict a finite value for a row of the expected width."""
    probe = np.zeros((2, n_features), dtype=np.float64)
    try:
        out = np.asarray(model.predict(probe), dtype=np.float64)
    except Exception as exc:
        raise ModelLoadError(f"model fails on a row of {n_features} features: {exc}") from exc
    if out.shape != (2,) or not np.all(np.isfinite(out)):
        raise ModelLoadError(f"model returned {out.shape} non-finite or misshapen predictions")
