"""Confidence intervals and the summary table: correct, deterministic, quiet on degenerate samples."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as hs

from balloonsim.analysis import analyze
from balloonsim.analysis.stats import _bootstrap_medians, describe, mean_ci, median_ci, wilson_ci


def test_t_interval_contains_true_mean():
    x = np.random.default_rng(3).normal(10.0, 2.0, 50)
    lo, hi = mean_ci(x)
    assert lo < 10.0 < hi
    assert hi - lo == pytest.approx(2 * 1.96 * x.std(ddof=1) / np.sqrt(50), rel=0.05)


def test_t_interval_coverage_is_about_95_percent():
    rng = np.random.default_rng(11)
    hits = sum(lo < 0 < hi for lo, hi in (mean_ci(rng.normal(0, 1, 12)) for _ in range(400)))
    assert 0.91 <= hits / 400 <= 0.99


def test_wilson_matches_hand_computation():
    # 0 of 10: upper bound z^2/(n+z^2) = 3.8415/13.8415
    lo, hi = wilson_ci(0, 10)
    assert lo == 0.0
    assert hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_ci(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))


def test_median_bootstrap_is_deterministic_and_sane():
    x = np.random.default_rng(5).exponential(3.0, 40)
    first, second = median_ci(x), median_ci(x)
    assert first == second
    assert first[0] <= np.median(x) <= first[1]


@given(hs.lists(hs.sampled_from([-3.5, 0.0, 0.25, 1.0, 7.0, 1e9]), min_size=2, max_size=25), hs.integers(0, 2**32))
@settings(max_examples=60, deadline=None)
def test_bootstrap_medians_are_numpys_medians_of_the_resamples(values, seed):
    """The counted medians are np.median of the very resamples the seed draws, bit for bit (ties, odd and even n)."""
    x = np.array(values)
    draws = np.random.default_rng(seed).integers(0, len(x), size=(300, len(x)))
    expected = np.median(x[draws], axis=1)
    assert np.array_equal(_bootstrap_medians(x, seed, 300), expected)


@pytest.mark.parametrize("n", [40, 41])
def test_large_samples_are_bootstrapped_a_block_of_resamples_at_a_time(monkeypatch, n):
    """Past CACHED_CELLS, the draws are made and counted BLOCK_CELLS at a time (at n = 10,000 each array of the
    whole bootstrap was 160 MB): the same medians, bit for bit, as np.median of the resamples of one call."""
    from balloonsim.analysis import stats

    monkeypatch.setattr(stats, "CACHED_CELLS", 0)
    monkeypatch.setattr(stats, "BLOCK_CELLS", 7 * n)  # 300 resamples in blocks of 7: the last one short
    blocks = []
    counts = stats._counts
    monkeypatch.setattr(stats, "_counts", lambda draws, size: blocks.append(draws.shape) or counts(draws, size))
    x = np.round(np.random.default_rng(3).exponential(2.0, n), 1)  # ties
    draws = np.random.default_rng(11).integers(0, n, size=(300, n))
    assert np.array_equal(_bootstrap_medians(x, 11, 300), np.median(x[draws], axis=1))
    assert sum(rows for rows, _ in blocks) == 300 and max(rows for rows, _ in blocks) == 7


def test_a_sample_size_s_counts_are_kept_within_their_budget(monkeypatch):
    """A sample size's draw counts are kept for the next metric of that size (analyzing 10,800 runs in cells of
    1,200 took 2.6-3.0 s with them kept, 5.2-6.1 s drawing them again for each of its 177 medians): the same medians,
    bit for bit, as drawn a block at a time; a kept size is not drawn again; all sizes together stay within
    KEPT_BYTES, the least recently used let go first."""
    from collections import OrderedDict

    from balloonsim.analysis import stats

    monkeypatch.setattr(stats, "_kept", OrderedDict())
    monkeypatch.setattr(stats, "BLOCK_CELLS", 7 * 41)  # kept counts are made a block at a time too
    drawn = []
    counts = stats._counts
    monkeypatch.setattr(stats, "_counts", lambda draws, size: drawn.append(size) or counts(draws, size))
    x = np.round(np.random.default_rng(3).exponential(2.0, 41), 1)
    kept = _bootstrap_medians(x, 11, 300)
    assert list(stats._kept) == [(11, 300, 41)] and stats._kept[(11, 300, 41)].dtype == np.uint8
    assert np.array_equal(kept, np.median(x[np.random.default_rng(11).integers(0, 41, size=(300, 41))], axis=1))
    blocks = len(drawn)
    assert np.array_equal(_bootstrap_medians(x[::-1].copy(), 11, 300), _bootstrap_medians(x[::-1].copy(), 11, 300))
    assert len(drawn) == blocks  # kept: not drawn again, whatever the values
    monkeypatch.setattr(stats, "CACHED_CELLS", 0)
    assert np.array_equal(_bootstrap_medians(x, 11, 300), kept) and len(drawn) > blocks  # drawn per call: same

    monkeypatch.setattr(stats, "CACHED_CELLS", 1 << 22)
    monkeypatch.setattr(stats, "_kept", OrderedDict())
    monkeypatch.setattr(stats, "KEPT_BYTES", 300 * 100)  # uint8 counts: 300 x n bytes per size
    for n in (40, 50, 40, 60):  # 40 used again after 50: 50 is the least recently used when 60 comes
        _bootstrap_medians(np.arange(n, dtype=float), 11, 300)
    assert [key[2] for key in stats._kept] == [40, 60]
    assert sum(c.nbytes for c in stats._kept.values()) <= stats.KEPT_BYTES


def test_degenerate_samples_are_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        const = describe(np.full(7, 4.0))
        one = describe(np.array([2.0]))
        empty = describe(np.array([np.nan, np.nan]))
    assert const["mean_ci_low"] == const["mean_ci_high"] == 4.0
    assert const["median_ci_low"] == const["median_ci_high"] == 4.0
    assert one["n"] == 1 and one["mean"] == 2.0 and np.isnan(one["mean_ci_low"]) and np.isnan(one["std"])
    assert empty["n"] == 0 and np.isnan(empty["mean"])


def test_rate_metric_gets_wilson_interval():
    out = describe(np.array([0, 0, 1, 0] * 5, dtype=float), rate=True)
    assert out["is_rate"] and 0 < out["rate_ci_low"] < 0.25 < out["rate_ci_high"] < 0.6


@settings(max_examples=60, deadline=None)
@given(hs.lists(hs.floats(-1e6, 1e6), min_size=2, max_size=30))
@example(values=[0.0, -915351.5428892191])  # the bootstrap's percentile interpolation rounded one ulp below min
def test_intervals_bracket_their_estimates(values):
    x = np.array(values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = describe(x)
    assert out["mean_ci_low"] <= out["mean"] + 1e-6 * (1 + abs(out["mean"]))
    assert out["mean"] <= out["mean_ci_high"] + 1e-6 * (1 + abs(out["mean"]))
    assert out["min"] <= out["median_ci_low"] <= out["median_ci_high"] <= out["max"]


def test_summary_csv_is_tidy_and_byte_identical_twice(planted_dir):
    analyze(planted_dir)
    first = (planted_dir / "summary.csv").read_bytes()
    first_comp = (planted_dir / "comparisons.csv").read_bytes()
    analyze(planted_dir)
    assert (planted_dir / "summary.csv").read_bytes() == first
    assert (planted_dir / "comparisons.csv").read_bytes() == first_comp
    summary = pd.read_csv(planted_dir / "summary.csv")
    assert set(summary["metric"]) == {"oom_kills", "stall_fraction", "guest_crashed"}
    row = summary[(summary["memmap.strategy"] == "kmalloc") & (summary["metric"] == "oom_kills")].iloc[0]
    assert row["n"] == 20
    assert row["mean_ci_low"] < row["mean"] < row["mean_ci_high"]
    crashed = summary[summary["metric"] == "guest_crashed"]
    assert crashed["is_rate"].all() and (crashed["rate_ci_low"] == 0).all()
