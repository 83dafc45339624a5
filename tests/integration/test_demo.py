"""The main job: ``edgemodel demo`` runs the whole loop for real and heals.

It runs exactly as the README says: the ``edgemodel`` console script with no ``--workdir``,
so the demo writes into ``.demo/`` under the current folder (here a fresh temporary folder,
standing in for the repository root). That proves the harness resolves its relative folder:
a kubeconfig with relative certificate paths fails in the demo's first second.

The control plane, Mosquitto, MLflow, the operator, the runtime and the trainer all run as
real processes; the simulator injects an abrupt drift. The demo must detect it, retrain,
promote a better version, hot-reload it and get the RMSE back under the threshold, then
stop every process it started.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

import psutil
import pytest
import yaml

from edgemodel_dev import demo
from tests import browser

pytestmark = [pytest.mark.cluster, pytest.mark.mqtt, pytest.mark.mlflow, pytest.mark.browser]

EDGEMODEL = pathlib.Path(sys.executable).parent / "edgemodel"


def _mentioning(folder: pathlib.Path) -> list[str]:
    """Processes whose command line names ``folder``: what the demo started and left behind."""
    left = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(folder) in cmdline:
            left.append(f"{proc.info['pid']}: {cmdline[:200]}")
    return left


def test_make_demo_heals_and_stops_everything(tmp_path: pathlib.Path) -> None:
    proc = subprocess.run(
        [str(EDGEMODEL), "demo", "--json", "timeline.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=540,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # The default workdir is .demo under the current folder, and the kubeconfig points at
    # absolute certificate paths that exist.
    workdir = tmp_path / ".demo"
    kubeconfig = yaml.safe_load((workdir / "cluster" / "admin.kubeconfig").read_text())
    user = kubeconfig["users"][0]["user"]
    for key in ("client-certificate", "client-key"):
        path = pathlib.Path(user[key])
        assert path.is_absolute() and path.is_file(), path

    timeline = json.loads((tmp_path / "timeline.json").read_text())
    assert timeline["healed"] is not None and timeline["drift_started"] is not None
    assert timeline["drift_started"] < timeline["drift_detected"] <= timeline["job_started"]
    assert timeline["job_started"] < timeline["training_done"] <= timeline["reloaded"] <= timeline["healed"]
    assert timeline["version_before"] == "1"
    assert timeline["version_after"] is not None and int(timeline["version_after"]) > 1
    assert timeline["trainer"]["outcome"] == "Promoted"
    # Drifted=True may come from the change detector before the rolling RMSE crosses the
    # threshold; either way the error has grown.
    assert timeline["rmse_before"] is not None and timeline["rmse_before"] < demo.THRESHOLD
    assert timeline["rmse_drifted"] is not None and timeline["rmse_drifted"] > timeline["rmse_before"]
    assert timeline["rmse_after"] is not None and timeline["rmse_after"] < demo.THRESHOLD
    assert timeline["trainer"]["holdout_rmse"] < timeline["trainer"]["champion_rmse"]

    assert "Injected abrupt drift" in proc.stdout
    assert "EdgeModel healed itself" in proc.stdout
    assert f"1 -> {timeline['version_after']}" in proc.stdout
    # Every process the demo started is gone.
    assert _mentioning(tmp_path) == []

    # The run's report page: written, with the live RMSE, and it loads in Chromium with no script error.
    page = workdir / "report.html"
    assert f"Report: {page}" in proc.stdout
    rendered = browser.render(page, tmp_path)
    assert rendered.script_errors == [], rendered.console
    body = re.search(r"<body[^>]*>", rendered.dom)
    assert body is not None and 'data-rendered="1"' in body[0] and "data-errors" not in body[0], body
    assert len(timeline["rmse_samples"]) >= 2
    png = rendered.screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
