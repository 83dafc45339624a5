"""The repository layout: the card's top-level folders, and no shadowing of the standard library."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tomllib

import pytest

pytestmark = pytest.mark.packaging

ROOT = pathlib.Path(__file__).resolve().parents[2]
# `python -m` puts the current directory first on sys.path; so does this probe.
PROBE = "import sys; sys.path.insert(0, ''); import operator; print(operator.__file__)"


def test_the_cards_top_level_folders_exist():
    for name in (
        "operator",
        "crds",
        "runtime",
        "trainer",
        "simulator",
        "backtest",
        "devtools",
        "examples",
        "helm",
        "tests",
    ):
        assert (ROOT / name).is_dir(), name
    for name in ("Dockerfile", "pyproject.toml", "README.md"):
        assert (ROOT / name).is_file(), name


def test_operator_folder_is_not_a_package_that_shadows_the_stdlib():
    assert not (ROOT / "operator" / "__init__.py").exists()
    # `python -m` puts the current directory first on sys.path, exactly as `python -m pytest` does.
    out = subprocess.run(
        [sys.executable, "-m", "edgemodel.crd"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("# Generated")
    probe = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "lib" in probe.stdout and not probe.stdout.startswith(str(ROOT / "operator"))


def test_python_dash_m_pytest_starts_from_the_root():
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "tests/unit/test_api.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Could not import runpy module" not in out.stderr


def _assert_importable(target: str) -> None:
    """``module:function`` imports in a fresh interpreter and names a callable."""
    module, func = target.split(":")
    probe = subprocess.run(
        [sys.executable, "-c", f"import {module} as m; assert callable(m.{func})"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode == 0, f"{target}: {probe.stderr[-500:]}"


def test_console_scripts_point_at_importable_functions():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) >= {
        "edgemodel",
        "edgemodel-operator",
        "edgemodel-runtime",
        "edgemodel-trainer",
        "edgemodel-simulator",
    }
    for target in scripts.values():
        _assert_importable(target)


def test_edgemodel_subcommands_point_at_importable_functions():
    """The shipped ``edgemodel.commands`` entry points (``edgemodel backtest``) import and take a parser."""
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    commands = groups["edgemodel.commands"]
    assert "backtest" in commands
    for target in commands.values():
        _assert_importable(target)
