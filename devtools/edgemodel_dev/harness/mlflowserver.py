"""A real MLflow tracking server on 127.0.0.1, with a sqlite backend and proxied artifacts.

Artifacts go through the server (``mlflow-artifacts:``), as they do for Pods in a cluster,
so clients need nothing but the tracking URI.

I/O: runs ``python -m mlflow server``.
"""

from __future__ import annotations

import os
import pathlib
import sys
import urllib.request

from edgemodel_dev.harness import processes

__all__ = ["MlflowServer"]


class MlflowServer:
    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = workdir.resolve()
        self.port = processes.free_port()
        self._process: processes.ManagedProcess | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as resp:  # noqa: S310 - loopback  # nosec B310
            return bool(resp.status == 200)

    def start(self, timeout: float = 120) -> MlflowServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.pop("MLFLOW_TRACKING_URI", None)
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        argv = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.workdir / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.workdir / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        self._process = processes.ManagedProcess(
            "mlflow", argv, log_path=self.workdir / "mlflow.log", env=env
        ).start()
        self._process.wait_ready(self._healthy, timeout=timeout)
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(timeout=15)
