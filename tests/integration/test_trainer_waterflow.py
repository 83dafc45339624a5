"""Real sensor data: river's ``WaterFlow`` (hourly flow through a pipeline branch, 1268 readings).

The trainer learns from the first part of the series only; the registered champion is
then scored on the later parts it never saw, next to the naive "flow stays where it
is" forecast. The later parts hold the dataset's anomalous low-flow segments, which is
where a forecaster earns its keep. Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
import pytest
from river import datasets

from edgemodel import contracts, features, registry
from edgemodel_dev.harness import mlflowserver
from edgemodel_trainer import data, pipeline, train

pytestmark = pytest.mark.mlflow

FIRST_PART = 760  # readings, about 60 % of the series: 20 March to 21 April 2022
SPEC = features.FeatureSpec(features=("flow", "hour"), target="flow", horizon=1, lags=24)


def waterflow() -> pd.DataFrame:
    rows = [(x["Time"], float(y)) for x, y in datasets.WaterFlow()]
    return pd.DataFrame(
        {
            "device": "branch",
            "ts": [t.timestamp() for t, _ in rows],
            "flow": [y for _, y in rows],
            "hour": [float(t.hour) for t, _ in rows],
        }
    )


def score(model: registry.LoadedModel, table: pd.DataFrame) -> tuple[float, float, int]:
    """(model RMSE, last-value RMSE, rows) on ``table`` (whose first ``lags`` rows are history)."""
    frame = features.build_training_frame(SPEC, data.readings(data.normalise(table, SPEC), SPEC))
    naive = train.last_value_predictions(frame, SPEC)
    assert naive is not None
    return train.evaluate(model.model, frame), train.rmse(frame.y, naive), len(frame)


@pytest.mark.parametrize("algorithm", ["ridge", "gradient_boosting"])
def test_waterflow_forecast_beats_the_last_value_on_unseen_later_parts(
    mlflow_server: mlflowserver.MlflowServer,
    unique_name: str,
    tmp_path: pathlib.Path,
    algorithm: contracts.api.Algorithm,
) -> None:
    series = waterflow()
    assert len(series) == 1268
    csv = tmp_path / "waterflow-first-part.csv"
    series.iloc[:FIRST_PART].to_csv(csv, index=False)
    config = contracts.TrainerConfig(
        model_name=unique_name,
        tracking_uri=mlflow_server.uri,
        algorithm=algorithm,
        features=list(SPEC.features),
        target=SPEC.target,
        horizon=SPEC.horizon,
        lags=SPEC.lags,
        data=str(csv),
    )

    result = pipeline.run_training(config)

    assert result.outcome == "Promoted", result.reason
    client = registry.client(mlflow_server.uri)
    champion = registry.load_version(
        client, unique_name, registry.resolve_alias(client, unique_name, "champion") or ""
    )
    history = SPEC.lags
    later = series.iloc[FIRST_PART - history :]
    half = (len(series) - FIRST_PART) // 2
    parts = {
        "later (all)": later,
        "later, part 1": series.iloc[FIRST_PART - history : FIRST_PART + half],
        "later, part 2": series.iloc[FIRST_PART + half - history :],
    }
    baseline = client.get_run(result.run_id).data.metrics["baseline_holdout_rmse"]
    lines = [
        f"WaterFlow, {algorithm}: holdout (last 20 % of the first part) model RMSE "
        f"{result.holdout_rmse:.3f}, last-value RMSE {baseline:.3f}"
    ]
    figures = {}
    for label, table in parts.items():
        model_rmse, naive_rmse, rows = score(champion, table)
        figures[label] = (model_rmse, naive_rmse)
        lines.append(
            f"  {label:14s} rows {rows:4d}: model RMSE {model_rmse:.3f}, last-value RMSE {naive_rmse:.3f}"
        )
    print("\n" + "\n".join(lines))

    assert all(np.isfinite(v) for pair in figures.values() for v in pair)
    model_rmse, naive_rmse = figures["later (all)"]
    assert model_rmse < naive_rmse
