"""Pairwise comparisons: the planted difference is found, the equal pair is not, Holm is right."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analysis_synth import write_results
from hypothesis import given, settings
from hypothesis import strategies as hs
from scipy import stats as st

from balloonsim.analysis import analyze
from balloonsim.analysis.compare import cliffs_delta, compare, diff_interval, hedges_g, holm, pair_test
from balloonsim.analysis.load import load


def test_holm_matches_hand_computation():
    # sorted p: 0.01, 0.02, 0.03, 0.04 (m=4) -> 0.04, 0.06, 0.06 (monotone), 0.06; NaN stays out.
    p = [0.03, 0.01, np.nan, 0.04, 0.02]
    adjusted = holm(p)
    assert adjusted[1] == pytest.approx(0.04)
    assert adjusted[4] == pytest.approx(0.06)
    assert adjusted[0] == pytest.approx(0.06)
    assert adjusted[3] == pytest.approx(0.06)
    assert np.isnan(adjusted[2])
    assert holm([0.5, 0.6]).tolist() == [1.0, 1.0]


@settings(max_examples=80, deadline=None)
@given(hs.lists(hs.floats(0, 1), min_size=1, max_size=25))
def test_holm_properties(p):
    adj = holm(p)
    arr = np.array(p)
    assert np.all(adj >= arr - 1e-12) and np.all(adj <= 1.0)
    order = np.argsort(arr, kind="stable")
    assert np.all(np.diff(adj[order]) >= -1e-12)


@settings(max_examples=60, deadline=None)
@given(hs.lists(hs.integers(0, 6), min_size=1, max_size=15), hs.lists(hs.integers(0, 6), min_size=1, max_size=15))
def test_cliffs_delta_matches_definition(a, b):
    a, b = np.array(a, float), np.array(b, float)
    brute = np.sign(a[:, None] - b[None, :]).mean()
    assert cliffs_delta(a, b) == pytest.approx(brute)


def test_hedges_g_and_test_choice():
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 1.0, 30), rng.normal(0.0, 1.0, 30)
    assert 0.5 < hedges_g(a, b) < 1.6
    assert pair_test(a, b)[0] == "welch-t"
    counts = rng.poisson(1.0, 30).astype(float)
    assert pair_test(counts, counts + 1)[0] == "mann-whitney-u"
    assert pair_test(np.ones(5), np.ones(5)) == ("identical", pytest.approx(np.nan, nan_ok=True), 1.0)
    assert pair_test(np.ones(1), np.zeros(5))[0] == "too few runs"


def test_planted_difference_is_found_equal_pair_is_not(planted_dir):
    comp = analyze(planted_dir).comparisons
    oom = comp[comp["metric"] == "oom_kills"].iloc[0]
    assert {oom["a"], oom["b"]} == {"kmalloc", "altmap"}
    assert oom["p_holm"] < 0.01 and bool(oom["significant"])
    assert oom["winner"] == "altmap"
    kmalloc_is_a = oom["a"] == "kmalloc"
    assert (oom["ratio"] > 2.5) if kmalloc_is_a else (oom["ratio"] < 0.4)
    stall = comp[comp["metric"] == "stall_fraction"].iloc[0]
    assert stall["p_holm"] > 0.05 and not bool(stall["significant"]) and stall["winner"] == ""
    crashed = comp[comp["metric"] == "guest_crashed"].iloc[0]
    assert crashed["test"] == "identical" and crashed["p_holm"] == 1.0 and crashed["family_size"] == 0


def test_holm_family_is_per_metric_over_regimes(tmp_path):
    """Three regimes, the same small difference in each: raw p times at most 3, not 3 x metrics."""
    rng = np.random.default_rng(8)
    rows = []
    for regime in ("a", "b", "c"):
        for strategy, shift in (("kmalloc", 0.9), ("altmap", 0.0)):
            for _ in range(12):
                rows.append(
                    {
                        "memmap.strategy": strategy,
                        "driver.name": regime,
                        "stall_fraction": rng.normal(shift, 1.0),
                        "oom_kills": rng.poisson(2),
                    }
                )
    root = write_results(
        tmp_path / "fam",
        pd.DataFrame(rows),
        ["memmap.strategy", "driver.name"],
        ["stall_fraction", "oom_kills"],
    )
    comp = analyze(root).comparisons
    stall = comp[comp["metric"] == "stall_fraction"].sort_values("p")
    assert (stall["family_size"] == 3).all()
    assert stall["p_holm"].iloc[0] == pytest.approx(min(1.0, 3 * stall["p"].iloc[0]))
    assert set(comp["regime"]) == {"driver.name=a", "driver.name=b", "driver.name=c"}


def test_by_option_and_single_level(tmp_path, planted_dir):
    comp = analyze(planted_dir, by="driver.name").comparisons
    assert comp.empty  # driver.name has a single level
    runs = pd.read_csv(planted_dir / "runs.csv")
    runs["driver.name"] = np.where(np.arange(len(runs)) % 2, "xen", "hyperv")
    runs.to_csv(planted_dir / "runs.csv", index=False)
    comp = analyze(planted_dir, by="driver.name").comparisons
    assert set(comp["by"]) == {"driver.name"} and set(comp["regime"]) == {
        "memmap.strategy=kmalloc",
        "memmap.strategy=altmap",
    }


def test_difference_intervals():
    """Newcombe (1998), method 10, example (a): 56/70 vs 48/80 -> 0.175 (0.0524, 0.3339); Welch otherwise."""
    a = np.r_[np.ones(56), np.zeros(14)]
    b = np.r_[np.ones(48), np.zeros(32)]
    low, high = diff_interval("guest_crashed", a, b)
    assert (low, high) == (pytest.approx(0.0524, abs=5e-4), pytest.approx(0.3339, abs=5e-4))
    low, high = diff_interval("guest_crashed", np.ones(10), np.zeros(10))  # 100 % vs 0 %: still an interval
    assert 0.6 < low < 1.0 and high == 1.0
    assert diff_interval("gigantic_pages_end", np.full(3, 18.0), np.zeros(3)) == (18.0, 18.0)  # deterministic
    rng = np.random.default_rng(1)
    x, y = rng.normal(5, 1, 40), rng.normal(3, 2, 30)
    expected = st.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
    assert diff_interval("oom_kills", x, y) == (pytest.approx(expected.low), pytest.approx(expected.high))


def test_a_metric_compared_alone_gives_its_rows_of_the_whole_table(realistic_dir):
    """The time line is chosen from one metric's comparisons before the table is done: each metric is its own
    Holm family, so its rows computed alone are its rows of the whole table, in the same order."""
    results = load(realistic_dir)
    by = results.resolve_by(None)
    whole = compare(results, by)
    for metric in ("oom_kills", "guest_crashed", "stall_fraction"):
        alone = compare(results, by, metrics=[metric])
        mine = whole[whole["metric"] == metric].reset_index(drop=True)
        assert len(alone) > 0
        pd.testing.assert_frame_equal(alone, mine)
