"""Issue 13: the runtime serves a version's ONNX file with onnxruntime, and its skops file otherwise.

The trainer converts each version with skl2onnx at registration and stores ``model.onnx``
with its own SHA-256 tag when the conversion predicts the holdout as the model does (the
ridge); the tree ensembles have no float64 form onnxruntime runs, so their versions carry
only the skops file and say why in ``edgemodel.onnx``. Real MLflow and Mosquitto; the
runtime in this process (the footprint test checks a fresh interpreter's imports).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from edgemodel import features, modelstore, registry
from edgemodel_dev import testing
from edgemodel_dev.harness import mlflowserver
from edgemodel_runtime import app, mlflowapi
from edgemodel_trainer import pipeline, train
from tests.integration.test_trainer_lifecycle import config, regime, write

pytestmark = [pytest.mark.mqtt, pytest.mark.mlflow]


def publish_onnx_model(
    tracking_uri: str, name: str, *, alias: str | None = "champion", bias: float = 0.0
) -> str:
    """The trainer's ridge (scaler + ridge) on a clean stream, registered with its ONNX file."""
    data = testing.readings(3, 400, seed=1)
    frame = features.build_training_frame(
        testing.SPEC, [(p["device"], p["ts"], {f: p[f] for f in testing.SPEC.fields}) for p in data]
    )
    model = train.make_estimator("ridge").fit(frame.x, frame.y + bias)
    client = registry.client(tracking_uri)
    experiment = client.get_experiment_by_name("onnx-tests")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("onnx-tests")
    run_id = client.create_run(experiment_id).info.run_id
    meta = registry.ModelMeta(
        columns=testing.SPEC.columns,
        algorithm="ridge",
        features=testing.SPEC.features,
        target=testing.SPEC.target,
        horizon=testing.SPEC.horizon,
        lags=testing.SPEC.lags,
    )
    version = registry.publish(
        client, name=name, run_id=run_id, model=model, meta=meta, onnx_rows=frame.x[-200:]
    )
    client.set_terminated(run_id)
    if alias is not None:
        client.set_registered_model_alias(name, alias, version)
    return version


def _onnx_file(server: mlflowserver.MlflowServer, run_id: str) -> pathlib.Path:
    (path,) = (server.workdir / "artifacts").glob(f"*/{run_id}/artifacts/model/{modelstore.ONNX_FILE}")
    return path


def _stream(runtime: app.App, broker: object, name: str, *, seed: int, start_ts: float) -> dict[float, float]:
    """Publish one device's readings; the predictions the runtime published for them, by timestamp."""
    publisher = testing.publisher_for(broker, name)
    collector = testing.collector_for(broker, name)
    data = testing.readings(1, 40, seed=seed, start_ts=start_ts)
    try:
        for p in data:
            publisher.publish(f"{name}/sensors/{p['device']}", json.dumps(p), wait=True)
        last = data[-1]["ts"]
        testing.wait_for(
            lambda: any(p["ts"] == last for p in collector.snapshot()), timeout=60, what="the last prediction"
        )
        return {p["ts"]: p["prediction"] for p in collector.snapshot() if p["modelVersion"] is not None}
    finally:
        publisher.close()
        collector.close()


def _expected(model: modelstore.Predictor, *, seed: int, start_ts: float) -> dict[float, float]:
    """The skops model's predictions for the same readings' rows, by timestamp."""
    data = testing.readings(1, 40, seed=seed, start_ts=start_ts)
    frame = features.build_training_frame(
        testing.SPEC, [(p["device"], p["ts"], {f: p[f] for f in testing.SPEC.fields}) for p in data]
    )
    predicted = np.asarray(model.predict(frame.x), dtype=np.float64)
    return dict(zip(frame.timestamps.tolist(), predicted.tolist(), strict=True))


