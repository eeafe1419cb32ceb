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


def test_a_pooled_policy_cell_does_not_hide_a_difference_of_one_regime(det_dir):
    """kmalloc beats altmap deterministically at 128M, they are identical at 2G: a cell holding both regimes says
    'differs by regime' (in 1 of 2), as the report does ('when guest.block_size = 128M'), not one pooled verdict."""
    from balloonsim.analysis.compare import regime_labels
    from balloonsim.analysis.plot_policy import ByRegime, _cell_text, _regime_verdict

    analysis = analyze(det_dir)
    labels = regime_labels(analysis.results, analysis.by)
    everything = np.ones(len(analysis.results.runs), dtype=bool)
    cell = _regime_verdict(analysis, everything, "gigantic_pages_end", labels)
    assert cell == ByRegime(differing=1, regimes=2, winners=["kmalloc"])
    assert "differs by regime" in _cell_text(cell, "gigantic_pages_end") and "1 of 2" in _cell_text(cell, "")
    one = (labels == "guest.block_size=128M").to_numpy()
    alone = _regime_verdict(analysis, one, "gigantic_pages_end", labels)
    assert alone.differs and alone.top == ["kmalloc"] and alone.deterministic
    quiet = _regime_verdict(analysis, everything, "stall_fraction", labels)  # no difference anywhere: grey
    assert not isinstance(quiet, ByRegime) and not quiet.differs


def test_pooled_overview_agrees_with_its_regimes(realistic_dir, monkeypatch):
    """Past MAX_REGIME_COLUMNS the overview pools regimes; a pooled cell states a verdict only when every regime
    in it (judged on its own, Holm-corrected, as the report's tables are) says the same, else 'differs by regime'."""
    from balloonsim.analysis import plot_policy
    from balloonsim.analysis.compare import regime_labels

    analysis = analyze(realistic_dir)
    drawn = {}
    monkeypatch.setattr(plot_policy, "MAX_REGIME_COLUMNS", 2)
    monkeypatch.setattr(plot_policy, "_draw", lambda a, grid, *rest: drawn.setdefault("grid", grid) and None)
    metrics = ["oom_kills", "guest_crashed", "gigantic_pages_end"]
    plot_policy.overview_map(analysis, metrics, realistic_dir / "plots")
    runs, labels = analysis.results.runs, regime_labels(analysis.results, analysis.by)
    factor = min(analysis.results.other_factors(analysis.by), key=lambda f: len(analysis.results.levels(f)))
    for m, row in zip(metrics, drawn["grid"], strict=True):
        for level, cell in zip(analysis.results.levels(factor), row, strict=True):
            regimes = pd.unique(labels[runs[factor] == level])
            assert len(regimes) > 1
            each = [plot_policy._regime_verdict(analysis, (labels == r).to_numpy(), m, labels) for r in regimes]
            tops = {frozenset(v.top) for v in each if v.differs}
            if isinstance(cell, plot_policy.ByRegime):
                assert cell.differing == sum(v.differs for v in each) > 0 and cell.regimes == len(regimes)
                assert cell.differing < cell.regimes or len(tops) > 1
            elif cell.differs:
                assert all(v.differs for v in each) and tops == {frozenset(cell.top)}, (m, level)
            else:
                assert not any(v.differs for v in each), (m, level)
    assert any(isinstance(c, plot_policy.ByRegime) for row in drawn["grid"] for c in row)
