"""The backtest's replay on a synthetic plant with an abrupt drift: the loop heals, the static model does not.

No numbers are hard-coded: the tests compare the systems with each other and with the
drift's known moment, and check that the figures agree with themselves.
"""

from __future__ import annotations

import math
import random

import pytest

from edgemodel import api
from edgemodel_backtest import figures, history, replay, report, stream, table

START = 1_767_225_600.0  # 2026-01-01, seconds
SECONDS = 1800
DRIFT_AT = START + 900
DEVICES = ("d1", "d2", "d3")

SPEC = api.EdgeModelSpec.model_validate(
    {
        "sensors": {"topics": ["plant/+/t"], "features": ["x"], "target": "y", "lags": 1},
        "drift": {"threshold": 0.5, "window": 50},
        "retraining": {"trainingWindow": 1000, "cooldownSeconds": 60},
        "model": {"algorithm": "ridge"},
        "broker": {"host": "broker.example"},
    }
)


def plant_rows(seed: int = 1) -> list[dict[str, str | None]]:
    """Three devices, one reading a second each; at DRIFT_AT the plant's gain flips and its offset moves."""
    rng = random.Random(seed)
    rows: list[dict[str, str | None]] = []
    for i in range(SECONDS):
        t = START + i
        for k, device in enumerate(DEVICES):
            x = math.sin(2 * math.pi * i / 600 + k)
            gain, offset = (2.0, 0.0) if t < DRIFT_AT else (-2.0, 3.0)
            y = gain * x + offset + rng.gauss(0, 0.05)
            rows.append({"device": device, "ts": repr(t), "x": repr(x), "y": repr(y)})
    return rows


@pytest.fixture(scope="module")
def result() -> replay.Result:
    hist = history.parse(plant_rows(), stream.feature_spec(SPEC), columns=["device", "ts", "x", "y"])
    return replay.run(SPEC, hist, name="plant", options=replay.Options(warmup=0.2, period=600.0))


def test_the_loop_detects_the_drift_retrains_and_heals(result: replay.Result):
    loop, static = result.system("loop"), result.system("static")
    detections = loop.times("detection")
    assert detections and detections[0] >= DRIFT_AT, "no detection, or one before the plant changed"
    promoted = [t for t in loop.times("promotion") if t > DRIFT_AT]
    assert promoted, f"no promotion after the drift: {loop.events}"
    assert loop.times("retrain")[0] >= detections[0]
    assert loop.final_rolling_rmse is not None and loop.final_rolling_rmse < SPEC.drift.threshold
    assert static.final_rolling_rmse is not None and static.final_rolling_rmse > SPEC.drift.threshold
    assert loop.overall_rmse is not None and static.overall_rmse is not None
    assert loop.overall_rmse < static.overall_rmse
    assert static.count("retrain") == 0 and static.count("promotion") == 0


def test_the_baselines_retrain_by_their_own_rules(result: replay.Result):
    naive, periodic = result.system("naive"), result.system("periodic")
    assert naive.count("retrain") >= 1
    assert naive.count("rejection") == 0, "the naive baseline has no gate"
    assert naive.times("retrain")[0] >= DRIFT_AT
    # One retrain per period after the first, while the replay lasts.
    span = result.end - result.start
    assert periodic.count("retrain") == math.floor(span / 600.0)


def test_the_figures_agree_with_themselves(result: replay.Result):
    outcomes = {s.name: s.outcomes for s in result.systems}
    # Every system serves a model from the first reading on: each sees the same outcomes.
    assert len(set(outcomes.values())) == 1, outcomes
    assert result.replayed + result.bootstrap_readings == len(result.history.readings)
    for s in result.systems:
        done = s.count("promotion") + s.count("rejection") + s.count("failure")
        assert s.count("retrain") - 1 <= done <= s.count("retrain"), s.name
        assert len(s.rolling) <= figures.MAX_POINTS
        assert [t for t, _ in s.rolling] == sorted(t for t, _ in s.rolling)
        assert all(result.start <= e.time <= result.end + 3600 for e in s.events)
        assert s.max_rolling_rmse is not None and s.overall_rmse is not None
        assert s.max_rolling_rmse >= s.final_rolling_rmse  # type: ignore[operator]
        as_json = s.to_json()
        assert as_json["retrains"] == s.count("retrain") and len(as_json["events"]) == len(s.events)
    assert result.to_json()["replayed"]["readings"] == result.replayed


def test_the_table_and_the_page_show_every_system(result: replay.Result):
    text = table.render(result.systems)
    for s in result.systems:
        assert f"\n{s.name} " in text
    page = report.render(result.systems, title="Backtest <plant>", subtitle="synthetic & abrupt")
    assert page.count('class="series ') == len(result.systems)
    assert "Backtest &lt;plant&gt;" in page and "synthetic &amp; abrupt" in page
    # Self-contained: nothing is fetched; the only URL is the SVG namespace, which is a name.
    assert "src=" not in page and "href=" not in page and "@import" not in page
    assert page.count("http") == page.count('xmlns="http://www.w3.org/2000/svg"')


def test_a_history_that_leaves_nothing_after_the_bootstrap_is_refused():
    hist = history.parse(plant_rows()[:30], stream.feature_spec(SPEC), columns=["device", "ts", "x", "y"])
    with pytest.raises(ValueError, match="version 1 could not be trained"):
        replay.run(SPEC, hist, options=replay.Options(warmup=0.5))
