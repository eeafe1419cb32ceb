"""Where the memmap lives, per strategy: stacked bars of kmalloc'd (local, remote) and in-range memmap.

Every memmap byte is either kmalloc'd or carved from the added range, so those segments stack to the total.
The memmap spent on never-backed memory is part of that total, so it is drawn as a hatched overlay from the
bottom of the bar rather than stacked on top (stacking it would count it twice).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from balloonsim.analysis import plotstyle as ps
from balloonsim.analysis.metrics import byte_scale, fmt
from balloonsim.analysis.plot_factor import choose_facet, hidden_by_pooling

COLUMNS = ("memmap_bytes_kmalloc", "memmap_bytes_remote", "memmap_bytes_in_range", "memmap_bytes_unbacked")
# Placement colours borrow the strategy whose definition the placement is (kmalloc's blue, altmap's orange), so a
# colour means one thing across figures; the remote share is kmalloc's blue, paler and cross-hatched.
SEGMENTS = (
    ("kmalloc, local node", ps.colour_of("kmalloc"), ""),
    ("kmalloc, remote node", ps.pale(ps.colour_of("kmalloc"), 0.55), "xx"),
    ("in the added range", ps.colour_of("altmap"), ""),
)


def placement(part: pd.DataFrame) -> dict[str, float]:
    """Mean bytes per run of each segment; absent columns count as zero."""
    mean = {c: float(part[c].mean()) if c in part and part[c].notna().any() else 0.0 for c in COLUMNS}
    remote = mean["memmap_bytes_remote"]
    return {
        "kmalloc, local node": max(mean["memmap_bytes_kmalloc"] - remote, 0.0),
        "kmalloc, remote node": remote,
        "in the added range": mean["memmap_bytes_in_range"],
        "unbacked": mean["memmap_bytes_unbacked"],
    }


def memmap_figure(results, by: str | None, outdir: Path, svg: bool = False) -> tuple[Path, str, str] | None:
    """None when the runs carry no memmap columns or every value is zero."""
    runs = results.runs
    present = [c for c in COLUMNS if c in runs]
    if not present or not (runs[present].fillna(0).to_numpy() != 0).any():
        return None
    strategies = results.levels(by) if by else [None]
    facet = choose_facet(results, by, None, present) if by else None
    facet_levels = results.levels(facet) if facet else [None]
    data = {}
    for fl in facet_levels:
        part = runs if facet is None else runs[runs[facet] == fl]
        for s in strategies:
            cell = part if s is None else part[part[by] == s]
            alive = cell[results.alive.loc[cell.index]]
            if not alive.empty:  # a dead guest's memmap stops where it died: survivors only
                data[(fl, s)] = placement(alive)
    if not data:
        return None
    peak = max(sum(v for k, v in d.items() if k != "unbacked") for d in data.values()) or 1.0
    scale, unit = byte_scale(peak)
    labels = ["all runs" if s is None else ps.wrap(ps.level_text(by, s), 12) for s in strategies]
    with ps.style():
        width = max(5.5, 1.2 + len(facet_levels) * (0.9 * len(strategies) + 1.2))
        fig = ps.figure(width, 4.4)
        axes = fig.subplots(1, len(facet_levels), sharey=True, squeeze=False)[0]
        for ax, fl in zip(axes, facet_levels, strict=True):
            x = np.arange(len(strategies))
            bottom = np.zeros(len(strategies))
            for name, colour, hatch in SEGMENTS:
                heights = np.array([data.get((fl, s), {}).get(name, 0.0) for s in strategies]) / scale
                ax.bar(x, heights, bottom=bottom, color=colour, hatch=hatch, edgecolor="white", width=0.65, label=name)
                bottom += heights
            unbacked = np.array([data.get((fl, s), {}).get("unbacked", 0.0) for s in strategies]) / scale
            ax.bar(
                x,
                np.minimum(unbacked, bottom),
                fill=False,
                hatch="///",
                edgecolor="#333333",
                width=0.65,
                linewidth=0.8,
                label="of which for never-backed memory",
            )
            for xi, total, s in zip(x, bottom, strategies, strict=True):
                ax.annotate(
                    fmt("memmap_bytes_kmalloc", total * scale) if (fl, s) in data else "† no survivors",
                    (xi, total),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8,
                )
            widest = max(len(line) for s in labels for line in s.split("\n"))
            ax.set_xticks(x, labels, rotation=20 if widest > 9 else 0)
            ax.set_xlabel(by or "")
            ax.grid(axis="x", visible=False)
            if facet is not None:
                ax.set_title(ps.wrap(f"{facet} = {ps.level_text(facet, fl)}", 36))
            ax.set_ylim(0, peak / scale * 1.15)  # room for the totals above the bars
        axes[0].set_ylabel(f"memmap per run ({unit})")
        handles = [Patch(facecolor=c, hatch=h, edgecolor="white", label=n) for n, c, h in SEGMENTS]
        handles.append(Patch(fill=False, hatch="///", edgecolor="#333333", label="of which for never-backed memory"))
        # four entries fit one row only on a wide figure; otherwise two rows, never clipped at the edges
        fig.legend(handles=handles, loc="outside lower center", ncols=4 if width >= 10 else 2, frameon=False)
        title = "Where the memmap of hot-added memory lives"
        hidden = hidden_by_pooling(results, present, by, facet)
        if hidden:
            title += f", averaged over {', '.join(hidden)} (whose levels differ)"
        fig.suptitle(ps.wrap(title, int(width * 9)), fontweight="bold")
        png = ps.save(fig, outdir, "memmap_placement", svg)
    pooled = results.other_factors(by, facet)
    caption = (
        "Mean memmap bytes per run by placement: kmalloc'd from online memory on the local or a remote node, "
        "or carved from the added range itself; the hatched part describes memory the driver never backed."
    )
    caption += f" Pooled over {', '.join(pooled)}." if pooled else ""
    if not results.alive.all():
        caption += f" Surviving runs only: {int(results.alive.sum())} of {len(results.runs)}."
    return png, title, caption
