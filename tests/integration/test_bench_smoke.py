"""Every benchmark runs at tiny sizes (``--quick``) and writes well-formed results.

This checks that the benchmarks keep working, never how fast anything is: no timing is
asserted. Each runs as ``python -m bench <name> --quick --out <tmp>``, as a user would.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"

BENCHMARKS = [
    pytest.param("drift", "ok", id="drift"),
    pytest.param("heal", None, id="heal"),
    pytest.param("runtime", "ok", id="runtime", marks=[pytest.mark.mqtt, pytest.mark.mlflow]),
    pytest.param("operator", "ok", id="operator", marks=[pytest.mark.cluster]),
    # The same benchmark comparing one operator with two sharded ones (bench/operator_shards.py).
    pytest.param("operator --shards 2", "ok", id="operator-shards", marks=[pytest.mark.cluster]),
    pytest.param("backtest", "ok", id="backtest"),
    pytest.param(
        "footprint",
        "ok",
        id="footprint",
        marks=[pytest.mark.cluster, pytest.mark.mqtt, pytest.mark.mlflow],
    ),
]


RESULT_NAMES = {"operator --shards 2": "operator_shards"}  # the result file, where not the name


def _run(name: str, out: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """``name`` is the benchmark, maybe followed by its options."""
    return subprocess.run(
        [sys.executable, "-m", "bench", *name.split(), "--quick", "--out", str(out)],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.parametrize(("name", "status"), BENCHMARKS)
def test_benchmark_runs_and_writes_results(name: str, status: str | None, tmp_path: pathlib.Path) -> None:
    proc = _run(name, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    name = RESULT_NAMES.get(name, name)

    result = json.loads((tmp_path / f"{name}.json").read_text())
    assert result["name"] == name and result["quick"] is True
    assert result["machine"]["cpus"] >= 1
    if status is not None:
        assert result["status"] == status
    else:  # heal: measured once the demo exists, "pending demo" until then
        assert result["status"] in ("ok", "pending demo")

    markdown = (tmp_path / f"{name}.md").read_text()
    assert markdown.startswith("# ")
    assert "|---|" in markdown or result["status"] == "pending demo"
    for plot in result["plots"]:
        assert f"]({plot})" in markdown
        assert (tmp_path / plot).read_bytes()[:8] == PNG


def test_results_report_ratios_against_baselines_measured_in_the_same_run(tmp_path: pathlib.Path) -> None:
    proc = _run("drift", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "drift.json").read_text())["data"]
    for stream in data["results"].values():
        assert {"em_page_hinkley", "river_adwin", "river_ph", "river_kswin"} <= set(stream)
        for detector in stream.values():
            assert detector["changes"] >= 1
            assert 0 <= detector["missed"] <= detector["changes"]
            assert detector["stationary_readings"] > 0
    assert set(data["verdicts"]) == set(data["results"])
