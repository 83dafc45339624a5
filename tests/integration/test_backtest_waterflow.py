"""``edgemodel backtest`` end to end on real data: WaterFlow from river's wheel, through the CLI.

The history is written the way a user's export may look: rows shuffled, a few bad rows
in it. The command must skip and count those, replay the rest in time order, print the
table, write the JSON and a self-contained report, and the report must load in real
headless Chromium with no script error. The figures are checked against each other and
against an independent computation, never against numbers written here:

- the static baseline's overall RMSE is version 1 (the trainer's gate, fitted on the
  first fifth) scored on the replayed rows by the shared feature builder;
- every system sees the same outcomes; counts match the listed events; the printed table
  matches the JSON;
- every system's change detector serves version 1 tuned as the runtime tunes it: from the
  calibration the trainer measures on version 1's holdout
  (``edgemodel_trainer.calibration.on_holdout``, then ``edgemodel_runtime.drift.calibrated_tuning``).
"""

from __future__ import annotations

import csv
import json
import math
import pathlib
import random
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from river import datasets

from edgemodel import api, features
from edgemodel_runtime import drift
from edgemodel_trainer import calibration, gate
from tests import browser

pytestmark = pytest.mark.browser

REPO = pathlib.Path(__file__).resolve().parents[2]
MANIFEST = REPO / "examples" / "waterflow.yaml"
EDGEMODEL = pathlib.Path(sys.executable).parent / "edgemodel"
BAD_ROWS = [
    {"device": "branch", "ts": "2022-04-01T00:30:00", "flow": "n/a", "hour": "0"},
    {"device": "branch", "ts": "not a time", "flow": "1.0", "hour": "0"},
    {"device": "branch", "ts": "2022-04-02T00:30:00", "flow": "", "hour": "0"},
]


def waterflow_rows() -> list[dict[str, str]]:
    return [
        {"device": "branch", "ts": x["Time"].isoformat(), "flow": repr(float(y)), "hour": str(x["Time"].hour)}
        for x, y in datasets.WaterFlow()
    ]


def write_history(path: pathlib.Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["device", "ts", "flow", "hour"])
        writer.writeheader()
        writer.writerows(rows)


def static_rmse_by_hand(
    rows: list[dict[str, str]], spec: api.EdgeModelSpec
) -> tuple[float, int, drift.Tuning]:
    """Version 1 from the first fifth (the trainer's gate), scored on the rest with the shared features;
    and its change detector's tuning from the calibration on its holdout."""
    from datetime import datetime  # noqa: PLC0415

    fspec = features.FeatureSpec(features=("flow", "hour"), target="flow", horizon=1, lags=24)
    readings = sorted(
        (datetime.fromisoformat(r["ts"]).timestamp(), {"flow": float(r["flow"]), "hour": float(r["hour"])})
        for r in rows
    )
    cut = int(len(readings) * 0.2)
    warm = features.build_training_frame(fspec, [("branch", ts, v) for ts, v in readings[:cut]])
    v1 = gate.challenge(
        warm, spec=fspec, algorithm="ridge", margin=spec.retraining.promotion_margin, gap=1,
        champion=lambda _: gate.NO_CHAMPION,
    )  # fmt: skip
    # Rows built from replayed readings: the runtime predicts from the first replayed reading on.
    whole = features.build_training_frame(fspec, [("branch", ts, v) for ts, v in readings])
    later = whole.timestamps >= readings[cut][0]
    errors = v1.model.predict(whole.x[later]) - whole.y[later]
    measured = calibration.on_holdout(v1.model, v1.holdout)
    assert measured is not None
    tuning = drift.calibrated_tuning(measured, spec.drift.threshold)
    return float(np.sqrt(np.mean(errors**2))), int(later.sum()), tuning


