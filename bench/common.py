"""Helpers shared by the benchmarks: statistics, Prometheus text, /proc sampling, result files.

Pure except :class:`ProcSampler` (reads ``/proc``) and :func:`write_result` (writes files).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import platform
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "ProcSampler",
    "Result",
    "get_json",
    "histogram_quantile",
    "machine",
    "markdown_table",
    "parse_prometheus",
    "percentile",
    "proc_cpu_seconds",
    "proc_rss_bytes",
    "publish_model",
    "ratio",
    "write_result",
]

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def publish_model(tracking_uri: str, name: str) -> str:
    """Register the test model at ``tracking_uri``, ignoring a ``MLFLOW_TRACKING_URI`` set here."""
    from edgemodel_dev import testing  # noqa: PLC0415 - the development tools, only when a benchmark runs

    env_uri = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        return str(testing.publish_model(tracking_uri, name))
    finally:
        if env_uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env_uri


def get_json(url: str) -> dict[str, Any]:
    """GET ``url`` on this machine and parse its JSON body, error statuses included; {} when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read()))
    except OSError:
        return {}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; NaN for no values.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    >>> percentile([], 99)
    nan
    """
    if not values:
        return math.nan
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def ratio(a: float | None, b: float | None) -> float:
    """``a / b``, NaN when either is missing or ``b`` is 0."""
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples of a Prometheus exposition: ``{(name, sorted labels): value}``.

    >>> s = parse_prometheus('a_total{x="1"} 3.0\\n# HELP b\\nb 2')
    >>> s[("a_total", (("x", "1"),))], s[("b", ())]
    (3.0, 2.0)
    """
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(3) or "")))
        try:
            out[(m.group(1), labels)] = float(m.group(4))
        except ValueError:
            continue
    return out


def sample_sum(samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    """The sum of every sample called ``name``, whatever its labels (0 when absent)."""
    return sum(v for (n, _), v in samples.items() if n == name)


def buckets(
    samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str
) -> list[tuple[float, float]]:
    """Cumulative ``(upper bound, count)`` pairs of histogram ``name``, sorted by bound."""
    out = []
    for (n, labels), v in samples.items():
        if n != f"{name}_bucket":
            continue
        le = dict(labels).get("le")
        if le is not None:
            out.append((math.inf if le == "+Inf" else float(le), v))
    return sorted(out)


def histogram_quantile(
    q: float, cumulative: Sequence[tuple[float, float]], before: Sequence[tuple[float, float]] = ()
) -> float:
    """Prometheus' ``histogram_quantile`` (``q`` in 0..1) over the increase from ``before``.

    Interpolates linearly inside the bucket; returns the last finite bound when the
    quantile falls in ``+Inf``.

    >>> histogram_quantile(0.5, [(0.1, 5), (1.0, 10), (math.inf, 10)])
    0.1
    >>> round(histogram_quantile(0.75, [(0.1, 5), (1.0, 10), (math.inf, 10)]), 3)
    0.55
    """
    base = dict(before)
    inc = [(le, c - base.get(le, 0.0)) for le, c in cumulative]
    if not inc or inc[-1][1] <= 0:
        return math.nan
    total = inc[-1][1]
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in inc:
        if c >= rank:
            if math.isinf(le):
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return prev_le


def proc_rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` from ``/proc/<pid>/status`` (0 once it is gone)."""
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


def proc_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of ``pid`` so far (0 once it is gone)."""
    try:
        raw = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class ProcSampler:
    """Samples a process' RSS in a thread every ``interval`` seconds; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_rss = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"sampler-{pid}")

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            rss = proc_rss_bytes(self.pid)
            self.peak_rss = max(self.peak_rss, rss)
            self.samples.append((time.monotonic() - start, rss))
            self._stop.wait(self.interval)

    def __enter__(self) -> ProcSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    mem_kb = 0
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except FileNotFoundError:
        pass
    model = ""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except FileNotFoundError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: numbers with ``digits`` significant digits, NaN/None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "∞"
        if value != 0 and (abs(value) >= 10**digits):
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table.

    >>> print(markdown_table(["a", "b"], [[1, 0.5]]))
    | a | b |
    |---|---|
    | 1 | 0.5 |
    """
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(c) for c in row) + " |")
    return "\n".join(lines)


@dataclasses.dataclass
class Result:
    """One benchmark's written result: a markdown body, its data, and plot file names."""

    name: str
    title: str
    markdown: str
    data: dict[str, Any]
    plots: list[str] = dataclasses.field(default_factory=list)
    status: str = "ok"
    """``ok``, ``pending`` (a dependency is missing) or ``failed``."""


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_result(result: Result, out: pathlib.Path, *, quick: bool) -> pathlib.Path:
    """Write ``<name>.md`` and ``<name>.json`` under ``out``; return the markdown path."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    m = machine()
    header = (
        f"# {result.title}\n\n"
        f"Status: **{result.status}**. Measured {stamp}{' with --quick (tiny sizes)' if quick else ''} on "
        f"{m['cpus']} CPUs ({m['cpu_model'] or 'unknown model'}), {m['memory_gb']} GB, Python {m['python']}. "
        "Every process of the benchmark (load generators, brokers, servers and the system under "
        "test) shares these CPUs.\n\n"
    )
    body = header + result.markdown.rstrip() + "\n"
    for plot in result.plots:
        body += f"\n![{plot}]({plot})\n"
    path = out / f"{result.name}.md"
    path.write_text(body)
    payload = {
        "name": result.name,
        "status": result.status,
        "quick": quick,
        "machine": m,
        "measured": stamp,
        "data": result.data,
        "plots": result.plots,
    }
    (out / f"{result.name}.json").write_text(json.dumps(_json_safe(payload), indent=2, sort_keys=True) + "\n")
    return path
