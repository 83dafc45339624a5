# ruff: noqa: PLC0415 - heavy or optional dependencies are imported where they are used
"""Benchmark 3: time to heal, from drift onset until the promoted model serves and RMSE is back.

It runs the end-to-end demo (``edgemodel_dev.demo``, owned by the demo's authors) and breaks
its timeline down into phases. The demo is expected to expose a function that runs the
self-healing loop once and returns a timeline dict with the moments (epoch seconds, or
datetimes) ``drift_started``, ``drift_detected``, ``job_started``, ``training_done``,
``promoted``, ``reloaded`` and ``healed``. Until that module exists, the result is
written as **pending demo**.

I/O: whatever the demo does (processes, MQTT, MLflow, the Kubernetes API).
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import inspect
import math
import os
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
    """The demo's timeline function, or None when ``edgemodel_dev.demo`` is not there yet."""
    try:
        demo = importlib.import_module("edgemodel_dev.demo")
    except ImportError:
        return None
    for name in CANDIDATES:
        fn = getattr(demo, name, None)
        if callable(fn):
            return fn  # type: ignore[no-any-return]
    return None


def _timeline_dict(result: Any) -> dict[str, Any]:
    """A timeline from what the demo returned: a dict, a ``{"timeline": ...}`` dict, or an object."""
    if isinstance(result, Mapping):
        inner = result.get("timeline", result)
        return dict(inner) if isinstance(inner, Mapping) else _timeline_dict(inner)
    if hasattr(result, "to_json"):
        return dict(result.to_json())
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    raise TypeError(f"the demo returned {type(result).__name__}, not a timeline")


def _call(fn: Callable[..., Any], workdir: pathlib.Path) -> dict[str, Any]:
    params = inspect.signature(fn).parameters
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    first = next(iter(params.values()), None)
    if (
        first is not None
        and first.kind in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD)
        and (first.default is first.empty)
    ):
        args.append(workdir / "demo")
    for key in ("workdir", "work_dir", "directory"):
        if key in params and not args:
            kwargs[key] = workdir / "demo"
    if "say" in params:
        kwargs["say"] = lambda line: print(f"   demo: {line}", flush=True)
    return _timeline_dict(fn(*args, **kwargs))


def _pending() -> common.Result:
    md = (
        "**Pending demo.** `devtools/edgemodel_dev/demo.py` does not exist in this checkout yet, so time to "
        "heal was not measured. The benchmark is written against the expected interface: a function in "
        "`edgemodel_dev.demo` "
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
    if quick:
        # One demo run takes minutes (a control plane, MLflow, training): too long for a smoke
        # run. --quick checks that the interface is there; the full run measures.
        md = (
            f"`edgemodel_dev.demo.{fn.__name__}{inspect.signature(fn)}` found. With --quick the demo is not "
            "run (one run takes minutes); `python -m bench heal` runs it and breaks time to heal down.\n\n"
            + common.markdown_table(["phase", "from", "to"], [[n, f"`{a}`", f"`{b}`"] for n, a, b in PHASES])
        )
        return common.Result("heal", "Time to heal", md, {"function": fn.__name__, "ran": False})
    runs = int(os.environ.get("BENCH_HEAL_RUNS", "1"))
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-heal-") as tmp:
            t = time.monotonic()
            timeline = _call(fn, pathlib.Path(tmp))
            p = phases(timeline)
            # The demo records promotion when training ends; the trainer times registration and
            # gating itself (MLflow), so that part of "training" is shown separately when given.
            gate = (timeline.get("trainer") or {}).get("register_and_gate_seconds")
            if gate is not None and not p["phases"]["registration and gating"]:
                p["phases"]["registration and gating (inside training)"] = float(gate)
            p["wall_seconds"] = time.monotonic() - t
            p["demo"] = {k: v for k, v in timeline.items() if k != "trainer"}
            p["trainer"] = timeline.get("trainer")
            results.append(p)
    names = [n for n, _, _ in PHASES]
    extra = [k for r in results for k in r["phases"] if k not in names]
    rows = []
    for name in names + sorted(set(extra)):
        vals = [r["phases"].get(name) for r in results if r["phases"].get(name) is not None]
        total = common.percentile([r["total"] for r in results if r["total"]], 50)
        rows.append(
            [
                name,
                common.percentile(vals, 50),
                min(vals) if vals else math.nan,
                max(vals) if vals else math.nan,
                common.ratio(common.percentile(vals, 50), total),
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
        f"{runs} run(s) of `edgemodel_dev.demo.{fn.__name__}` (abrupt drift); phases from its timeline, "
        "in seconds. "
        "Share: the phase's part of the whole heal in the same run (the baseline).\n\n"
        + common.markdown_table(["phase", "median s", "min s", "max s", "share of total"], rows)
    )
    plots = [_plot(out, results)]
    status = "ok" if totals else "incomplete"
    return common.Result(
        "heal", "Time to heal", md, {"runs": results, "function": fn.__name__}, plots, status
    )


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
