"""modelstore's ONNX path (issue 13): conversion checked on holdout rows, the hash before parsing."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from edgemodel import modelstore
from edgemodel_runtime import inference
from edgemodel_trainer import train

RNG = np.random.default_rng(3)
X = RNG.normal(20.0, 5.0, size=(300, 5))
Y = X @ np.array([0.9, 0.1, -0.2, 0.05, 0.3]) + RNG.normal(0.0, 0.1, 300)


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def test_the_trainers_ridge_converts_and_predicts_as_scikit_learn() -> None:
    model = train.make_estimator("ridge").fit(X[:200], Y[:200])
    raw, outcome = modelstore.to_onnx(model, X[200:])
    assert raw is not None, outcome
    assert outcome.startswith("converted: float64") and "100 holdout rows" in outcome
    onnx = modelstore.load_onnx(raw, expected_sha256=_sha(raw))
    want = model.predict(X[200:])
    got = onnx.predict(X[200:])
    assert got.dtype == np.float64 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=modelstore.ONNX_RTOL)
    modelstore.sanity_check(onnx, X.shape[1])


def test_the_runtime_predictor_calls_the_onnx_model_without_the_ridge_fast_path() -> None:
    model = train.make_estimator("ridge").fit(X, Y)
    raw, _ = modelstore.to_onnx(model, X[:50])
    assert raw is not None
    predictor = inference.Predictor(modelstore.load_onnx(raw, expected_sha256=None))
    assert not predictor.fast
    np.testing.assert_allclose(predictor(X[:20]), model.predict(X[:20]), rtol=modelstore.ONNX_RTOL)
    assert inference.Predictor(model).fast  # the skops model keeps its fast path


@pytest.mark.parametrize("algorithm", ["random_forest", "gradient_boosting"])
def test_tree_ensembles_have_no_float64_onnx_and_are_skipped_with_the_reason(algorithm: str) -> None:
    model = train.make_estimator(algorithm).fit(X[:200], Y[:200])
    raw, outcome = modelstore.to_onnx(model, X[200:])
    assert raw is None
    assert outcome.startswith("skipped: ") and len(outcome) > len("skipped: ") + 10


def test_what_skl2onnx_cannot_convert_or_check_is_skipped() -> None:
    raw, outcome = modelstore.to_onnx(object(), X[:5])
    assert raw is None and outcome.startswith("skipped: ")
    model = train.make_estimator("ridge").fit(X, Y)
    raw, outcome = modelstore.to_onnx(model, X[:0])
    assert raw is None and outcome.startswith("skipped: no rows")


def test_a_changed_onnx_file_is_refused_before_it_is_parsed() -> None:
    model = train.make_estimator("ridge").fit(X, Y)
    raw, _ = modelstore.to_onnx(model, X[:50])
    assert raw is not None
    with pytest.raises(modelstore.ModelLoadError, match="SHA-256"):
        modelstore.load_onnx(raw + b"\x00", expected_sha256=_sha(raw))
    # bytes no parser would accept: refused for their hash, not by onnxruntime
    with pytest.raises(modelstore.ModelLoadError, match=r"SHA-256.*refusing a changed artifact"):
        modelstore.load_onnx(b"not onnx", expected_sha256=_sha(raw))


def test_bytes_that_match_their_hash_but_are_not_onnx_are_refused() -> None:
    garbage = b"\x08\x07 not a graph"
    with pytest.raises(modelstore.ModelLoadError, match="could not be loaded by onnxruntime"):
        modelstore.load_onnx(garbage, expected_sha256=_sha(garbage))