def test_a_trained_version_serves_through_onnx_and_a_forest_through_skops(
    mosquitto_broker, mlflow_server, unique_name, tmp_path
):
    name = unique_name
    ridge = pipeline.run_training(
        config(mlflow_server.uri, name, write(regime(600, coef=0.0, seed=1), tmp_path / "a.csv"))
    )
    assert (ridge.outcome, ridge.version) == ("Promoted", "1")
    client = registry.client(mlflow_server.uri)
    tags = registry.version_tags(client, name, "1")
    assert tags[registry.TAGS["onnx"]].startswith("converted: float64"), tags
    assert len(tags[registry.TAGS["onnx_sha256"]]) == 64
    skops_model = registry.load_version(client, name, "1").model  # the trainer's own loader: skops

    runtime = app.App(testing.for_broker(mosquitto_broker, mlflow_server.uri, name)).start()
    try:
        assert runtime.wait_connected(30)
        testing.wait_for(lambda: runtime.holder.state.version == "1", timeout=60, what="version 1")
        served = runtime.holder.state.model
        assert served is not None and served.format == "onnx"
        assert isinstance(served.model, modelstore.OnnxModel)
        start = 1_700_000_000.0
        got = _stream(runtime, mosquitto_broker, name, seed=5, start_ts=start)
        want = _expected(skops_model, seed=5, start_ts=start)
        assert len(want) >= 30 and set(want) <= set(got)
        for ts, value in want.items():
            assert got[ts] == pytest.approx(value, rel=1e-9, abs=1e-9), ts

        # A random forest has no float64 ONNX form onnxruntime runs: skops only, and the tag says why.
        forest = pipeline.run_training(
            config(
                mlflow_server.uri,
                name,
                write(regime(600, coef=0.0, seed=3, t0=600), tmp_path / "b.csv"),
                algorithm="random_forest",
            )
        )
        assert forest.version == "2"
        tags = registry.version_tags(client, name, "2")
        assert tags[registry.TAGS["onnx"]].startswith("skipped: "), tags
        assert registry.TAGS["onnx_sha256"] not in tags
        client.set_registered_model_alias(name, "champion", "2")
        testing.wait_for(lambda: runtime.holder.state.version == "2", timeout=60, what="version 2")
        served = runtime.holder.state.model
        assert served is not None and served.format == "skops"
        got = _stream(runtime, mosquitto_broker, name, seed=6, start_ts=start + 1000)
        want = _expected(registry.load_version(client, name, "2").model, seed=6, start_ts=start + 1000)
        assert set(want) <= set(got)
        assert all(got[ts] == value for ts, value in want.items())
    finally:
        runtime.stop()


def test_a_tampered_onnx_file_is_refused_and_the_previous_version_keeps_serving(
    mosquitto_broker, mlflow_server, unique_name
):
    name = unique_name
    v1 = publish_onnx_model(mlflow_server.uri, name)
    v2 = publish_onnx_model(mlflow_server.uri, name, alias=None, bias=0.5)
    v3 = testing.publish_model(mlflow_server.uri, name, alias=None, bias=0.25)  # skops only
    client = registry.client(mlflow_server.uri)
    # Tampered after registration: v2's model.onnx replaced by another valid ONNX model (v1's).
    stored = _onnx_file(mlflow_server, client.get_model_version(name, v2).run_id)
    stored.write_bytes(_onnx_file(mlflow_server, client.get_model_version(name, v1).run_id).read_bytes())
    with pytest.raises(modelstore.ModelLoadError, match=r"SHA-256"):
        mlflowapi.Client(mlflow_server.uri).load_version(name, v2)

    runtime = app.App(testing.for_broker(mosquitto_broker, mlflow_server.uri, name)).start()
    try:
        reg = runtime.metrics.registry
        assert runtime.wait_connected(30)
        testing.wait_for(lambda: runtime.holder.state.version == v1, timeout=60, what="v1")
        assert runtime.holder.state.model is not None and runtime.holder.state.model.format == "onnx"

        client.set_registered_model_alias(name, "champion", v2)
        testing.wait_for(
            lambda: testing.sample(reg, "edgemodel_model_error") == 1, timeout=60, what="model error metric"
        )
        assert runtime.holder.state.version == v1
        assert runtime.holder.state.failed_version == v2
        assert testing.sample(reg, "edgemodel_model_loads_total", {"result": "refused"}) == 1
        ready, detail = runtime.readiness()
        assert ready and "SHA-256" in detail["modelError"] and modelstore.ONNX_FILE in detail["modelError"]
        got = _stream(runtime, mosquitto_broker, name, seed=7, start_ts=1_700_000_000.0)
        assert got  # v1 keeps predicting

        # A version registered without ONNX is served from its skops file.
        client.set_registered_model_alias(name, "champion", v3)
        testing.wait_for(lambda: runtime.holder.state.version == v3, timeout=60, what="v3")
        served = runtime.holder.state.model
        assert served is not None and served.format == "skops"
        testing.wait_for(
            lambda: testing.sample(reg, "edgemodel_model_error") == 0, timeout=30, what="model error cleared"
        )
    finally:
        runtime.stop()
