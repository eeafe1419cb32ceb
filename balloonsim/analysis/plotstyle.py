"""Shared look of every figure: Agg-only figures, one colour and marker per strategy, saving PNG and SVG.

Figures are built with matplotlib.figure.Figure and the Agg canvas, never pyplot, so plotting neither needs a
display nor touches the caller's pyplot state, and figures are freed when they go out of scope.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from balloonsim.analysis.labels import level_text, wrap  # noqa: F401  (figures spell levels like the text)

FORMATS = ("png", "svg")
STYLE = {
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "balloonsim",  # stable SVG ids: same data, same bytes
    "figure.constrained_layout.use": True,
}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h")


@contextmanager
def style():
    with mpl.rc_context(STYLE):
        yield


def figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, outdir: Path, stem: str) -> Path:
    """Write stem.png and stem.svg; returns the PNG path."""
    outdir.mkdir(parents=True, exist_ok=True)
    for ext in FORMATS:
        meta = {"Date": None} if ext == "svg" else {"Software": None}
        fig.savefig(outdir / f"{stem}.{ext}", dpi=130, metadata=meta)
    return outdir / f"{stem}.png"


def colours(levels: list) -> dict[str, str]:
    """Strategy -> colour, by level order, so a strategy has one colour in every figure."""
    return {str(level): PALETTE[i % len(PALETTE)] for i, level in enumerate(levels)}


def markers(levels: list) -> dict[str, str]:
    return {str(level): MARKERS[i % len(MARKERS)] for i, level in enumerate(levels)}


def pale(colour: str, amount: float = 0.65) -> tuple[float, float, float]:
    """The colour mixed with white: for results that are not significant."""
    r, g, b = to_rgb(colour)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def text_colour(rgb: tuple[float, float, float]) -> str:
    """Black or white, whichever reads better on this background."""
    r, g, b = rgb[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"


TIME_WORDS = ("delay", "duration", "interval", "timeout", "latency", "period")


def factor_label(factor: str) -> str:
    """Axis label for a factor, with its unit when the name says it (`_s`, delays and durations: seconds)."""
    last = factor.rsplit(".", 1)[-1]
    if last.endswith("_s") or any(word in last for word in TIME_WORDS):
        return f"{factor} (s)"
    if factor.endswith("_fraction"):
        return f"{factor} (fraction)"
    return factor


def safe_stem(text: str) -> str:
    """A file name piece from a factor or metric name."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-")
