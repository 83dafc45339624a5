"""A real Prometheus and a real kube-state-metrics on 127.0.0.1, for the alert tests.

:class:`Prometheus` runs Debian's ``prometheus`` with a temporary data directory, static
scrape targets and the given rule groups, on free ports, and answers its HTTP API.
:class:`KubeStateMetrics` runs kube-state-metrics out of cluster against a control plane
(its kubeconfig) with a custom-resource-state configuration, bound to 127.0.0.1.
``hack/observability-tools.sh`` installs the one and builds the other.

I/O: processes, files and HTTP on loopback.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from edgemodel_dev.harness import binaries, processes

__all__ = ["KubeStateMetrics", "Prometheus", "kube_state_metrics_binary", "prometheus_binary"]


def prometheus_binary() -> pathlib.Path:
    found = shutil.which("prometheus")
    if found is None:
        raise binaries.BinaryNotFoundError("prometheus not found on PATH; run hack/observability-tools.sh")
    return pathlib.Path(found)


def kube_state_metrics_binary() -> pathlib.Path:
    """PATH first, then the cache that ``hack/observability-tools.sh`` fills (keyed by KSM_VERSION)."""
    found = shutil.which("kube-state-metrics")
    if found is not None:
        return pathlib.Path(found)
    cache = pathlib.Path(os.environ.get("EDGEMODEL_CACHE", pathlib.Path.home() / ".cache" / "edgemodel"))
    version = binaries.versions()["KSM_VERSION"]
    cached = cache / "tools" / f"kube-state-metrics-{version}" / "bin" / "kube-state-metrics"
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    raise binaries.BinaryNotFoundError(
        f"kube-state-metrics not found on PATH or in {cached.parent}; run hack/observability-tools.sh"
    )


def _get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only  # nosec B310
        body: bytes = resp.read()
        return body


class KubeStateMetrics:
    """kube-state-metrics serving only the custom-resource-state metrics of ``config``."""

    def __init__(self, workdir: pathlib.Path, kubeconfig: pathlib.Path, config: str) -> None:
        self.workdir = workdir.resolve()
        self.kubeconfig = kubeconfig
        self.config = config
        self.port = processes.free_port()
        self.telemetry_port = processes.free_port()
        self._process: processes.ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def metrics_text(self) -> str:
        return _get(f"http://{self.address}/metrics").decode()

    def start(self, timeout: float = 60) -> KubeStateMetrics:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "custom-resource-state.yaml"
        config.write_text(self.config)
        argv = [
            str(kube_state_metrics_binary()),
            f"--kubeconfig={self.kubeconfig}",
            "--host=127.0.0.1",
            f"--port={self.port}",
            "--telemetry-host=127.0.0.1",
            f"--telemetry-port={self.telemetry_port}",
            f"--custom-resource-state-config-file={config}",
            "--custom-resource-state-only",
        ]
        self._process = processes.ManagedProcess(
            "kube-state-metrics", argv, log_path=self.workdir / "kube-state-metrics.log"
        ).start()
        self._process.wait_ready(
            lambda: _get(f"http://{self.address}/healthz", timeout=1) != b"", timeout=timeout
        )
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()

    def log_tail(self) -> str:
        return "" if self._process is None else self._process.log_tail()


class Prometheus:
    """Prometheus scraping ``targets`` (job name to ``host:port`` list) and evaluating ``rule_groups``.

    ``interval`` is both the scrape and the rule evaluation interval.
    """

    def __init__(
        self,
        workdir: pathlib.Path,
        targets: Mapping[str, Sequence[str]],
        rule_groups: Sequence[Mapping[str, Any]],
        *,
        interval: str = "1s",
    ) -> None:
        self.workdir = workdir.resolve()
        self.targets = {job: list(addresses) for job, addresses in targets.items()}
        self.rule_groups = [dict(g) for g in rule_groups]
        self.interval = interval
        self.port = processes.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: processes.ManagedProcess | None = None

    def _write_config(self) -> pathlib.Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        rules = self.workdir / "rules.yaml"
        rules.write_text(yaml.safe_dump({"groups": self.rule_groups}, sort_keys=False))
        config = {
            "global": {
                "scrape_interval": self.interval,
                "scrape_timeout": self.interval,
                "evaluation_interval": self.interval,
            },
            "rule_files": [str(rules)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": addresses}]}
                for job, addresses in self.targets.items()
            ],
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start(self, timeout: float = 60) -> Prometheus:
        config = self._write_config()
        argv = [
            str(prometheus_binary()),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self._process = processes.ManagedProcess(
            "prometheus", argv, log_path=self.workdir / "prometheus.log"
        ).start()
        self._process.wait_ready(lambda: b"Ready" in _get(f"{self.url}/-/ready", timeout=1), timeout=timeout)
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()

    def log_tail(self) -> str:
        return "" if self._process is None else self._process.log_tail()

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of a GET on ``/api/v1/<path>``."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        reply = json.loads(_get(f"{self.url}/api/v1/{path}{query}"))
        if reply.get("status") != "success":
            raise RuntimeError(f"Prometheus answered {reply}")
        return reply["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector of ``promql`` now."""
        result: list[dict[str, Any]] = self.api("query", query=promql)["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """The active (pending or firing) alerts."""
        active: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return active

    def targets_up(self) -> dict[str, bool]:
        """Each scrape job: whether all its targets answered the last scrape."""
        up: dict[str, bool] = {}
        for target in self.api("targets")["activeTargets"]:
            job = target["labels"]["job"]
            up[job] = up.get(job, True) and target["health"] == "up"
        return up
