"""``edgemodel-trainer`` as the operator's Job runs it: a real process, a real MLflow server.

Checks the exit codes and what lands in the termination log and on stdout.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from edgemodel import contracts, registry
from edgemodel_dev.harness import mlflowserver

pytestmark = pytest.mark.mlflow


def trainer_command() -> list[str]:
    script = pathlib.Path(sys.executable).with_name("edgemodel-trainer")
    if script.exists():
        return [str(script)]
    found = shutil.which("edgemodel-trainer")
    return [found] if found else [sys.executable, "-m", "edgemodel_trainer.main"]


def run(argv: list[str], log: pathlib.Path) -> tuple[int, contracts.TrainingResult, str]:
    env = {**os.environ, "EDGEMODEL_TERMINATION_LOG": str(log)}
    proc = subprocess.run(
        [*trainer_command(), *argv], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    result = contracts.TrainingResult.from_termination_message(log.read_text())
    assert contracts.TrainingResult.model_validate_json(proc.stdout.strip()) == result, proc.stdout
    return proc.returncode, result, proc.stderr


def sensor_csv(path: pathlib.Path) -> str:
    rng = np.random.default_rng(11)
    ts = np.arange(800, dtype=float)
    level = 50 + np.cumsum(rng.normal(0, 0.3, ts.size))
    pd.DataFrame(
        {"device": "pump-1", "ts": ts, "pressure": level, "rpm": rng.normal(1500, 10, ts.size)}
    ).to_csv(path, index=False)
    return str(path)


def test_the_console_script_reports_through_exit_code_and_termination_log(
    mlflow_server: mlflowserver.MlflowServer, unique_name: str, tmp_path: pathlib.Path
) -> None:
    config = contracts.TrainerConfig(
        model_name=unique_name,
        tracking_uri=mlflow_server.uri,
        algorithm="random_forest",
        features=["pressure", "rpm"],
        target="pressure",
        lags=2,
        data=sensor_csv(tmp_path / "pump.csv"),
        edgemodel="plant/pump",
    )
    log = tmp_path / "termination-log"

    code, first, stderr = run(config.to_argv(), log)
    assert code == contracts.ExitCode.PROMOTED, stderr
    assert (first.outcome, first.version, first.algorithm) == ("Promoted", "1", "random_forest")
    for stage in ("Loaded 800 readings", "Built 797 rows of 4 features", "Trained random_forest on",
                  "Registered version 1", "Promoted version 1"):  # fmt: skip
        assert stage in stderr

    # The same data again: an identical challenger cannot beat the champion by the margin.
    code, second, stderr = run(config.to_argv(), log)
    assert code == contracts.ExitCode.REJECTED, stderr
    assert (second.outcome, second.version, second.champion_version) == ("Rejected", "2", "1")
    assert second.holdout_rmse == pytest.approx(second.champion_rmse)

    code, failed, stderr = run(
        config.model_copy(update={"data": str(tmp_path / "missing.csv")}).to_argv(), log
    )
    assert code == contracts.ExitCode.FAILED
    assert failed.outcome == "Failed"
    assert "does not exist" in failed.reason

    code, back, stderr = run(
        ["rollback", "--model-name", unique_name, "--tracking-uri", mlflow_server.uri,
         "--to-version", "1", "--reason", "ManualRollback"],
        log,
    )  # fmt: skip
    assert code == contracts.ExitCode.PROMOTED, stderr
    assert (back.outcome, back.reason, back.champion_version) == ("RolledBack", "ManualRollback", "1")

    code, usage, _ = run(["train", "--model-name", unique_name], log)
    assert code == contracts.ExitCode.USAGE
    assert usage.reason.startswith("InvalidArguments")
    assert registry.resolve_alias(registry.client(mlflow_server.uri), unique_name, "champion") == "1"
