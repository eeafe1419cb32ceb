"""Shared look of every figure: Agg-only figures, one colour and marker per strategy, saving PNG (SVG on request).

Figures are built with matplotlib.figure.Figure and the Agg canvas, never pyplot, so plotting neither needs a
display nor touches the caller's pyplot state, and figures are freed when they go out of scope.
A strategy has one colour in every figure of every study: the colour is keyed by its name (a fixed table for
the built-in strategies and chains, a stable hash of the name for any other), never by its position in a
study. Red is kept for crashes and grey for "no difference", so no strategy gets either. Figures are drawn at
100 dpi and at most 16 inches (1600 px) wide.
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from balloonsim.analysis.labels import level_text, wrap  # noqa: F401  (figures spell levels like the text)

FORMATS = ("png", "svg")
DPI = 100
MAX_WIDTH_IN = 16.0
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
    "axes.formatter.useoffset": False,  # "+5.01e6" above an axis is missed by readers: ticks show the values
    "svg.hashsalt": "balloonsim",  # stable SVG ids: same data, same bytes
    "figure.constrained_layout.use": True,
    "figure.constrained_layout.w_pad": 0.1,  # inches: room for text the layout measures a hair narrower
}
# zlib's fastest level: a third of the encoding time for files about 6 % larger; the pixels are the same at any level
PNG = {"compress_level": 1}
STRATEGY_COLOURS = {
    "kmalloc": "#1f77b4",
    "altmap": "#ff7f0e",
    "subrange-hint": "#2ca02c",
    "altmap-range": "#9467bd",
    "node-pool": "#8c564b",
    "altmap,kmalloc": "#e377c2",
    "altmap-range,kmalloc": "#bcbd22",
    "subrange-hint,kmalloc": "#17becf",
}
# Colours for strategies the table does not know (what-if variants, other chains), chosen by a hash of the name.
EXTRA = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1")
# Levels of a factor other than the strategy, by position (no red, no grey).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h")
STRATEGY_FACTOR = "memmap.strategy"
CRASH = "#d62728"


@contextmanager
def style():
    with mpl.rc_context(STYLE):
        yield


def figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, outdir: Path, stem: str, svg: bool = False) -> Path:
    """Write stem.png (and stem.svg when asked); returns the PNG path."""
    outdir.mkdir(parents=True, exist_ok=True)
    width = fig.get_figwidth()
    if width > MAX_WIDTH_IN:  # a figure that grew with its labels is scaled down, never cut
        fig.set_size_inches(MAX_WIDTH_IN, fig.get_figheight() * MAX_WIDTH_IN / width)
    # savefig draws a laid-out figure twice (once unseen, for the layout). Laid out here, at the figure's own
    # dpi (that of the PNG), then printed with the layout fixed, it is drawn once, to the same pixels.
    engine = fig.get_layout_engine()
    if engine is not None and fig.dpi == DPI:
        engine.execute(fig)
        fig.set_layout_engine("none")
        fig.canvas.print_png(outdir / f"{stem}.png", metadata={"Software": None}, pil_kwargs=PNG)
        fig.set_layout_engine(engine)
    else:
        fig.savefig(outdir / f"{stem}.png", dpi=DPI, metadata={"Software": None}, pil_kwargs=PNG)
    if svg:
        fig.savefig(outdir / f"{stem}.svg", dpi=DPI, metadata={"Date": None})
    return outdir / f"{stem}.png"


def colour_of(level: str, factor: str | None = STRATEGY_FACTOR) -> str:
    """A strategy's colour in every figure of every study."""
    name = str(level)
    if name in STRATEGY_COLOURS:
        return STRATEGY_COLOURS[name]
    return EXTRA[zlib.crc32(name.encode()) % len(EXTRA)]


def colours(levels: list, factor: str | None = STRATEGY_FACTOR) -> dict[str, str]:
    """Level label -> colour: by name for strategies, by position for any other factor."""
    if factor == STRATEGY_FACTOR:
        return {str(level): colour_of(str(level)) for level in levels}
    return {str(level): PALETTE[i % len(PALETTE)] for i, level in enumerate(levels)}


def markers(levels: list, factor: str | None = STRATEGY_FACTOR) -> dict[str, str]:
    if factor == STRATEGY_FACTOR:
        names = list(STRATEGY_COLOURS)
        return {
            str(level): MARKERS[
                (names.index(str(level)) if str(level) in names else zlib.crc32(str(level).encode())) % len(MARKERS)
            ]
            for level in levels
        }
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
