"""The metric-against-a-factor figure: axes that say what the levels are, and marks that cannot be misread.

Asserted on the matplotlib objects the figure is drawn from (captured at save), not on pixels.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from analysis_synth import write_results

from balloonsim.analysis import plot_factor
from balloonsim.analysis.load import load
from balloonsim.analysis.metrics import axis_label
from balloonsim.analysis.plot_factor import choose_facet, factor_figure, hidden_by_pooling, x_positions
from balloonsim.analysis.plot_memmap import memmap_figure

GiB = 1 << 30
MiB = 1 << 20


@pytest.fixture
def drawn(monkeypatch):
    """Every figure factor_figure saves, kept open for inspection."""
    figures = []
    real = plot_factor.ps.save

    def keep(fig, outdir, stem, svg=False):
        figures.append(fig)
        return real(fig, outdir, stem, svg)

    monkeypatch.setattr(plot_factor.ps, "save", keep)
    return figures


def _results(tmp_path, x: str, levels: list, metric: str = "oom_kills", values=None, extra: dict | None = None):
    """Two strategies x the levels of `x` x 4 replicates; the metric is `values(strategy, level, rep)`, each
    `extra` metric `extra[m](strategy, level, rep)`."""
    rng = np.random.default_rng(3)
    values = values or (lambda s, lv, rep: float(rng.poisson(3 + (s == "kmalloc"))))
    rows = []
    for strategy in ("kmalloc", "altmap"):
        for lv in levels:
            for rep in range(4):
                row = {"memmap.strategy": strategy, x: lv, "replicate": rep, metric: values(strategy, lv, rep)}
                for key, fn in (extra or {}).items():
                    row[key] = fn(strategy, lv, rep)
                rows.append(row)
    factors = ["memmap.strategy", x]
    metrics = [metric, *(extra or {})]
    root = write_results(tmp_path / "r", pd.DataFrame(rows), factors, metrics)
    return load(root)


def _joined_lines(ax) -> list:
    """Lines that join two or more points (what reads as a continuum)."""
    return [ln for ln in ax.lines if ln.get_linestyle() not in ("None", "none", "") and len(ln.get_xdata()) > 1]


def test_a_two_level_factor_is_two_categories_never_a_sloped_line(tmp_path, drawn):
    results = _results(tmp_path, "guest.swap", [0, 2 * GiB])
    pos, ticks, numeric = x_positions(results, "guest.swap")
    assert not numeric and sorted(pos.values()) == [0.0, 1.0] and ticks == ["0", "2G"]
    assert factor_figure(results, "memmap.strategy", "oom_kills", "guest.swap", tmp_path / "plots") is not None
    ax = drawn[-1].axes[0]
    assert _joined_lines(ax) == []
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "2G"]


def test_unevenly_spread_sizes_are_evenly_spaced_categories(tmp_path):
    # gigantic's guest.block_size: 128M and 256M crowded at the left of a linear axis reaching 2G
    results = _results(tmp_path, "guest.block_size", [128 * MiB, 256 * MiB, 2 * GiB])
    pos, ticks, numeric = x_positions(results, "guest.block_size")
    assert not numeric and [pos[lv] for lv in results.levels("guest.block_size")] == [0.0, 1.0, 2.0]
    assert ticks == ["128M", "256M", "2G"]


def test_many_evenly_spread_levels_keep_a_linear_axis(tmp_path):
    results = _results(tmp_path, "onlining.delay_s", [0, 5, 10, 15, 20, 25, 30, 40])
    pos, _, numeric = x_positions(results, "onlining.delay_s")
    assert numeric and pos[40] == 40.0
    uneven = _results(tmp_path / "u", "onlining.delay_s", [0, 1, 2, 3, 4, 5, 6, 60])
    assert not x_positions(uneven, "onlining.delay_s")[2]


def test_no_survivor_marks_sit_on_the_x_axis_not_among_the_values(tmp_path, drawn):
    # partial-backing: usable bytes of 5-6G, an axis that starts far above 0, and a point whose guests all died
    def usable(s, lv, rep):
        return float(5 * GiB + rep * 100 * MiB + (lv > 0) * 512 * MiB)

    def crashed(s, lv, rep):
        return s == "altmap" and lv == 2

    results = _results(
        tmp_path, "onlining.delay_s", [0, 1, 2], "usable_bytes_added", usable, {"guest_crashed": crashed}
    )
    out = factor_figure(results, "memmap.strategy", "usable_bytes_added", "onlining.delay_s", tmp_path / "plots")
    assert out is not None and "no surviving run" in " ".join(t.get_text() for t in drawn[-1].legends[0].texts)
    ax = drawn[-1].axes[0]
    assert ax.get_ylim()[0] > 0  # the axis does not start at 0: 3 % up it is a value
    marks = [ln for ln in ax.lines if ln.get_marker() == "x"]
    assert len(marks) == 1
    mark = marks[0]
    assert mark.get_transform() == ax.get_xaxis_transform() and list(mark.get_ydata()) == [0.0]
    assert not mark.get_clip_on()  # drawn across the axis line, outside the plotting area's values


def _bar_ends(ax) -> list[float]:
    """The y ends of every error bar drawn."""
    return [y for coll in ax.collections for seg in coll.get_segments() for _, y in seg]


def test_a_fractions_interval_stays_within_0_and_1(tmp_path, drawn):
    # hot-remove: a share of removable blocks near 1 with one low run; its t-interval reaches past 1
    def share(s, lv, rep):
        return 0.4 if rep == 0 else 1.0

    results = _results(tmp_path, "onlining.delay_s", [0, 5], "blocks_removable_fraction", share)
    assert factor_figure(results, "memmap.strategy", "blocks_removable_fraction", "onlining.delay_s", tmp_path / "p")
    ends = _bar_ends(drawn[-1].axes[0])
    assert ends and max(ends) == pytest.approx(1.0) and min(ends) >= 0.0


def test_large_counts_are_scaled_in_the_label_not_by_an_offset(tmp_path, drawn):
    # hyperv-field-report: tens of millions of pages swapped out came out as "1e7" above the axis
    assert axis_label("swap_out_pages", 2.3e7) == ("pages swapped out (millions per run)", 1e6)
    assert axis_label("swap_out_pages", 45_000) == ("pages swapped out (thousands per run)", 1e3)
    assert axis_label("swap_out_pages", 900) == ("pages swapped out (per run)", 1.0)

    def pages(s, lv, rep):
        return 5.0e7 + rep * 1e4 + (s == "kmalloc") * 2e4

    results = _results(tmp_path, "onlining.delay_s", [0, 5], "swap_out_pages", pages)
    assert factor_figure(results, "memmap.strategy", "swap_out_pages", "onlining.delay_s", tmp_path / "p")
    ax = drawn[-1].axes[0]
    assert "millions" in ax.get_ylabel()
    assert ax.yaxis.get_offset_text().get_text() == ""
    assert all("e" not in t.get_text() for t in ax.get_yticklabels())


def _numa(tmp_path, sizes=(1,)):
    """numa's shape: the remote memmap is all in driver.node (node 2 has no memory: everything remote)."""
    rows = []
    for strategy, node, movable, size, rep in itertools.product(
        ("kmalloc", "altmap"), (0, 1, 2), (False, True), sizes, range(3)
    ):
        remote = (node == 2) * (strategy == "kmalloc") * 32 * MiB * size
        rows.append(
            {
                "memmap.strategy": strategy,
                "driver.node": node,
                "guest.movable_node": movable,
                "workload.size": size * GiB,
                "replicate": rep,
                "memmap_bytes_kmalloc": float((strategy == "kmalloc") * 32 * MiB * size),
                "memmap_bytes_remote": float(remote),
                "memmap_bytes_in_range": float((strategy == "altmap") * 32 * MiB * size),
            }
        )
    factors = ["memmap.strategy", "driver.node", "guest.movable_node"] + (["workload.size"] if len(sizes) > 1 else [])
    metrics = ["memmap_bytes_kmalloc", "memmap_bytes_remote", "memmap_bytes_in_range"]
    return load(write_results(tmp_path / "numa", pd.DataFrame(rows), factors, metrics))


def test_the_facet_is_the_factor_the_finding_lives_in(tmp_path):
    results = _numa(tmp_path)
    # fewest levels would be movable_node (2), which does not move the memmap: driver.node does
    assert choose_facet(results, "memmap.strategy", None, ["memmap_bytes_remote"]) == "driver.node"
    assert choose_facet(results, "memmap.strategy", None) == "guest.movable_node"  # no metric: fewest levels
    out = memmap_figure(results, "memmap.strategy", tmp_path / "plots")
    assert out is not None and "driver.node" not in out[1]  # faceted, not averaged
    assert "Pooled over guest.movable_node" in out[2]


def test_a_title_says_when_it_averages_over_a_factor_that_matters(tmp_path, drawn):
    results = _numa(tmp_path, sizes=(1, 2, 4, 8, 16))  # workload.size: five levels, too many for panels
    assert hidden_by_pooling(results, ["memmap_bytes_kmalloc"], "memmap.strategy", "driver.node") == ["workload.size"]
    out = factor_figure(results, "memmap.strategy", "memmap_bytes_kmalloc", "driver.node", tmp_path / "plots")
    assert out is not None and "averaged over workload.size" in out[1]
    assert "averaged over workload.size" in drawn[-1].get_suptitle().replace("\n", " ")
