"""The fleet report's picture: each dashboard query's time at both fleet sizes, as an SVG drawn
by hand (matplotlib is not among the packages this project installs; a browser or GitHub shows
SVG as it is). Log scale, the 1 s aim drawn across."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from bench.fleet_queries import ALL_HOSTS, INFLUXDB, PROMETHEUS
from bench.fleet_servers import QUERY_LIMIT, TIMED_OUT
from bench.fleet_tables import AIM_QUERY_S, rows

if TYPE_CHECKING:
    from bench.fleet import Run

PLOT_NAME = "fleet-queries.svg"
LEFT, WIDTH, BAR, GAP = 330, 560, 6, 8
LOW, HIGH = 1e-3, 100.0  # seconds at the axis' ends
COLOURS = ("#4c78a8", "#f58518", "#b8b8b8")


def _x(seconds: float) -> float:
    clamped = min(max(seconds, LOW), HIGH)
    return LEFT + WIDTH * math.log10(clamped / LOW) / math.log10(HIGH / LOW)


def write_plot(path: Path, run: Run) -> None:
    a = run.args
    legend = (
        f"{a.small} hosts, {a.hours:g} h",
        f"{a.large} hosts, last {a.large_hours:g} h",
        f"{a.large} hosts, {a.hours:g} h" + (" (estimate)" if a.large_hours < a.hours else ""),
    )
    body: list[str] = []
    y = 60
    for kind, title in (
        (INFLUXDB, "InfluxQL (influxd 1.6)"),
        (PROMETHEUS, "PromQL (VictoriaMetrics)"),
    ):
        table = rows(run, kind)
        if not table:
            continue
        body.append(f'<text x="10" y="{y + 12}" font-weight="bold">{escape(title)}</text>')
        y += 22
        for r in table:
            name = r.label if r.hosts == ALL_HOSTS else f"{r.label} [one host]"
            body.append(
                f'<text x="{LEFT - 6}" y="{y + 2 * BAR}" text-anchor="end">{escape(name[:52])}</text>'
            )
            timed_out = [
                t is not None and t.error == TIMED_OUT for t in (r.small_day, r.large_recent)
            ]
            values = (
                r.small_day.median if r.small_day else None,
                r.large_recent.median if r.large_recent else None,
                QUERY_LIMIT if any(timed_out) else r.estimate,
            )
            for i, value in enumerate(values):
                if value is None:
                    continue
                end = _x(value)
                late = any(timed_out) if i == 2 else timed_out[i]
                tip = f"over {value:g} s: timeout" if late else f"{value:.3f} s"
                body.append(
                    f'<rect x="{LEFT}" y="{y + i * BAR}" width="{end - LEFT:.1f}" '
                    f'height="{BAR - 1}" fill="{COLOURS[i]}"><title>{tip}</title></rect>'
                )
                if late:
                    body.append(f'<text x="{end + 3:.1f}" y="{y + i * BAR + BAR - 1}">&gt;</text>')
            y += 3 * BAR + GAP
        y += 10
    height = y + 40
    axis = [f'<line x1="{LEFT}" y1="50" x2="{LEFT}" y2="{y}" stroke="#333"/>']
    for exp in range(-3, 3):
        value = 10.0**exp
        x = _x(value)
        label = f"{value:g} s"
        axis.append(f'<line x1="{x:.1f}" y1="50" x2="{x:.1f}" y2="{y}" stroke="#ddd"/>')
        axis.append(f'<text x="{x:.1f}" y="{y + 16}" text-anchor="middle">{label}</text>')
    aim = _x(AIM_QUERY_S)
    axis.append(
        f'<line x1="{aim:.1f}" y1="50" x2="{aim:.1f}" y2="{y}" stroke="#d62728" '
        'stroke-dasharray="4 3"/>'
    )
    keys = []
    for i, text in enumerate(legend):
        x = 10 + i * 290
        keys.append(f'<rect x="{x}" y="14" width="12" height="12" fill="{COLOURS[i]}"/>')
        keys.append(f'<text x="{x + 18}" y="25">{escape(text)}</text>')
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{LEFT + WIDTH + 30}" '
        f'height="{height}" font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
        *keys,
        f'<text x="10" y="44">Median time per dashboard query, seconds (log scale); '
        f"dashed: the {AIM_QUERY_S:g} s aim</text>",
        *axis,
        *body,
        "</svg>",
    ]
    path.write_text("\n".join(svg) + "\n")
