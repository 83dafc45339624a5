"""The chart's alert rules as shipped: ``helm template`` with the pinned helm renders them."""

from __future__ import annotations

import os
import pathlib
import subprocess
from typing import Any

import yaml

from edgemodel_dev.harness import binaries

CHART = binaries.repo_root() / "helm" / "edgemodel"


def rule_groups(helm_home: pathlib.Path, *values: str) -> list[dict[str, Any]]:
    """``spec.groups`` of the chart's PrometheusRule, with ``--set`` ``values`` on top of the defaults."""
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(helm_home / "cache"),
        "HELM_CONFIG_HOME": str(helm_home / "config"),
        "HELM_DATA_HOME": str(helm_home / "data"),
    }
    sets = [arg for value in ("prometheusRule.enabled=true", *values) for arg in ("--set", value)]
    proc = subprocess.run(
        [str(binaries.find("helm")), "template", "em", str(CHART), "--namespace", "edgemodel-system",
         "--kube-version", binaries.versions()["K8S_VERSION"], *sets,
         "--show-only", "templates/prometheusrule.yaml"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"helm template failed:\n{proc.stderr}")
    (doc,) = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert doc["kind"] == "PrometheusRule"
    groups: list[dict[str, Any]] = doc["spec"]["groups"]
    return groups
