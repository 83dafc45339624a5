"""One self-contained HTML page of a run: rolling RMSE over time, the events, a table of figures.

The chart is inline SVG drawn here; the page loads nothing from anywhere (no URL, no
font, no library), so it opens from a file on a machine with no network. A few lines of
inline script only add highlighting (hover a legend entry) and mark the page rendered
(``data-rendered`` on ``<body>``), which the Chromium test reads back; without script the
page reads the same.

``edgemodel backtest --report`` and ``edgemodel demo`` both render their runs with
:func:`render`.

Pure functions; no I/O here.
"""

from __future__ import annotations

import datetime
import html
import math
from collections.abc import Sequence

from edgemodel_backtest import figures, table

__all__ = ["COLORS", "MARKS", "render"]

COLORS = {"loop": "#1f5fbf", "static": "#7a7a7a", "naive": "#e07b00", "periodic": "#2e9e3e"}
"""Series colours by system name; others get :data:`_FALLBACK` colours in turn."""
_FALLBACK = ("#8e44ad", "#c0392b", "#16a085", "#2c3e50")
MARKS = {
    "detection": ("#d62728", "Drift detected"),
    "retrain": ("#e07b00", "Retraining started"),
    "promotion": ("#2e9e3e", "Promoted"),
    "rejection": ("#7a7a7a", "Rejected"),
    "failure": ("#222222", "Failed"),
    "rollback": ("#8e44ad", "Rolled back"),
    "injection": ("#555555", "Drift injected (demo)"),
}
WIDTH, HEIGHT = 980, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 36
LANE = 22

