"""A local HTML page in real headless Chromium (Debian's ``chromium``): its DOM after load, a screenshot.

Each call starts Chromium in a process group of its own with a fresh profile, waits for
it to exit, and ends whatever of the group is left, so no browser outlives the test.
Chromium may reach nothing: every host name resolves to nothing
(``--host-resolver-rules``) and its background networking is off; the page is a
``file://`` URL. Its console goes to stderr (``--enable-logging=stderr``), where a script
error shows as an ``Uncaught`` console message.

``hack/browser-tools.sh`` (``make setup``) installs the package.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import signal
import subprocess

import pytest

__all__ = ["Rendered", "chromium", "render"]

FLAGS = (
    "--headless",
    "--no-sandbox",  # root in CI; the page is our own file
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-pings",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)


@dataclasses.dataclass(frozen=True)
class Rendered:
    dom: str
    """The document after its scripts ran (``--dump-dom``)."""
    screenshot: pathlib.Path
    console: list[str]
    """Console messages Chromium logged while loading the page, both runs."""

    @property
    def script_errors(self) -> list[str]:
        return [line for line in self.console if "Uncaught" in line or "SyntaxError" in line]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium not found: run hack/browser-tools.sh (make setup)")
    return found


def _run(args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = "", "timed out"
    finally:
        # Chromium's helpers (zygote, GPU, renderer) are in its group: end whatever is left.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line]


def render(page: pathlib.Path, workdir: pathlib.Path, *, width: int = 1040, height: int = 980) -> Rendered:
    """The page's DOM after load and a PNG screenshot of its first ``width`` x ``height`` pixels."""
    browser = chromium()
    url = page.resolve().as_uri()
    shot = workdir / f"{page.stem}.png"
    dom_run = _run(
        [browser, *FLAGS, f"--user-data-dir={workdir / 'profile-dom'}", "--virtual-time-budget=3000",
         "--dump-dom", url],
        timeout=120,
    )  # fmt: skip
    assert dom_run.returncode == 0, dom_run.stderr[-3000:]
    shot_run = _run(
        [browser, *FLAGS, f"--user-data-dir={workdir / 'profile-shot'}", f"--window-size={width},{height}",
         f"--screenshot={shot}", url],
        timeout=120,
    )  # fmt: skip
    assert shot_run.returncode == 0 and shot.is_file(), shot_run.stderr[-3000:]
    return Rendered(
        dom=dom_run.stdout, screenshot=shot, console=_console(dom_run.stderr) + _console(shot_run.stderr)
    )
