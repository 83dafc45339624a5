"""The wheel is what ships: built from the sources, installed into a clean venv, every console script imports.

It carries the shipped packages and their data files, and none of the development tools
(the harness, the demo, the test helpers of ``edgemodel-dev``). pip may download the
runtime dependencies from PyPI (through its cache) the first time.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.packaging

ROOT = pathlib.Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]
SHIPPED = (
    "edgemodel",
    "edgemodel_operator",
    "edgemodel_runtime",
    "edgemodel_trainer",
    "edgemodel_simulator",
    "edgemodel_backtest",
)
DEVELOPMENT = ("edgemodel_dev", "harness", "demo", "testing")


def _builder_sources() -> list[str]:
    """What the Dockerfile's builder stage copies into its build folder (``COPY src... dest``)."""
    sources: list[str] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--") for w in words):
            sources += words[1:-1]
    return sources


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The wheel built, as the image builds it, from only what the Dockerfile copies."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for source in _builder_sources():
        path = ROOT / source
        if path.is_dir():
            shutil.copytree(path, src / source, ignore=ignore)
        else:
            shutil.copy2(path, src / source)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (built,) = out.glob("edgemodel-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """A clean venv (no system site-packages) with the wheel and its runtime dependencies."""
    env = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    python = env / "bin" / "python"
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    yield python


def _names(wheel: pathlib.Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_holds_the_shipped_packages_and_no_development_code(wheel: pathlib.Path) -> None:
    names = _names(wheel)
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == set(SHIPPED)
    for package in SHIPPED:
        assert f"{package}/py.typed" in names, package
    modules = [pathlib.PurePosixPath(n) for n in names if n.endswith(".py")]
    leaked = [str(m) for m in modules if any(part.removesuffix(".py") in DEVELOPMENT for part in m.parts)]
    assert leaked == []


def test_every_console_script_imports_in_a_clean_venv(installed: pathlib.Path) -> None:
    for name, target in SCRIPTS.items():
        module, func = target.split(":")
        probe = subprocess.run(
            [str(installed), "-c", f"import {module} as m; assert callable(m.{func})"],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert probe.returncode == 0, f"{name} = {target}: {probe.stderr[-1500:]}"
        script = installed.parent / name
        assert script.exists(), name
    # The development tools are not there, and the shipped CLI says how to get the demo.
    missing = subprocess.run(
        [str(installed), "-c", "import edgemodel_dev"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert missing.returncode != 0 and "ModuleNotFoundError" in missing.stderr
    demo = subprocess.run(
        [str(installed.parent / "edgemodel"), "demo"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert demo.returncode == 2 and "make demo" in demo.stderr and "edgemodel-dev" in demo.stderr, demo.stderr
    crd = subprocess.run(
        [str(installed.parent / "edgemodel"), "crd"], capture_output=True, text=True, check=True, timeout=120
    )
    assert "kind: CustomResourceDefinition" in crd.stdout
    # `edgemodel backtest` ships: the CLI finds it through the wheel's own entry point.
    backtest = subprocess.run(
        [str(installed.parent / "edgemodel"), "backtest", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert backtest.returncode == 0 and "--data" in backtest.stdout, backtest.stderr[-1500:]


def test_the_development_wheel_declares_its_data_files(tmp_path: pathlib.Path) -> None:
    """edgemodel-dev carries what the harness reads at run time (kwok's stages), not only code."""
    src = tmp_path / "devtools"
    shutil.copytree(
        ROOT / "devtools", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    )
    data = {
        p.relative_to(src).as_posix()
        for p in src.rglob("*")
        if p.is_file() and p.suffix in (".yaml", ".typed")
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (built,) = (tmp_path / "dist").glob("edgemodel_dev-*.whl")
    names = _names(built)
    assert data <= set(names), data - set(names)
    assert not [n for n in names if n.split("/")[0] in SHIPPED]
