"""Figures: PNG (SVG on request), at most 1600 px wide, chosen from what the data has, skipped when it has not,
drawn once: `report` reuses current figures."""

from __future__ import annotations

import json
import os
import struct

import pytest
from analysis_synth import planted, realistic

from balloonsim.analysis import plot, report
from balloonsim.analysis.pipeline import analyze
from balloonsim.analysis.plot_timeline import timeline_figure
from balloonsim.analysis.timeline import choose_regime
from balloonsim.errors import UserError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_width(png) -> int:
    return struct.unpack(">I", png.read_bytes()[16:20])[0]


def _check_pair(png, svg: bool = False):
    """A real PNG no wider than 1600 px; its SVG exactly when asked for."""
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    assert _png_width(png) <= 1600
    assert png.with_suffix(".svg").is_file() == svg
    if svg:
        assert b"<svg" in png.with_suffix(".svg").read_bytes()[:2000]


def test_full_set_of_figures(finished_dir):
    index = json.loads((finished_dir / "plots" / "index.json").read_text())["figures"]
    kinds = {entry["kind"] for entry in index}
    assert kinds == {"lines", "policy", "timeline", "memmap"}
    for entry in index:
        _check_pair(finished_dir / "plots" / entry["file"])
        assert entry["title"] and entry["caption"]
    files = {entry["file"] for entry in index}
    # driver.name has two text levels: a facet, never an x axis; guest.block_size has one level: no axis.
    assert "metric_oom_kills_vs_onlining-delay_s.png" in files
    assert not any("vs_driver" in f or "block_size" in f for f in files)
    assert "policy_guest_crashed_driver-name_x_onlining-delay_s.png" in files  # the primary metric's map


def test_timeline_without_events_and_with_parquet_parts(tmp_path):
    root = realistic(tmp_path / "noevents", seeds=3, with_events=False, ts_as_directory=True)
    analysis = analyze(root)
    assert analysis.results.events(["x"]) is None
    out = timeline_figure(analysis, "oom_kills", choose_regime(analysis, "oom_kills"), root / "plots")
    assert out is not None
    png, title, caption = out
    _check_pair(png)
    assert "no events file" in caption and title.startswith("Representative runs")


def test_missing_metrics_and_time_series_are_skipped(tmp_path):
    root = planted(tmp_path / "bare")  # no memmap columns, no time series
    made = plot(root)
    names = {p.name for p in made}
    assert "memmap_placement.png" not in names and "timeline.png" not in names
    assert "policy_overview.png" in names  # one regime, still a best-per-metric overview
    for png in made:
        _check_pair(png)


def test_metric_and_regime_options(realistic_dir):
    made = plot(realistic_dir, metrics=["stall_fraction"], regime="driver.name=xen, onlining.delay_s=5")
    names = {p.name for p in made}
    assert "metric_stall_fraction_vs_onlining-delay_s.png" in names
    assert not any("oom_kills" in n for n in names)
    assert "timeline.png" in names
    index = json.loads((realistic_dir / "plots" / "index.json").read_text())["figures"]
    timeline = next(e for e in index if e["kind"] == "timeline")
    assert "driver.name=xen, onlining.delay_s=5" in timeline["title"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": ["nonsense"]}, "--metric nonsense: not a metric"),
        ({"regime": "ghost=1"}, "'ghost' is not a factor"),
        ({"regime": "driver.name=xen"}, "matches 4 regimes; also give a value for: onlining.delay_s"),
        ({"regime": "driver.name=solaris,onlining.delay_s=5"}, "no successful run matches"),
        ({"regime": "driver.name"}, "is not FACTOR=VALUE"),
    ],
)
def test_bad_options_are_user_errors(finished_dir, kwargs, message):
    before = sorted(p.name for p in (finished_dir / "plots").iterdir())
    with pytest.raises(UserError, match=message):
        plot(finished_dir, **kwargs)
    assert sorted(p.name for p in (finished_dir / "plots").iterdir()) == before  # nothing touched


def test_rerun_removes_only_its_own_old_files(tmp_path):
    root = planted(tmp_path / "rerun")
    plots = root / "plots"
    plots.mkdir()
    keep = plots / "mine.txt"
    keep.write_text("user file")
    plot(root, by="memmap.strategy")
    (plots / "index.json").write_text('[{"file": "old_figure.png", "kind": "lines", "title": "", "caption": ""}]')
    (plots / "old_figure.png").write_bytes(b"stale")
    (plots / "old_figure.svg").write_bytes(b"stale")
    plot(root)
    assert keep.is_file()
    assert not (plots / "old_figure.png").exists() and not (plots / "old_figure.svg").exists()
    assert (plots / "policy_overview.png").is_file()


