"""The demo's report: its live RMSE series and moments on the backtest's page."""

from __future__ import annotations

import re

from edgemodel_dev import demo


def test_the_demo_report_draws_the_live_series_and_marks_every_moment():
    timeline = demo.Timeline(
        drift_started=20.0,
        drift_detected=20.5,
        job_started=20.6,
        job_name="line1-temperature-retrain-2",
        training_done=25.0,
        promoted=25.0,
        reloaded=25.3,
        healed=30.0,
        version_before="1",
        version_after="2",
        rmse_before=0.3,
        rmse_drifted=0.8,
        rmse_after=0.3,
        trainer={"reason": "BeatChampion: challenger holdout RMSE 0.28 < 2.8"},
    )
    for t, rmse in [(10.0, 0.3), (10.5, 0.3), (12.0, 0.3), (21.0, 1.4), (26.0, 0.9), (30.0, 0.3)]:
        timeline.sample(t, rmse)
    # An unchanged value within a second is not sampled again.
    assert [t for t, _ in timeline.rmse_samples] == [10.0, 12.0, 21.0, 26.0, 30.0]
    page = demo.report_page(timeline)
    assert page.count('class="series ') == 1
    polyline = re.search(r'<polyline class="series loop"[^>]* points="([^"]+)"', page)
    assert polyline is not None and len(polyline[1].split()) == 5
    for label in ("Drift injected (demo)", "Drift detected", "Retraining started", "Promoted"):
        assert label in page, label
    assert "20.5 s: Drift detected (version 1)" in page and "(version 2)" in page
    assert "EdgeModel healed itself" in page and "time to heal" in page
    assert page.count("http") == page.count('xmlns="http://www.w3.org/2000/svg"')