_SCRIPT = """
(function () {
  var body = document.body;
  window.addEventListener('error', function () {
    body.setAttribute('data-errors', String(Number(body.getAttribute('data-errors') || 0) + 1));
  });
  var items = document.querySelectorAll('[data-series]');
  items.forEach(function (item) {
    var name = item.getAttribute('data-series');
    item.addEventListener('mouseenter', function () { body.setAttribute('data-focus', name); });
    item.addEventListener('mouseleave', function () { body.removeAttribute('data-focus'); });
  });
  body.setAttribute('data-rendered', String(document.querySelectorAll('svg .series').length));
})();
"""

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1b1b; margin: 24px; }
h1 { font-size: 20px; margin: 0 0 4px; } p.sub { color: #555; margin: 0 0 16px; }
svg { background: #fff; border: 1px solid #ddd; } svg text { font: 11px system-ui, sans-serif; fill: #444; }
.grid { stroke: #eee; } .axis { stroke: #999; } .threshold { stroke: #d62728; stroke-dasharray: 6 4; }
.series { fill: none; stroke-width: 1.6; } .series.loop { stroke-width: 2.4; }
body[data-focus] .series { opacity: 0.2; }
.legend { display: flex; flex-wrap: wrap; gap: 16px; margin: 8px 0 16px; }
.legend span { display: inline-flex; align-items: center; gap: 6px; cursor: default; }
.swatch { width: 18px; height: 4px; display: inline-block; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e4e4e4; } th { text-align: left; background: #f6f6f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.notes { color: #555; max-width: 980px; } code { background: #f3f3f3; padding: 0 3px; }
"""


def _color(name: str, index: int) -> str:
    return COLORS.get(name, _FALLBACK[index % len(_FALLBACK)])


def _nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    base = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= m * base:
            return float(m * base)
    return float(10 * base)


def _time_label(t: float, span: float, relative: bool) -> str:
    if relative:
        return f"{t:.0f} s"
    moment = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return moment.strftime("%m-%d" if span > 3 * 86400 else "%m-%d %H:%M")


def _mark(kind: str, x: float, y: float, title: str) -> str:
    """One event mark centred on ``(x, y)``, with ``title`` as its tooltip."""
    color = MARKS.get(kind, ("#000", kind))[0]
    t = f"<title>{html.escape(title)}</title>"
    if kind == "detection":
        d = f"M{x - 5:.1f},{y - 5:.1f} L{x + 5:.1f},{y - 5:.1f} L{x:.1f},{y + 4:.1f} Z"
        return f'<path d="{d}" fill="{color}">{t}</path>'
    if kind == "promotion":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{color}">{t}</circle>'
    if kind == "rejection":
        ring = f'fill="#fff" stroke="{color}" stroke-width="1.5"'
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" {ring}>{t}</circle>'
    if kind == "failure":
        d = (
            f"M{x - 4:.1f},{y - 4:.1f} L{x + 4:.1f},{y + 4:.1f} "
            f"M{x - 4:.1f},{y + 4:.1f} L{x + 4:.1f},{y - 4:.1f}"
        )
        return f'<path d="{d}" stroke="{color}" stroke-width="1.6">{t}</path>'
    if kind == "rollback":
        d = f"M{x:.1f},{y - 5:.1f} L{x + 5:.1f},{y:.1f} L{x:.1f},{y + 5:.1f} L{x - 5:.1f},{y:.1f} Z"
        return f'<path d="{d}" fill="{color}">{t}</path>'
    return f'<rect x="{x - 1:.1f}" y="{y - 6:.1f}" width="2.4" height="12" fill="{color}">{t}</rect>'


def _chart(systems: Sequence[figures.Figures], *, relative: bool) -> str:
    threshold = systems[0].threshold
    times = [t for s in systems for t, _ in s.rolling] + [e.time for s in systems for e in s.events]
    start, end = (min(times), max(times)) if times else (0.0, 1.0)
    if end <= start:
        end = start + 1.0
    values = sorted(v for s in systems for _, v in s.rolling)
    p98 = values[int(0.98 * (len(values) - 1))] if values else threshold
    top = max(1.5 * threshold, min(max(values, default=threshold), max(p98 * 1.1, 3.0 * threshold)))
    lanes = [s for s in systems if s.events]
    plot_h = HEIGHT - TOP - BOTTOM
    total_h = HEIGHT + LANE * len(lanes) + (8 if lanes else 0)
    plot_w = WIDTH - LEFT - RIGHT

    def x_of(t: float) -> float:
        return LEFT + (t - start) / (end - start) * plot_w

    def y_of(v: float) -> float:
        return TOP + plot_h - min(v, top * 1.02) / top * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{total_h}" '
        f'viewBox="0 0 {WIDTH} {total_h}" role="img" aria-label="Rolling RMSE over time">',
        f'<defs><clipPath id="plot"><rect x="{LEFT}" y="{TOP}" width="{plot_w}" '
        f'height="{plot_h}"/></clipPath></defs>',
    ]
    step = _nice_step(top, 5)
    v = 0.0
    while v <= top + 1e-12:
        y = y_of(v)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
        v += step
    for i in range(7):
        t = start + (end - start) * i / 6
        x = x_of(t)
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h}"/>')
        label = html.escape(_time_label(t, end - start, relative))
        out.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{label}</text>')
    out.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}"/>')
    out.append(
        f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>'
    )
    out.append(
        f'<text x="14" y="{TOP + plot_h / 2:.1f}" transform="rotate(-90 14 {TOP + plot_h / 2:.1f})" '
        f'text-anchor="middle">rolling RMSE</text>'
    )
    # The first system (the loop) is drawn last, on top of the baselines.
    for i, s in reversed(list(enumerate(systems))):
        if not s.rolling:
            continue
        points = " ".join(f"{x_of(t):.1f},{y_of(r):.1f}" for t, r in s.rolling)
        out.append(
            f'<polyline class="series {html.escape(s.name)}" data-series="{html.escape(s.name)}" '
            f'clip-path="url(#plot)" stroke="{_color(s.name, i)}" points="{points}">'
            f"<title>{html.escape(s.label)}</title></polyline>"
        )
    ty = y_of(threshold)
    out.append(f'<line class="threshold" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}"/>')
    out.append(
        f'<text x="{WIDTH - RIGHT - 4}" y="{ty - 5:.1f}" text-anchor="end">threshold {threshold:g}</text>'
    )
    if values and values[-1] > top:
        out.append(f'<text x="{LEFT + 6}" y="{TOP + 12}">values above {top:.3g} are cut off</text>')
    for lane, s in enumerate(lanes):
        y = HEIGHT + 4 + LANE * lane + LANE / 2
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{html.escape(s.name)}</text>')
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        for e in s.events:
            label = table.when(e.time) if not relative else f"{e.time:.1f} s"
            version = f" (version {e.version})" if e.version else ""
            out.append(
                _mark(
                    e.kind,
                    x_of(e.time),
                    y,
                    f"{label}: {MARKS.get(e.kind, ('', e.kind))[1]}{version}: {e.detail}",
                )
            )
    out.append("</svg>")
    return "\n".join(out)


def _legend(systems: Sequence[figures.Figures]) -> str:
    items = [
        f'<span data-series="{html.escape(s.name)}">'
        f'<i class="swatch" style="background:{_color(s.name, i)}"></i>'
        f"<b>{html.escape(s.name)}</b> {html.escape(s.label)}</span>"
        for i, s in enumerate(systems)
    ]
    items.append('<span><i class="swatch" style="background:#d62728"></i>threshold</span>')
    shown = {e.kind for s in systems for e in s.events}
    for kind, (_, label) in MARKS.items():
        if kind not in shown:
            continue
        icon = f'<svg width="12" height="12" style="border:0">{_mark(kind, 6, 6, label)}</svg>'
        items.append(f"<span>{icon}{label}</span>")
    return f'<div class="legend">{"".join(items)}</div>'


def _table(systems: Sequence[figures.Figures]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.COLUMNS)
    body = []
    for row in table.rows(systems):
        cells = [f"<td><b>{html.escape(row[0])}</b></td>"]
        cells += [f'<td class="num">{html.escape(c)}</td>' for c in row[1:]]
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render(
    systems: Sequence[figures.Figures],
    *,
    title: str,
    subtitle: str = "",
    notes: Sequence[str] = (),
    relative_time: bool = False,
) -> str:
    """The page for ``systems`` (the first one's threshold is drawn); ``notes`` are HTML-escaped lines.

    ``relative_time`` says the times are seconds since a live run started (the demo), and
    labels them so, rather than as UTC dates (a history's epoch seconds).
    """
    if not systems:
        raise ValueError("nothing to draw")
    notes_html = "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f'<body><h1>{html.escape(title)}</h1><p class="sub">{html.escape(subtitle)}</p>\n'
        f"{_chart(systems, relative=relative_time)}\n{_legend(systems)}\n{_table(systems)}\n"
        f'<div class="notes">{notes_html}</div>\n'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