def test_timeline_with_parquet_events_zooms_on_hotplug(tmp_path):
    root = realistic(tmp_path / "pq", seeds=3, events_as_parquet=True)
    analysis = analyze(root)
    assert analysis.results.events(["kma-xen-0-0"])["kind"].eq("add_memory").any()
    png, _, caption = timeline_figure(analysis, "guest_crashed", "driver.name=xen, onlining.delay_s=10", root)
    _check_pair(png)
    assert "from the events file" in caption


def test_svg_only_on_request(tmp_path):
    root = planted(tmp_path / "svg")
    for png in plot(root, svg=True):
        _check_pair(png, svg=True)


def test_report_reuses_current_figures_and_redraws_stale_ones(tmp_path):
    root = planted(tmp_path / "reuse")
    report(root)
    overview = root / "plots" / "policy_overview.png"
    drawn = overview.stat().st_mtime_ns
    report(root)
    assert overview.stat().st_mtime_ns == drawn  # current: reused, not drawn again
    report(root, redraw=True)
    assert overview.stat().st_mtime_ns > drawn
    redrawn = overview.stat().st_mtime_ns
    later = redrawn / 1e9 + 5
    os.utime(root / "runs.csv", (later, later))  # the data changed after the figures
    report(root)
    assert overview.stat().st_mtime_ns > redrawn
    again = overview.stat().st_mtime_ns
    report(root, alpha=0.01)  # other options: other figures
    assert overview.stat().st_mtime_ns > again


def test_a_strategy_has_one_colour_everywhere():
    from balloonsim.analysis.plotstyle import CRASH, colours

    one = colours(["kmalloc", "altmap", "subrange-hint"])
    two = colours(["altmap,kmalloc", "subrange-hint", "altmap", "node-pool", "kmalloc"])
    assert all(one[s] == two[s] for s in one)  # by name, not by place in the study
    assert len(set(two.values())) == len(two) and CRASH not in two.values()
    what_if = colours(["altmap-nohint"])["altmap-nohint"]
    assert what_if == colours(["kmalloc", "altmap-nohint"])["altmap-nohint"]  # an unknown name: stable too
    assert colours([0, 5, 30], "onlining.delay") == colours([0, 5, 30], "onlining.delay")


def test_memory_series_are_all_steps(tmp_path):
    """MemFree is sampled like MemTotal and drawn like it, so it can never show above it between samples."""
    import pandas as pd
    from matplotlib.figure import Figure

    from balloonsim.analysis.plot_timeline import SERIES, _memory_panel

    run = pd.DataFrame({"t": [0.0, 10.0, 20.0], "memtotal_bytes": [4, 6, 6], "memfree_bytes": [3, 5, 1]}) * 1.0
    ax = Figure().subplots()
    _memory_panel(ax, run, [s for s in SERIES if s[0] in run])
    assert [line.get_drawstyle() for line in ax.get_lines()] == ["steps-post", "steps-post"]


def test_outcomes_are_points_with_wilson_intervals(finished_dir):
    index = json.loads((finished_dir / "plots" / "index.json").read_text())["figures"]
    crash = next(e for e in index if e["file"] == "metric_guest_crashed_vs_onlining-delay_s.png")
    assert "points with 95% bars (Wilson interval)" in crash["caption"]
    oom = next(e for e in index if e["file"] == "metric_oom_kills_vs_onlining-delay_s.png")
    # four delays are four categories: points with bars, no band implying values between them
    assert "points with 95% bars (t-interval of the mean)" in oom["caption"] and "surviving of" in oom["caption"]


def _shown_timeline(samples_by_strategy, from_events=False, times=None):
    """A Timeline of hand-made runs (run id = strategy), so a test controls exactly what each panel draws."""
    import pandas as pd

    from balloonsim.analysis.timeline import Run, Timeline

    runs = []
    for name, samples in samples_by_strategy.items():
        row = pd.Series({"run_id": name, "oom_kills": 0.0})
        frame = pd.DataFrame(samples).assign(run_id=name)
        runs.append(Run(name, row, 1, 0.0, frame, dict(times or {}), None))
    return Timeline("memmap.strategy", "oom_kills", "r", runs, pd.concat([r.samples for r in runs]), from_events)


