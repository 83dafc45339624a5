"""The backtest's figures as a plain-text table, for a terminal.

Pure functions; no I/O here.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from edgemodel_backtest import figures

__all__ = ["COLUMNS", "render", "rows"]

COLUMNS = (
    "system",
    "overall RMSE",
    "rolling RMSE (last / max)",
    "over threshold",
    "detections",
    "retrains",
    "promotions",
    "rejected",
    "failed",
    "rollbacks",
)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def rows(systems: Sequence[figures.Figures]) -> list[tuple[str, ...]]:
    """One row of cells per system, in the order of :data:`COLUMNS`."""
    return [
        (
            s.name,
            _num(s.overall_rmse),
            f"{_num(s.final_rolling_rmse)} / {_num(s.max_rolling_rmse)}",
            _share(s.share_over_threshold),
            str(s.count("detection")),
            str(s.count("retrain")),
            str(s.count("promotion")),
            str(s.count("rejection")),
            str(s.count("failure")),
            str(s.count("rollback")),
        )
        for s in systems
    ]


def when(t: float) -> str:
    """A virtual time as UTC, to the minute.

    >>> when(0.0)
    '1970-01-01 00:00'
    """
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M")


def render(systems: Sequence[figures.Figures], *, max_times: int = 8) -> str:
    """The table, each system's label, and the times of the loop's events.

    >>> f = figures.build(name="static", label="Static", times=[1.0], errors=[0.5], events=[],
    ...                   threshold=1.0, window=10)
    >>> render([f]).splitlines()[2].split()
    ['static', '0.500', '0.500', '/', 'n/a', 'n/a', '0', '0', '0', '0', '0', '0']
    """
    body = rows(systems)
    widths = [max(len(c), *(len(r[i]) for r in body)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body]
    lines.append("")
    for s in systems:
        lines.append(f"{s.name:<9} {s.label}")
    for s in systems:
        if s.name != "loop":
            continue
        for kind in ("detection", "retrain", "promotion", "rollback"):
            times = s.times(kind)
            if not times:
                continue
            shown = ", ".join(when(t) for t in times[:max_times])
            more = f" and {len(times) - max_times} more" if len(times) > max_times else ""
            lines.append(f"loop {kind}s (UTC): {shown}{more}")
    return "\n".join(lines) + "\n"
