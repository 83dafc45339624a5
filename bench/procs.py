# ruff: noqa: PLC0415 - heavy or optional dependencies are imported where they are used
"""Start, pause and stop the benchmark's own helper processes. Every one is stopped by its owner.

I/O: subprocesses.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Helper", "mqttclient_argv", "run_json"]

REPO = pathlib.Path(__file__).resolve().parents[1]


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def mqttclient_argv(mode: str, broker: Any, client_id: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.mqttclient",
        mode,
        "--host",
        broker.host,
        "--port",
        str(broker.port),
        "--username",
        broker.username,
        "--password",
        broker.password,
        "--client-id",
        client_id,
        *args,
    ]


class Helper:
    """One child process in its own process group; :meth:`stop` ends that group."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stderr_path: pathlib.Path | None = None,
    ) -> None:
        self.argv = list(argv)
        if stderr_path is None:
            import tempfile

            stderr_path = pathlib.Path(tempfile.mkstemp(prefix="bench-helper-", suffix=".log")[1])
            self._own_log = True
        else:
            self._own_log = False
        self.stderr_path = stderr_path
        self._stderr = stderr_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            env=_env(env),
            cwd=REPO,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_line(self, expected: str, timeout: float = 30.0) -> None:
        """Read stdout until a line equal to ``expected`` (the helper's ready signal)."""
        import selectors

        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                line = self.proc.stdout.readline()
                if not line:
                    break
                if line.decode().strip() == expected:
                    return
            if self.proc.poll() is not None:
                break
        raise TimeoutError(f"{self.argv[:4]} did not print {expected!r} (exit {self.proc.poll()})")

    def pause(self) -> None:
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def result(self, timeout: float) -> dict[str, Any]:
        """Wait for the helper to exit and parse its last stdout line as JSON."""
        out, _ = self.proc.communicate(timeout=timeout)
        lines = [ln for ln in out.decode().splitlines() if ln.strip().startswith("{")]
        if not lines:
            tail = self.stderr_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.argv[:4]} printed no result (exit {self.proc.returncode}):\n{tail}")
        return dict(json.loads(lines[-1]))

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
        if self._own_log:
            self.stderr_path.unlink(missing_ok=True)


def run_json(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run a helper to completion and return its JSON result line."""
    h = Helper(argv, env=env)
    try:
        return h.result(timeout)
    finally:
        h.stop()