def test_timeline_shared_y_range_covers_every_panel():
    """The panels share y; the range comes from all of them, not from the first one drawn."""
    from balloonsim.analysis import plotstyle as ps
    from balloonsim.analysis.plot_timeline import SERIES, _figure
    from balloonsim.units import GiB

    t = [0.0, 10.0, 20.0]
    shown = _shown_timeline(
        {
            "kmalloc": {"t": t, "memtotal_bytes": [4 * GiB] * 3, "target_bytes": [5.2 * GiB] * 3},
            "subrange-hint": {
                "t": t,
                "memtotal_bytes": [4 * GiB] * 3,
                "target_bytes": [5.2 * GiB, 6.47 * GiB, 6.0 * GiB],
            },
        }
    )
    series = [s for s in SERIES if s[0] in shown.samples]
    with ps.style():
        fig, _ = _figure(shown, series, [], None)
    mains = [ax for ax in fig.axes if ax.get_lines()]
    assert len(mains) == 2
    for ax in mains:
        low, high = ax.get_ylim()
        assert low == 0 and high >= 6.47


@pytest.mark.parametrize("from_events", [False, True])
def test_timeline_strip_says_when_failures_cannot_be_marked(from_events):
    """Without an events file the strips come from counters, which hold no failed hot-adds: the figure says so
    once, above the panels, not over the marks."""
    import numpy as np

    from balloonsim.analysis import plotstyle as ps
    from balloonsim.analysis.plot_timeline import EVENT_ROWS, NO_EVENTS_NOTE, SERIES, _figure
    from balloonsim.units import GiB

    samples = {"t": [0.0, 10.0], "memtotal_bytes": [4 * GiB] * 2, "blocks_added": [0, 1]}
    shown = _shown_timeline({"kmalloc": samples}, from_events, times={"add_memory ok": np.array([10.0])})
    with ps.style():
        fig, _ = _figure(shown, [s for s in SERIES if s[0] in samples], [EVENT_ROWS[1]], None)
    notes = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert NO_EVENTS_NOTE not in notes  # not over the strips, where it would hide marks
    assert (fig.legends[0].get_title().get_text() == NO_EVENTS_NOTE) == (not from_events)
    assert "failed hot-adds" in NO_EVENTS_NOTE


def test_timeline_strips_mark_each_event_in_its_row_and_name_the_rows_once():
    """Each event is a marker at its time in its kind's row; the rows are named beside the zoomed strip, and the
    whole-run strip beside it has no row ticks at all (they would draw nothing there)."""
    import numpy as np

    from balloonsim.analysis import plotstyle as ps
    from balloonsim.analysis.plot_timeline import EVENT_ROWS, SERIES, _figure
    from balloonsim.units import GiB

    t = np.arange(0.0, 4000.0, 10.0)
    samples = {"t": t, "memtotal_bytes": np.full(len(t), 4 * GiB)}
    times = {"add_memory ok": np.array([100.0, 130.0]), "online": np.array([140.0])}
    rows = [EVENT_ROWS[1], EVENT_ROWS[4]]
    shown = _shown_timeline({"kmalloc": samples}, True, times=times)
    with ps.style():
        fig, _ = _figure(shown, [s for s in SERIES if s[0] in samples], rows, (50.0, 200.0))
    strips = [ax for ax in fig.axes if ax.collections and not ax.get_lines()]
    assert len(strips) == 2  # the zoomed window and the whole run
    for strip in strips:
        marks = sorted((float(x), float(y)) for c in strip.collections for x, y in c.get_offsets())
        assert marks == [(100.0, 0.0), (130.0, 0.0), (140.0, 1.0)]
    zoomed, whole = strips
    assert [label.get_text() for label in zoomed.get_yticklabels()] == ["add_memory ok", "online"]
    assert list(zoomed.get_yticks()) == [0, 1]
    assert len(whole.get_yticks()) == 0
    assert zoomed.get_ylim() == whole.get_ylim() == (1.7, -0.7)  # row 0 on top


def test_policy_cell_text_reads_on_every_stripe_under_it():
    """Stripes of a light and a dark colour under one text: black on a light box, never black on dark green."""
    from matplotlib.figure import Figure

    from balloonsim.analysis.best import Verdict
    from balloonsim.analysis.plot_policy import _label_style, _paint
    from balloonsim.analysis.plotstyle import colours, text_colour

    colour = colours(["altmap", "subrange-hint", "kmalloc"])
    ax = Figure().subplots()
    tied = Verdict(["altmap", "subrange-hint"], "kmalloc", 5.0, 1.0, True, False, [])
    under = _paint(ax, tied, 0, 0, {**colour, "altmap": "#ffe0b0"})  # a light stripe beside dark green
    assert {text_colour(rgb) for rgb in under} == {"black", "white"}
    style = _label_style(under)
    assert style["color"] == "black" and style["bbox"]["facecolor"] == "white"
    dark = Verdict(["subrange-hint"], "kmalloc", 5.0, 1.0, True, False, [])
    assert _label_style(_paint(ax, dark, 0, 1, colour)) == {"color": "white"}  # dark green alone: white text


