"""The trainer against a real MLflow tracking server: bootstrap, drift, rejection, refusal, rollback.

Readings come from a small simulated plant with two devices, ``temp`` and ``humidity``:
``temp[t+1] = 0.9 temp[t] + 2 + coef * humidity[t] + noise``. Regime A has ``coef = 0``,
the drifted regime B ``coef = 0.8``, and regime C ``coef = -0.8``, so a model trained on
one regime is measurably wrong on another.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.ensemble import HistGradientBoostingRegressor

from edgemodel import contracts, features, modelstore, registry
from edgemodel_dev.harness import mlflowserver
from edgemodel_operator import rollback
from edgemodel_trainer import main, pipeline, tracking

pytestmark = pytest.mark.mlflow

FEATURES = ["temp", "humidity"]
SPEC = features.FeatureSpec(features=("temp", "humidity"), target="temp", lags=3)
DEVICES = ("d1", "d2")


def regime(n: int, *, coef: float, seed: int, t0: float = 0.0, noise: float = 0.1) -> pd.DataFrame:
    """``n`` readings per device, one per second from ``t0``, in the column layout of a window."""
    rng = np.random.default_rng(seed)
    parts = []
    for device in DEVICES:
        humidity = rng.normal(0.0, 1.0, n)
        temp = np.empty(n)
        temp[0] = 20.0 + rng.normal()
        for t in range(n - 1):
            temp[t + 1] = 0.9 * temp[t] + 2.0 + coef * humidity[t] + rng.normal(0.0, noise)
        parts.append(
            pd.DataFrame({"device": device, "ts": t0 + np.arange(n), "temp": temp, "humidity": humidity})
        )
    return pd.concat(parts).sort_values(["ts", "device"], kind="stable").reset_index(drop=True)


def write(table: pd.DataFrame, path: pathlib.Path) -> str:
    table.to_csv(path, index=False)
    return str(path)


def config(uri: str, name: str, data: str | None, **overrides: object) -> contracts.TrainerConfig:
    values: dict[str, object] = {
        "model_name": name,
        "tracking_uri": uri,
        "features": FEATURES,
        "target": "temp",
        "lags": 3,
        "data": data,
    }
    values.update(overrides)
    return contracts.TrainerConfig.model_validate(values)


def bootstrap_and_drift(
    server: mlflowserver.MlflowServer, name: str, tmp: pathlib.Path
) -> tuple[contracts.TrainingResult, contracts.TrainingResult]:
    first = pipeline.run_training(
        config(server.uri, name, write(regime(600, coef=0.0, seed=1), tmp / "a.csv"))
    )
    drifted = regime(600, coef=0.8, seed=2, t0=600)
    second = pipeline.run_training(config(server.uri, name, write(drifted, tmp / "b.csv")))
    return first, second


def live_rmse(loaded: registry.LoadedModel, table: pd.DataFrame) -> tuple[float, int]:
    """The RMSE a runtime would see serving ``loaded`` on these readings, and the sample count."""
    readings = (
        (str(r.device), float(r.ts), {"temp": r.temp, "humidity": r.humidity}) for r in table.itertuples()
    )
    frame = features.build_training_frame(SPEC, readings)
    prediction = np.asarray(loaded.model.predict(frame.x))
    return float(np.sqrt(np.mean((prediction - frame.y) ** 2))), len(frame)


def artifact_file(server: mlflowserver.MlflowServer, run_id: str) -> pathlib.Path:
    (path,) = (server.workdir / "artifacts").glob(f"*/{run_id}/artifacts/model/{modelstore.MODEL_FILE}")
    return path


def test_bootstrap_from_csv_makes_version_1_champion_and_traces_its_data(
    mlflow_server: mlflowserver.MlflowServer, unique_name: str, tmp_path: pathlib.Path
) -> None:
    csv = write(regime(600, coef=0.0, seed=1), tmp_path / "bootstrap.csv")
    result = pipeline.run_training(config(mlflow_server.uri, unique_name, csv))

    assert (result.outcome, result.version, result.champion_version) == ("Promoted", "1", "1")
    assert result.reason.startswith("FirstVersion")
    assert result.champion_rmse is None
    assert result.samples == 2 * (600 - 3 - 1)
    client = registry.client(mlflow_server.uri)
    assert registry.resolve_alias(client, unique_name, "champion") == "1"

    run = client.get_run(result.run_id)
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == result.dataset_digest
    assert dataset_input.dataset.name == "bootstrap.csv"
    assert csv in dataset_input.dataset.source
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"
    assert json.loads(dataset_input.dataset.profile)["num_rows"] == 1200
    assert run.data.metrics["holdout_rmse"] == pytest.approx(result.holdout_rmse)
    assert run.data.metrics["rows_holdout"] > 0
    assert "champion_holdout_rmse" not in run.data.metrics
    assert run.data.params["algorithm"] == "ridge"
    assert run.data.params["dataset_digest"] == result.dataset_digest
    assert run.info.status == "FINISHED"
    assert run.data.tags[tracking.RUN_TAGS["outcome"]] == "Promoted"

    version = client.get_model_version(unique_name, "1")
    assert version.run_id == result.run_id  # version -> run -> dataset input with digest
    tags = version.tags
    assert tags[registry.TAGS["outcome"]] == "Promoted"
    assert tags[pipeline.DATASET_DIGEST_TAG] == result.dataset_digest
    assert len(tags[registry.TAGS["sha256"]]) == 64
    assert registry.load_version(client, unique_name, "1").meta.columns == SPEC.columns


def test_retraining_on_drifted_data_promotes_version_2(
    mlflow_server: mlflowserver.MlflowServer, unique_name: str, tmp_path: pathlib.Path
) -> None:
    first, second = bootstrap_and_drift(mlflow_server, unique_name, tmp_path)

    assert first.outcome == "Promoted"
    assert (second.outcome, second.version, second.champion_version) == ("Promoted", "2", "2")
    assert second.reason.startswith("BeatChampion")
    assert second.holdout_rmse is not None and second.champion_rmse is not None
    assert second.holdout_rmse < second.champion_rmse * (1 - 0.02)
    client = registry.client(mlflow_server.uri)
    assert registry.resolve_alias(client, unique_name, "champion") == "2"
    metrics = client.get_run(second.run_id).data.metrics
    assert metrics["holdout_rmse"] == pytest.approx(second.holdout_rmse)
    assert metrics["champion_holdout_rmse"] == pytest.approx(second.champion_rmse)
    assert first.dataset_digest != second.dataset_digest


def test_retraining_on_bad_data_registers_version_3_but_keeps_the_champion(
    mlflow_server: mlflowserver.MlflowServer, unique_name: str, tmp_path: pathlib.Path
) -> None:
    bootstrap_and_drift(mlflow_server, unique_name, tmp_path)
    # A window mostly filled by a faulty sensor (pure noise), then a clean recent stretch.
    rng = np.random.default_rng(3)
    noisy = regime(600, coef=0.8, seed=4, t0=1200)
    faulty = noisy["ts"] < 1200 + 480
    noisy.loc[faulty, "temp"] = rng.normal(20.0, 5.0, int(faulty.sum()))
    log = tmp_path / "termination-log"
    argv = config(mlflow_server.uri, unique_name, write(noisy, tmp_path / "noisy.csv")).to_argv()

    code = main.main([*argv, "--termination-log", str(log)])

    assert code == contracts.ExitCode.REJECTED == 3
    result = contracts.TrainingResult.from_termination_message(log.read_text())
    assert (result.outcome, result.version, result.champion_version) == ("Rejected", "3", "2")
    assert result.reason.startswith("BelowPromotionMargin")
    client = registry.client(mlflow_server.uri)
    assert registry.resolve_alias(client, unique_name, "champion") == "2"
    tags = registry.version_tags(client, unique_name, "3")
    assert tags[registry.TAGS["outcome"]] == "Rejected"
    assert tags[registry.TAGS["reason"]] == result.reason


def test_a_corrupted_or_untrusted_artifact_is_refused_and_the_alias_keeps_serving(
    mlflow_server: mlflowserver.MlflowServer, unique_name: str, tmp_path: pathlib.Path
) -> None:
    bootstrap_and_drift(mlflow_server, unique_name, tmp_path)
    client = registry.client(mlflow_server.uri)
    good = registry.load_version(client, unique_name, "2")

    def register(model: object) -> str:
        run_id = tracking.start_run(
            client, tracking.ensure_experiment(client, "tampering"), run_name="x", tags={}
        )
        return registry.publish(client, name=unique_name, run_id=run_id, model=model, meta=good.meta)

    # 1. The stored file is overwritten after registration: its SHA-256 no longer matches.
    tampered = register(good.model)
    run_id = client.get_model_version(unique_name, tampered).run_id
    artifact_file(mlflow_server, run_id).write_bytes(b"PK\x03\x04 not a model any more")
    with pytest.raises(modelstore.ModelLoadError, match="SHA-256"):
        registry.load_version(client, unique_name, tampered)

    # 2. The recorded hash was changed instead.
    relabelled = register(good.model)
    client.set_model_version_tag(unique_name, relabelled, registry.TAGS["sha256"], "0" * 64)
    with pytest.raises(modelstore.ModelLoadError, match="SHA-256"):
        registry.load_version(client, unique_name, relabelled)

    # 3. An intact file whose types are outside the allow-list in our code.
    foreign = HistGradientBoostingRegressor(max_iter=3).fit(np.zeros((20, 5)), np.arange(20.0))
    untrusted = register(foreign)
    with pytest.raises(modelstore.ModelLoadError, match="allow-list"):
        registry.load_version(client, unique_name, untrusted)

    # A rollback onto a refused version fails, and the alias stays where it was.
    for version in (tampered, relabelled, untrusted):
        result = pipeline.rollback(
            model_name=unique_name, tracking_uri=mlflow_server.uri, alias="champion", to_version=version
        )
        assert result.outcome == "Failed"
        assert "ModelLoadError" in result.reason
    version = registry.resolve_alias(client, unique_name, "champion")
    assert version == "2"
    served = registry.load_version(client, unique_name, version)
    assert served.version == "2"
    probe = np.ones((3, len(SPEC.columns)))
    np.testing.assert_allclose(served.model.predict(probe), good.model.predict(probe))


def test_a_refused_champion_is_replaced_by_a_sound_challenger(
    mlflow_server: mlflowserver.MlflowServer, unique_name: str, tmp_path: pathlib.Path
) -> None:
    _, second = bootstrap_and_drift(mlflow_server, unique_name, tmp_path)
    artifact_file(mlflow_server, second.run_id).write_bytes(b"garbage")

    result = pipeline.run_training(
        config(
            mlflow_server.uri, unique_name, write(regime(600, coef=0.8, seed=5, t0=1200), tmp_path / "c.csv")
        )
    )

    assert (result.outcome, result.version) == ("Promoted", "3")
    assert result.reason.startswith("ChampionUnusable")
    client = registry.client(mlflow_server.uri)
    assert registry.load_version(
        client, unique_name, registry.resolve_alias(client, unique_name, "champion") or ""
    )


def test_a_failed_training_run_never_replaces_the_champion(
    mlflow_server: mlflowserver.MlflowServer, unique_name: str, tmp_path: pathlib.Path
) -> None:
    pipeline.run_training(
        config(mlflow_server.uri, unique_name, write(regime(300, coef=0.0, seed=1), tmp_path / "a.csv"))
    )
    client = registry.client(mlflow_server.uri)
    broken = regime(300, coef=0.8, seed=2).drop(columns=["humidity"])
    cases = {
        "InvalidData": write(broken, tmp_path / "broken.csv"),
        "NotEnoughData": write(regime(10, coef=0.8, seed=2), tmp_path / "tiny.csv"),
    }
    for reason, path in cases.items():
        log = tmp_path / f"{reason}.log"
        code = main.main(
            [*config(mlflow_server.uri, unique_name, path).to_argv(), "--termination-log", str(log)]
        )
        assert code == contracts.ExitCode.FAILED
        result = contracts.TrainingResult.from_termination_message(log.read_text())
        assert result.outcome == "Failed"
        assert result.reason.startswith(reason)
        assert result.version is None
        assert client.get_run(result.run_id).info.status == "FAILED"
    assert registry.resolve_alias(client, unique_name, "champion") == "1"
    assert len(client.search_model_versions(f"name = '{unique_name}'")) == 1


def test_a_live_regression_is_rolled_back_to_the_previous_champion(
    mlflow_server: mlflowserver.MlflowServer, unique_name: str, tmp_path: pathlib.Path
) -> None:
    bootstrap_and_drift(mlflow_server, unique_name, tmp_path)
    # Version 3 wins on its own (regime C) holdout, so it is promoted ...
    third = pipeline.run_training(
        config(
            mlflow_server.uri, unique_name, write(regime(600, coef=-0.8, seed=6, t0=1200), tmp_path / "c.csv")
        )
    )
    assert (third.outcome, third.version) == ("Promoted", "3")
    # ... but the plant is still in regime B, so it serves badly.
    client = registry.client(mlflow_server.uri)
    live = regime(200, coef=0.8, seed=7, t0=1800)
    new_rmse, samples = live_rmse(registry.load_version(client, unique_name, "3"), live)
    previous_rmse, _ = live_rmse(registry.load_version(client, unique_name, "2"), live)

    decision = rollback.decide(new_live_rmse=new_rmse, previous_rmse=previous_rmse, samples=samples)

    assert decision.roll_back, decision
    assert decision.reason == "LiveRmseWorse"
    log = tmp_path / "rollback.log"
    argv = ["rollback", "--model-name", unique_name, "--tracking-uri", mlflow_server.uri,
            "--alias", "champion", "--to-version", "2", "--termination-log", str(log)]  # fmt: skip
    assert main.main(argv) == contracts.ExitCode.PROMOTED == 0
    result = contracts.TrainingResult.from_termination_message(log.read_text())
    assert (result.outcome, result.reason, result.version, result.champion_version) == (
        "RolledBack", "RolledBack", "3", "2",
    )  # fmt: skip
    assert registry.resolve_alias(client, unique_name, "champion") == "2"
    tags = registry.version_tags(client, unique_name, "3")
    assert (tags[registry.TAGS["outcome"]], tags[registry.TAGS["reason"]]) == ("RolledBack", "RolledBack")

    # A retried rollback Job changes nothing and still succeeds.
    assert main.main(argv) == 0
    assert registry.resolve_alias(client, unique_name, "champion") == "2"


def test_trains_from_the_newest_training_windows_in_mlflow(
    mlflow_server: mlflowserver.MlflowServer, unique_name: str, tmp_path: pathlib.Path
) -> None:
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    experiment = tracking.ensure_experiment(client, contracts.window_experiment(unique_name))

    def log_window(table: pd.DataFrame, edgemodel: str) -> str:
        tags = {
            contracts.WINDOW_TAGS["kind"]: contracts.WINDOW_KIND,
            contracts.WINDOW_TAGS["edgemodel"]: edgemodel,
            contracts.WINDOW_TAGS["pod"]: "runtime-0",
            contracts.WINDOW_TAGS["reason"]: "drift",
        }
        run_id = tracking.start_run(client, experiment, run_name="window", tags=tags)
        folder = tmp_path / run_id / pathlib.Path(contracts.WINDOW_ARTIFACT).parent
        folder.mkdir(parents=True)
        table.to_csv(folder / pathlib.Path(contracts.WINDOW_ARTIFACT).name, index=False)
        client.log_artifacts(run_id, str(folder), str(pathlib.Path(contracts.WINDOW_ARTIFACT).parent))
        tracking.finish_run(client, run_id, failed=False)
        return run_id

    old = log_window(regime(300, coef=0.8, seed=8, t0=0), "ns/plant")
    other = log_window(regime(300, coef=-0.8, seed=9, t0=600), "ns/another")
    new = log_window(regime(300, coef=0.8, seed=10, t0=300), "ns/plant")

    result = pipeline.run_training(
        config(mlflow_server.uri, unique_name, None, edgemodel="ns/plant", training_window=1000)
    )

    assert result.outcome == "Promoted", result.reason
    run = client.get_run(result.run_id)
    assert run.data.tags[tracking.RUN_TAGS["window_runs"]].split(",") == [new, old]
    assert other not in run.data.tags[tracking.RUN_TAGS["window_runs"]]
    assert run.data.metrics["readings"] == 1000  # the most recent 1000 of 1200 readings
    (dataset_input,) = run.inputs.dataset_inputs
    assert new in dataset_input.dataset.source
    assert dataset_input.dataset.digest == result.dataset_digest


def test_without_data_or_windows_the_run_fails_cleanly(
    mlflow_server: mlflowserver.MlflowServer, unique_name: str
) -> None:
    result = pipeline.run_training(config(mlflow_server.uri, unique_name, None))
    assert result.outcome == "Failed"
    assert result.reason.startswith("NoTrainingData")


def test_a_changed_feature_spec_replaces_an_incomparable_champion(
    mlflow_server: mlflowserver.MlflowServer, unique_name: str, tmp_path: pathlib.Path
) -> None:
    csv = write(regime(300, coef=0.0, seed=1), tmp_path / "a.csv")
    assert pipeline.run_training(config(mlflow_server.uri, unique_name, csv)).outcome == "Promoted"

    result = pipeline.run_training(config(mlflow_server.uri, unique_name, csv, lags=1))

    assert (result.outcome, result.version, result.champion_version) == ("Promoted", "2", "2")
    assert result.reason.startswith("ChampionIncompatible")
    client = registry.client(mlflow_server.uri)
    assert registry.load_version(client, unique_name, "2").meta.lags == 1
