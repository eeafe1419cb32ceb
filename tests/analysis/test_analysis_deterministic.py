"""Deterministic outcomes: identical runs on each side with different values are a difference, without a test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analysis_synth import deterministic, planted

from balloonsim.analysis import analyze, finish
from balloonsim.analysis.best import best_cell
from balloonsim.analysis.compare import differs, pair_test
from balloonsim.analysis.findings import findings, significance_line
from balloonsim.analysis.plot_policy import _holm_significant
from balloonsim.analysis.tables import best_table


def test_pair_test_rule():
    assert pair_test(np.full(3, 18.0), np.zeros(3))[0] == "deterministic"
    test, stat, p = pair_test(np.full(3, 18.0), np.zeros(3))
    assert np.isnan(stat) and np.isnan(p)
    assert pair_test(np.full(3, 4.0), np.full(3, 4.0 + 1e-12))[0] == "identical"  # float noise is not a difference
    assert pair_test(np.zeros(3), np.array([17.0, 18.0, 18.0]))[0] == "mann-whitney-u"  # one side varies: test
    assert pair_test(np.full(1, 18.0), np.zeros(1))[0] == "too few runs"  # one run says nothing about noise


@pytest.fixture
def det_dir(tmp_path):
    return deterministic(tmp_path / "det")


def test_deterministic_row_in_comparisons(det_dir):
    comp = analyze(det_dir).comparisons
    pages = comp[comp["metric"] == "gigantic_pages_end"].set_index("regime")
    row = pages.loc["guest.block_size=128M"]
    assert row["test"] == "deterministic" and bool(row["deterministic"]) and not bool(row["significant"])
    assert np.isnan(row["p"]) and np.isnan(row["p_holm"]) and row["winner"] == "kmalloc"
    assert abs(row["cliffs_delta"]) == 1.0
    same = pages.loc["guest.block_size=2G"]
    assert same["test"] == "identical" and not bool(same["deterministic"]) and same["winner"] == ""
    assert (pages["family_size"] == 0).all()  # neither is part of a Holm family
    stall = comp[comp["metric"] == "stall_fraction"]
    assert (stall["test"] == "mann-whitney-u").all() and not differs(stall).any()


def test_deterministic_difference_is_reported_plainly(det_dir):
    analysis = analyze(det_dir)
    found = findings(analysis)
    assert len(found) == 1  # the noisy equal pair gives nothing
    text = found[0].text
    assert found[0].deterministic and found[0].metric == "gigantic_pages_end"
    assert text.startswith("**kmalloc**: more gigantic pages at end than **altmap** in every run (18 vs 0 per run)")
    assert "when guest.block_size = 128M" in text and "deterministic" in text and "Holm" not in text
    line = significance_line(analysis)
    assert line.startswith("1 comparison (1 metric) shows a deterministic difference")
    assert "more replications are needed before such a difference can be significant" in line


def test_report_and_policy_maps_count_it(det_dir):
    md = finish(det_dir)[0].read_text()
    answer = md.split("## The experiment")[0]
    assert (
        "- **kmalloc**: more gigantic pages at end than **altmap** in every run (18 vs 0 per run) when "
        "guest.block_size = 128M — deterministic: in every run; n = 3 vs 3 runs." in answer
    )
    assert "No difference between levels" not in answer and "stall" not in answer.lower()
    findings_part = md.split("## Findings")[1].split("## Best")[0]
    assert "in every run (18 vs 0 per run) when guest.block_size = 128M" in findings_part
    assert "Stall fraction: no difference between any two levels of `memmap.strategy` is significant" in md
    analysis = analyze(det_dir)
    assert _holm_significant(analysis.comparisons, "gigantic_pages_end", "guest.block_size=128M", "kmalloc", "altmap")
    cell = best_cell({"kmalloc": np.full(3, 18.0), "altmap": np.zeros(3)}, "gigantic_pages_end", 0.05)
    assert cell.best == "kmalloc" and cell.significant  # pooled cells: no Mann-Whitney needed either
    table = best_table(analysis, ["gigantic_pages_end"])
    assert table.rows[0] == ["guest.block_size=128M", "**kmalloc** ✓"]
    assert table.rows[1] == ["guest.block_size=2G", "all equal"]


def test_deterministic_ranks_with_significant_findings(tmp_path):
    """A planted noisy difference (n = 20) and a deterministic one in the same data: both found, both ranked by
    effect size (Cliff's delta 1 for the deterministic one)."""
    root = planted(tmp_path / "both", kmalloc_mean=6.0, altmap_mean=1.0)
    runs = pd.read_csv(root / "runs.csv")
    runs["gigantic_pages_end"] = np.where(runs["memmap.strategy"] == "kmalloc", 18, 0)
    runs.to_csv(root / "runs.csv", index=False)
    meta = (root / "metadata.json").read_text().replace('"guest_crashed"', '"guest_crashed", "gigantic_pages_end"')
    (root / "metadata.json").write_text(meta)
    found = findings(analyze(root))
    assert [f.metric for f in found] == ["gigantic_pages_end", "oom_kills"]
    assert found[0].deterministic and not found[1].deterministic
    assert "Holm p" in found[1].text
