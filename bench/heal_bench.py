# ruff: noqa: PLC0415 - heavy or optional dependencies are imported where they are used
"""Benchmark 3: time to heal, from drift onset until the promoted model serves and RMSE is back.

It runs the end-to-end demo (``edgemodel.demo``, owned by the demo's authors) and breaks
its timeline down into phases. The demo is expected to expose a function that runs the
self-healing loop once and returns a timeline dict with the moments (epoch seconds, or
datetimes) ``drift_started``, ``drift_detected``, ``job_started``, ``training_done``,
``promoted``, ``reloaded`` and ``healed``. Until that module exists, the result is
written as **pending demo**.

I/O: whatever the demo does (processes, MQTT, MLflow, the Kubernetes API).
"""

from __future__ import annotations

import datetime
import importlib
import inspect
import math
import pathlib
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

from bench import common

__all__ = ["PHASES", "find_timeline_function", "phases", "run"]

MOMENTS = (
    "drift_started",
    "drift_detected",
    "job_started",
    "training_done",
    "promoted",
    "reloaded",
    "healed",
)
PHASES = (
    ("detection", "drift_started", "drift_detected"),
    ("Job start", "drift_detected", "job_started"),
    ("training", "job_started", "training_done"),
    ("registration and gating", "training_done", "promoted"),
    ("reload", "promoted", "reloaded"),
    ("RMSE back under threshold", "reloaded", "healed"),
)
CANDIDATES = ("timeline", "run_timeline", "run_demo", "demo", "run")


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, str):
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return float(value)


def phases(timeline: Mapping[str, Any]) -> dict[str, Any]:
    """Phase durations (seconds) and their share of the total, from a timeline of moments.

    >>> p = phases({"drift_started": 0, "drift_detected": 2, "job_started": 3, "training_done": 8,
    ...             "promoted": 9, "reloaded": 10, "healed": 12})
    >>> p["total"], p["phases"]["training"], round(p["shares"]["training"], 3)
    (12.0, 5.0, 0.417)
    """
    t = {k: _seconds(timeline.get(k)) for k in MOMENTS}
    out: dict[str, float | None] = {}
    for name, a, b in PHASES:
        ta, tb = t[a], t[b]
        out[name] = None if ta is None or tb is None else tb - ta
    start, end = t["drift_started"], t["healed"]
    total = None if start is None or end is None else end - start
    shares = {k: (v / total if v is not None and total else math.nan) for k, v in out.items()}
    return {"phases": out, "total": total, "shares": shares, "moments": t}


def find_timeline_function() -> Callable[..., Any] | None:
    """The demo's timeline function, or None when ``edgemodel.demo`` is not there yet."""
    try:
        demo = importlib.import_module("edgemodel.demo")
    except ImportError:
        return None
    for name in CANDIDATES:
        fn = getattr(demo, name, None)
        if callable(fn):
            return fn  # type: ignore[no-any-return]
    return None


def _call(fn: Callable[..., Any], workdir: pathlib.Path, quick: bool) -> Mapping[str, Any]:
    params = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {}
    for key in ("workdir", "work_dir", "directory"):
        if key in params:
            kwargs[key] = workdir
    if "quick" in params:
        kwargs["quick"] = quick
    result = fn(**kwargs)
    timeline = (
        result.get("timeline", result) if isinstance(result, Mapping) else getattr(result, "timeline", None)
    )
    if not isinstance(timeline, Mapping):
        raise TypeError(f"edgemodel.demo.{fn.__name__} returned {type(result).__name__}, not a timeline dict")
    return timeline


def _pending() -> common.Result:
    md = (
        "**Pending demo.** `edgemodel/demo.py` does not exist in this checkout yet, so time to heal was not "
        "measured. The benchmark is written against the expected interface: a function in `edgemodel.demo` "
        f"(one of {', '.join(f'`{c}`' for c in CANDIDATES)}) that runs the self-healing loop once and "
        "returns a "
        f"timeline dict with {', '.join(f'`{m}`' for m in MOMENTS)} (epoch seconds, ISO strings or "
        "datetimes). "
        "Once it exists, `python -m bench heal` breaks the time to heal down into:\n\n"
        + common.markdown_table(["phase", "from", "to"], [[n, f"`{a}`", f"`{b}`"] for n, a, b in PHASES])
        + "\n\nand reports each phase as a share of the total (the baseline is the whole heal, same run)."
    )
    return common.Result(
        "heal",
        "Time to heal",
        md,
        {"pending": True, "expected_moments": list(MOMENTS)},
        status="pending demo",
    )


def run(out: pathlib.Path, *, quick: bool) -> common.Result:
    fn = find_timeline_function()
    if fn is None:
        return _pending()
    runs = 1 if quick else 3
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-heal-") as tmp:
            t = time.monotonic()
            timeline = _call(fn, pathlib.Path(tmp), quick)
            p = phases(timeline)
            p["wall_seconds"] = time.monotonic() - t
            results.append(p)
    rows = []
    for name, _, _ in PHASES:
        vals = [r["phases"][name] for r in results if r["phases"][name] is not None]
        shares = [r["shares"][name] for r in results if not math.isnan(r["shares"][name])]
        rows.append(
            [
                name,
                common.percentile(vals, 50),
                min(vals) if vals else math.nan,
                max(vals) if vals else math.nan,
                common.percentile(shares, 50),
            ]
        )
    totals = [r["total"] for r in results if r["total"] is not None]
    rows.append(
        [
            "**total: drift onset → healed**",
            common.percentile(totals, 50),
            min(totals) if totals else math.nan,
            max(totals) if totals else math.nan,
            1.0,
        ]
    )
    md = (
        f"{runs} run(s) of `edgemodel.demo.{fn.__name__}`; phases from its timeline. Share: the phase's part "
        "of the whole heal in the same run.\n\n"
        + common.markdown_table(["phase", "median s", "min s", "max s", "share of total"], rows)
    )
    plots = [_plot(out, results)]
    return common.Result("heal", "Time to heal", md, {"runs": results, "function": fn.__name__}, plots)


def _plot(out: pathlib.Path, results: list[dict[str, Any]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.5 * len(results)))
    colors = ["#c63", "#e92", "#2a7", "#27a", "#76b", "#999"]
    for i, r in enumerate(results):
        left = 0.0
        for (name, _, _), color in zip(PHASES, colors, strict=True):
            v = r["phases"][name] or 0.0
            ax.barh(i, v, left=left, color=color, label=name if i == 0 else None)
            left += v
    ax.set_xlabel("seconds from drift onset")
    ax.set_yticks(range(len(results)), [f"run {i + 1}" for i in range(len(results))])
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    ax.set_title("Time to heal, by phase")
    fig.tight_layout()
    fig.savefig(out / "heal_phases.png", dpi=100)
    plt.close(fig)
    return "heal_phases.png"
