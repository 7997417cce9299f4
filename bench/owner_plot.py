"""The owner benchmark's pictures (PNG, matplotlib from Debian's python3-matplotlib).

- one per contender, a row per round: the owner's and the pilots' CPU (cores) and the pilots
  running / frozen on one time axis, the trace's steps shaded behind, so what a contender did
  when the owner came back can be seen, not only averaged;
- one scatter of harvest against the owner's slowdown with every contender on it: the frontier
  issue 12 asks the defaults to be chosen from.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.owner_figures import BASELINE, Summary, binned, census_series
from bench.owner_model import Segment
from bench.owner_report import AIM_CPU, AIM_HARVEST, CPU_LABELS
from bench.owner_trace import Trace

BIN = 0.25  # seconds per point of the CPU lines
SHADE = {
    "burst": "#f4cccc",
    "spike": "#f9cb9c",
    "half": "#fff2cc",
    "hog": "#d9d2e9",
    "latency": "#d0e0e3",
}
FRONTIER = "owner-frontier.png"


def plot_name(contender: str) -> str:
    return f"owner-{contender}.png"


def _pyplot() -> Any:
    import matplotlib  # type: ignore[import-untyped,import-not-found,unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return plt


def _timeline(plt: Any, path: Path, segs: list[Segment], trace: Trace, ncpus: int) -> None:
    fig, axes = plt.subplots(len(segs), 1, figsize=(11, 2.6 * len(segs)), squeeze=False)
    for ax, seg in zip(axes[:, 0], segs, strict=True):
        for step in trace.steps:
            if step.kind in SHADE:
                ax.axvspan(step.start, step.end, color=SHADE[step.kind], lw=0)
                if step.kind != "spike":
                    label = {"half": "half load", "hog": "memory hog"}.get(step.kind, step.workload)
                    ax.text(step.start, ncpus * 1.03, label, fontsize=7, va="bottom", ha="left")
        lines = binned(seg.fast, seg.t0, seg.t1, BIN)
        xs = [x for x, _, _ in lines]
        ax.plot(xs, [o for _, o, _ in lines], color="#cc0000", lw=1.2, label="owner CPU")
        ax.plot(xs, [p for _, _, p in lines], color="#3c78d8", lw=1.2, label="pilots' CPU")
        ax.set_ylim(0, ncpus * 1.2)
        ax.set_xlim(0, trace.seconds)
        ax.set_ylabel("cores")
        ax.set_title(f"{seg.contender}, round {seg.round + 1}", fontsize=9, loc="left")
        census = [c for c in census_series(seg.slow, seg.t0) if 0 <= c[0] <= trace.seconds]
        twin = ax.twinx()
        twin.step(
            [c[0] for c in census], [c[1] for c in census], where="post", color="#38761d",
            lw=1, label="pilots running",
        )  # fmt: skip
        twin.step(
            [c[0] for c in census], [c[2] for c in census], where="post", color="#7f6000",
            lw=1, ls="--", label="pilots frozen",
        )  # fmt: skip
        top = max([c[1] + c[2] for c in census] + [ncpus])
        twin.set_ylim(0, top * 1.2)
        twin.yaxis.get_major_locator().set_params(integer=True)
        twin.set_ylabel("pilots")
        if seg is segs[0]:
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = twin.get_legend_handles_labels()
            ax.legend(
                h1 + h2, l1 + l2, fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.12), ncol=4
            )
    axes[-1, 0].set_xlabel("seconds into the owner's trace")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _frontier(plt: Any, path: Path, summaries: dict[str, Summary]) -> None:
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, s in summaries.items():
        if name == BASELINE:
            continue
        h, y = s.median_harvest(), s.cpu_slowdown(CPU_LABELS)
        if math.isnan(h) or math.isnan(y):
            continue
        colour = "#cc0000" if name.startswith("planctond") else "#666666"
        ax.scatter([h * 100], [y], color=colour, zorder=3)
        ax.annotate(name, (h * 100, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axvline(AIM_HARVEST * 100, color="#999999", ls=":", lw=1)
    ax.axhline(AIM_CPU, color="#999999", ls=":", lw=1)
    ax.axhline(1.0, color="#cccccc", lw=0.8)
    ax.set_xlabel("harvest: pilots' CPU / idle CPU of the baseline (%)")
    ax.set_ylabel("owner slowdown (geometric mean: " + ", ".join(CPU_LABELS) + ")")
    ax.set_title("harvest against owner slowdown (aims dotted; better: right and low)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_plots(
    out: Path, segments: list[Segment], summaries: dict[str, Summary], trace: Trace, ncpus: int
) -> list[str]:
    """Write the PNGs into `out`; returns their file names, in the report's order."""
    plt = _pyplot()
    names: list[str] = []
    order: list[str] = []
    for seg in segments:
        if seg.contender not in order:
            order.append(seg.contender)
    for contender in order:
        segs = sorted((s for s in segments if s.contender == contender), key=lambda s: s.round)
        name = plot_name(contender)
        _timeline(plt, out / name, segs, trace, ncpus)
        names.append(name)
    _frontier(plt, out / FRONTIER, summaries)
    return [FRONTIER, *names]