def test_backtest_on_waterflow_prints_writes_and_renders_consistent_figures(tmp_path: pathlib.Path):
    rows = waterflow_rows()
    assert len(rows) == 1268
    shuffled = rows + BAD_ROWS
    random.Random(7).shuffle(shuffled)
    history = tmp_path / "waterflow.csv"
    write_history(history, shuffled)
    manifest = tmp_path / "waterflow.yaml"
    shutil.copy(MANIFEST, manifest)
    out_json, out_html = tmp_path / "out.json", tmp_path / "report.html"

    proc = subprocess.run(
        [str(EDGEMODEL), "backtest", "-f", str(manifest), "--data", str(history),
         "--json", str(out_json), "--report", str(out_html)],
        capture_output=True, text=True, check=False, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(proc.stdout)

    # Bad rows: counted, named, skipped; the shuffle was noticed and undone.
    skipped = "read 1271 rows: skipped 3 bad rows (1 bad_timestamp, 1 missing_field, 1 wrong_type)"
    assert skipped in proc.stderr
    assert "rows were out of time order; replayed in order" in proc.stderr
    result = json.loads(out_json.read_text())
    assert result["history"]["readings"] == 1268 and sum(result["history"]["skipped"].values()) == 3
    assert result["bootstrap"]["readings"] + result["replayed"]["readings"] == 1268

    systems = {s["name"]: s for s in result["systems"]}
    assert list(systems) == ["loop", "static", "naive", "periodic"]
    outcomes = {s["outcomes"] for s in systems.values()}
    assert len(outcomes) == 1, outcomes
    spec = api.EdgeModelSpec.model_validate(yaml.safe_load(MANIFEST.read_text())["spec"])
    expected, rows_scored, tuning = static_rmse_by_hand(rows, spec)
    assert outcomes == {rows_scored}
    static = systems["static"]
    assert math.isclose(static["overallRmse"], expected, rel_tol=1e-9), (expected, static["overallRmse"])

    for name, s in systems.items():
        for kind in ("detection", "retrain", "promotion", "rejection", "failure", "rollback"):
            assert s[f"{kind}s"] == sum(1 for e in s["events"] if e["kind"] == kind), (name, kind)
        done = s["promotions"] + s["rejections"] + s["failures"]
        assert s["retrains"] - 1 <= done <= s["retrains"], name
        times = [e["time"] for e in s["events"]]
        assert times == sorted(times)
        rolling = [r for _, r in s["rolling"]]
        assert s["maxRollingRmse"] >= s["finalRollingRmse"] > 0
        assert max(rolling) <= s["maxRollingRmse"] + 1e-9 or len(rolling) < spec.drift.window
        # The overall RMSE lies within what the rolling windows saw.
        assert 0 < s["overallRmse"] <= s["maxRollingRmse"]
        # The printed table carries the same figures.
        line = next(row for row in proc.stdout.splitlines() if row.startswith(f"{name} "))
        assert f"{s['overallRmse']:.3f}" in line and f"{s['finalRollingRmse']:.3f}" in line
    assert systems["static"]["retrains"] == 0

    # Version 1's change detector is tuned from its holdout calibration, in every system, as served.
    v1_tuning = {"version": "1", "source": "calibrated", "delta": tuning.delta, "threshold": tuning.threshold}
    for name, s in systems.items():
        first = s["detectorTunings"][0]
        assert first["version"] == "1" and first["source"] == "calibrated", (name, first)
        assert all(math.isclose(first[k], v1_tuning[k], rel_tol=1e-9) for k in ("delta", "threshold")), (
            name, first, v1_tuning,
        )  # fmt: skip
        assert all(t["source"] == "calibrated" for t in s["detectorTunings"]), name
    assert len(systems["static"]["detectorTunings"]) == 1
    header = f"(calibrated for version 1: delta {tuning.delta:.3g}, threshold {tuning.threshold:.3g})"
    assert header in proc.stdout
    assert systems["loop"]["detections"] >= 1, "WaterFlow's anomalies raise no drift at threshold 1.0"

    # The report: self-contained, and it renders in Chromium with every series and no script error.
    page = out_html.read_text()
    assert page.count("http") == page.count('xmlns="http://www.w3.org/2000/svg"')
    rendered = browser.render(out_html, tmp_path)
    assert rendered.script_errors == [], rendered.console
    body = re.search(r"<body[^>]*>", rendered.dom)
    assert body is not None and 'data-rendered="4"' in body[0] and "data-errors" not in body[0], body
    png = rendered.screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a blank page is a few KB
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1040, 980)


def test_bad_input_is_one_clear_message_and_exit_code_2(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
):
    from edgemodel_backtest import command  # noqa: PLC0415

    history = tmp_path / "history.csv"
    history.write_text("device,ts,flow\nbranch,1,2.0\n")  # no 'hour'
    manifest = tmp_path / "waterflow.yaml"
    shutil.copy(MANIFEST, manifest)
    assert command.main(["-f", str(manifest), "--data", str(history)]) == 2
    err = capsys.readouterr().err
    assert "edgemodel backtest: error:" in err and "lacks the fields ['hour']" in err

    doc = yaml.safe_load(MANIFEST.read_text())
    doc["spec"]["drift"]["threshold"] = -1
    manifest.write_text(yaml.safe_dump(doc))
    write_history(history, waterflow_rows()[:100])
    assert command.main(["-f", str(manifest), "--data", str(history)]) == 2
    assert "spec.drift.threshold: Input should be greater than 0" in capsys.readouterr().err

    doc["spec"]["drift"]["threshold"] = 1.0
    doc["spec"]["model"]["bootstrapData"] = "https://example.com/history.csv"
    manifest.write_text(yaml.safe_dump(doc))
    assert command.main(["-f", str(manifest), "--data", str(history)]) == 2
    assert "bootstrapData is a URL" in capsys.readouterr().err

    del doc["spec"]["model"]["bootstrapData"]
    manifest.write_text(yaml.safe_dump(doc))
    write_history(history, waterflow_rows()[:40])  # too few to train version 1 on 24 lags
    assert command.main(["-f", str(manifest), "--data", str(history)]) == 2
    assert "version 1 could not be trained" in capsys.readouterr().err