def test_policy_legend_names_the_colour_of_its_pale_swatch(finished_dir, tmp_path, monkeypatch):
    """The 'pale: small margin' swatch has one level's colour; the legend says whose, not a bare 'pale'."""
    from balloonsim.analysis import plot_policy

    analysis = analyze(finished_dir)
    seen = {}
    real_save = plot_policy.ps.save

    def keep(fig, *args, **kwargs):
        seen["labels"] = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
        return real_save(fig, *args, **kwargs)

    monkeypatch.setattr(plot_policy.ps, "save", keep)
    plot_policy.overview_map(analysis, ["oom_kills"], tmp_path)
    first = plot_policy.ps.level_text(analysis.by, analysis.results.levels(analysis.by)[0])
    assert f"pale (here {first}): small margin" in seen["labels"]


def test_a_level_tied_with_the_best_is_not_said_to_beat_the_worst():
    """hot-remove, hyperv/online: subrange-hint beats node-pool, kmalloc is tied with subrange-hint but does not
    beat node-pool itself; the cell names only the levels that beat the worst (the stripes still show the tie)."""
    import numpy as np

    from balloonsim.analysis.best import dominance
    from balloonsim.analysis.plot_policy import _cell_text

    pairs = {frozenset(("subrange-hint", "node-pool")): True}
    verdict = dominance(
        {
            "subrange-hint": np.array([0.93, 0.94, 0.95]),
            "kmalloc": np.array([0.90, 0.92, 0.93]),
            "node-pool": np.array([0.89, 0.90, 0.91]),
        },
        "blocks_removable_fraction",
        0.05,
        significance=lambda a, b: pairs.get(frozenset((a, b)), False),
    )
    assert verdict.top == ["subrange-hint", "kmalloc"] and verdict.winners == ["subrange-hint"]
    text = _cell_text(verdict, "blocks_removable_fraction")
    assert text.startswith("subrange-hint\nbeats node-pool") and "kmalloc" not in text


def test_level_groups_are_groupby_without_the_copies():
    import numpy as np
    import pandas as pd

    from balloonsim.analysis.best import level_groups

    levels = pd.Series(["altmap", None, "kmalloc", "altmap", "subrange-hint", "kmalloc", np.nan, "altmap"])
    mask = np.array([True, True, True, True, False, True, True, True])
    got = [(level, at.tolist()) for level, at in level_groups(levels, mask)]
    # positions count the runs under the mask: the fifth run is not one of them, the missing levels are dropped
    assert got == [("altmap", [0, 3, 6]), ("kmalloc", [2, 4])]
    part = levels[mask].reset_index(drop=True)
    assert [(k, g.index.tolist()) for k, g in part.groupby(part, sort=False)] == got
    numeric = pd.Series([5, 2, 5, 2])
    assert [(int(k), at.tolist()) for k, at in level_groups(numeric, np.ones(4, dtype=bool))] == [
        (5, [0, 2]),
        (2, [1, 3]),
    ]


def test_figures_are_saved_with_the_pixels_of_a_default_png(tmp_path):
    """save() trades file size for speed (zlib level): the decoded pixels are those matplotlib's own PNG has."""
    import numpy as np
    from PIL import Image

    from balloonsim.analysis import plotstyle as ps

    with ps.style():
        fig = ps.figure(4.0, 3.0)
        ax = fig.subplots()
        ax.plot([0, 1, 2], [0, 2, 1], label="a line")
        ax.set_title("a title")
        fig.legend(loc="outside lower center")
        png = ps.save(fig, tmp_path, "fast")
        fig.savefig(tmp_path / "default.png", dpi=ps.DPI, metadata={"Software": None})
    fast, default = (np.asarray(Image.open(p)) for p in (png, tmp_path / "default.png"))
    assert fast.shape == default.shape == (300, 400, 4)
    assert np.array_equal(fast, default)


@pytest.mark.parametrize("stalled", [[0, 0, 0], [0, 1, 0]])
def test_timeline_speaks_of_stalls_only_when_one_is_shown(stalled):
    """The legend's "stalled" entry (and the caption's word on shading) only when a shown sample was stalled:
    an entry for shading that appears nowhere reads as a claim about the runs."""
    from balloonsim.analysis import plotstyle as ps
    from balloonsim.analysis.plot_timeline import SERIES, _figure, any_stalled
    from balloonsim.units import GiB

    t = [0.0, 10.0, 20.0]
    shown = _shown_timeline({"kmalloc": {"t": t, "memtotal_bytes": [4 * GiB] * 3, "stalled": stalled}})
    series = [s for s in SERIES if s[0] in shown.samples]
    with ps.style():
        fig, _ = _figure(shown, series, [], None)
    labels = {text.get_text() for legend in fig.legends for text in legend.get_texts()}
    assert ("stalled" in labels) is any(stalled) is any_stalled(shown.samples)
