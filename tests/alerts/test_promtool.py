"""The chart's alerts under ``promtool test rules``: each fires when it should and only then.

The rules are the ones the chart ships: ``helm template`` with the pinned helm renders the
PrometheusRule with the default values, and its ``spec.groups`` become the rule file that
the test files here (``*.test.yaml``) load as ``rules.yaml``. (deploy/alerts/prometheusrule.yaml
is kept equal to that render by tests/integration/test_helm.py.)

The test files can fail: for every rule, promtool must report failures when the rule is
mutated to never fire, to fire for every EdgeModel whatever its state, or to fire without
waiting its ``for``. The last two run on only the rule's "stays silent" checkpoints, so
each rule has silent cases that see a wrong rule.

Needs ``promtool`` (Debian's prometheus package) and helm: ``hack/observability-tools.sh``
and ``hack/k8s-tools.sh`` (both in ``make setup``).
"""

from __future__ import annotations

import copy
import pathlib
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.alerts import chart

pytestmark = pytest.mark.packaging

HERE = pathlib.Path(__file__).resolve().parent
TEST_FILES = sorted(HERE.glob("*.test.yaml"))
# The metric every EdgeModel alert is computed from, to make a rule that ignores its condition.
ANY_EDGEMODEL = 'max by (namespace, edgemodel) ({__name__=~"edgemodel_condition|edgemodel_model_.+"})'


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: run hack/observability-tools.sh (make setup)")
    return found


def _run(*argv: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def chart_groups(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """``spec.groups`` of the chart's PrometheusRule with the default values."""
    return chart.rule_groups(tmp_path_factory.mktemp("helm-home"))


def _alerts(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def _cases() -> list[tuple[str, dict[str, Any]]]:
    """(alertname, checkpoint) for every alert_rule_test entry of every test file."""
    out = []
    for path in TEST_FILES:
        for group in yaml.safe_load(path.read_text())["tests"]:
            out.extend((c["alertname"], c) for c in group.get("alert_rule_test", []))
    return out


def _promtool_test(workdir: pathlib.Path, groups: list[dict[str, Any]], tests: dict[str, Any]) -> str | None:
    """Run ``promtool test rules`` on ``tests`` against ``groups``; None if it passes, else its output."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    (workdir / "case.test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = _run(_promtool(), "test", "rules", "case.test.yaml", cwd=workdir)
    return None if proc.returncode == 0 else proc.stdout + proc.stderr


def _silent_only(alert: str) -> dict[str, Any]:
    """Every test group, with only its checkpoints where ``alert`` must not fire."""
    groups = []
    for path in TEST_FILES:
        doc = yaml.safe_load(path.read_text())
        for group in doc["tests"]:
            kept = [
                c for c in group.get("alert_rule_test", []) if c["alertname"] == alert and not c["exp_alerts"]
            ]
            if kept:
                groups.append({**group, "alert_rule_test": kept})
    assert groups, f"{alert} has no case where it stays silent"
    return {"rule_files": ["rules.yaml"], "evaluation_interval": doc.get("evaluation_interval", "1m"),
            "tests": groups}  # fmt: skip


def _mutated(groups: list[dict[str, Any]], alert: str, **fields: str) -> list[dict[str, Any]]:
    out = copy.deepcopy(groups)
    (rule,) = [r for g in out for r in g["rules"] if r.get("alert") == alert]
    rule.update(fields)
    return out


def test_the_rendered_rules_are_valid(chart_groups, tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": chart_groups}, sort_keys=False))
    proc = _run(_promtool(), "check", "rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(_alerts(chart_groups))} rules found" in proc.stdout


def test_every_rule_has_a_firing_and_a_silent_case(chart_groups):
    alerts = set(_alerts(chart_groups))
    assert alerts, "the chart rendered no alert"
    cases = _cases()
    # A checkpoint naming an alert the rules lack would pass with exp_alerts: [] whatever happens.
    assert {name for name, _ in cases} <= alerts
    for alert in alerts:
        assert any(n == alert and c["exp_alerts"] for n, c in cases), f"{alert}: no case where it fires"
        assert any(n == alert and not c["exp_alerts"] for n, c in cases), (
            f"{alert}: no case where it is silent"
        )


def test_promtool_unit_tests_pass_on_the_chart_rules(chart_groups, tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": chart_groups}, sort_keys=False))
    for path in TEST_FILES:
        shutil.copy(path, tmp_path / path.name)
    proc = _run(_promtool(), "test", "rules", *(p.name for p in TEST_FILES), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(TEST_FILES), proc.stdout


@pytest.mark.parametrize(
    "alert",
    ["EdgeModelDriftedTooLong", "EdgeModelRetrainingStuck", "EdgeModelDegraded", "EdgeModelNotReady",
     "EdgeModelModelTooOld"],
)  # fmt: skip
def test_the_cases_catch_a_wrong_rule(chart_groups, alert, tmp_path):
    assert alert in _alerts(chart_groups)
    tests = [g for p in TEST_FILES for g in yaml.safe_load(p.read_text())["tests"]]
    everything = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}
    silent = _silent_only(alert)
    # The unmutated rules pass both selections, so each failure below is the mutation's.
    assert _promtool_test(tmp_path / "ok-all", chart_groups, everything) is None
    assert _promtool_test(tmp_path / "ok-silent", chart_groups, silent) is None

    never = _mutated(chart_groups, alert, expr="vector(1) == 2")
    failed = _promtool_test(tmp_path / "never", never, everything)
    assert failed is not None and f"alertname: {alert}" in failed, f"{alert} never firing went unnoticed"

    always = _mutated(chart_groups, alert, expr=ANY_EDGEMODEL)
    failed = _promtool_test(tmp_path / "always", always, silent)
    assert failed is not None and f"alertname: {alert}" in failed, (
        f"{alert} ignoring its condition went unnoticed"
    )

    eager = _mutated(chart_groups, alert, **{"for": "0s"})
    failed = _promtool_test(tmp_path / "eager", eager, silent)
    assert failed is not None and f"alertname: {alert}" in failed, f"{alert} without its for went unnoticed"
