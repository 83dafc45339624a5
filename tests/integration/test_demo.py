"""The main job: ``edgemodel demo`` runs the whole loop for real and heals.

The control plane, Mosquitto, MLflow, the operator, the runtime and the trainer all run as
real processes; the simulator injects an abrupt drift. The demo must detect it, retrain,
promote a better version, hot-reload it and get the RMSE back under the threshold, then
stop every process it started.
"""

from __future__ import annotations

import pathlib

import psutil
import pytest

from edgemodel import demo

pytestmark = [pytest.mark.cluster, pytest.mark.mqtt, pytest.mark.mlflow]


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_demo_heals_and_stops_everything(tmp_path: pathlib.Path) -> None:
    before = _children()
    lines: list[str] = []
    timeline = demo.run(tmp_path / "demo", say=lines.append)

    assert timeline.healed is not None and timeline.drift_started is not None
    assert timeline.drift_started < timeline.drift_detected <= timeline.job_started  # type: ignore[operator]
    assert timeline.job_started < timeline.training_done <= timeline.reloaded <= timeline.healed  # type: ignore[operator]
    assert timeline.version_before == "1"
    assert timeline.version_after is not None and int(timeline.version_after) > 1
    assert timeline.trainer["outcome"] == "Promoted"
    # Drifted=True may come from the change detector before the rolling RMSE crosses the
    # threshold; either way the error has grown.
    assert timeline.rmse_before is not None and timeline.rmse_before < demo.THRESHOLD
    assert timeline.rmse_drifted is not None and timeline.rmse_drifted > timeline.rmse_before
    assert timeline.rmse_after is not None and timeline.rmse_after < demo.THRESHOLD
    assert timeline.trainer["holdout_rmse"] < timeline.trainer["champion_rmse"]

    text = demo.summary(timeline)
    assert "EdgeModel healed itself" in text
    assert f"1 -> {timeline.version_after}" in text
    assert any("Injected abrupt drift" in line for line in lines)
    # Every process the demo started is gone.
    assert _children() - before == set()
