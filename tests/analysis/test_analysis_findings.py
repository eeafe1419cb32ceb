"""Findings come from the numbers: planted effects are named, equal pairs are not, text follows data."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from analysis_synth import planted, write_results

from balloonsim.analysis import analyze
from balloonsim.analysis.findings import describe_regimes, findings, significance_line


def _texts(root) -> list[str]:
    return [f.text for f in findings(analyze(root))]


def test_planted_difference_becomes_a_finding(planted_dir):
    texts = _texts(planted_dir)
    oom = [t for t in texts if "OOM kills" in t]
    assert len(oom) == 1
    assert oom[0].startswith("**kmalloc**: ") and "than **altmap**" in oom[0]
    assert "× more OOM kills" in oom[0] and "Holm p" in oom[0]
    assert not any("stall fraction" in t for t in texts)  # same distribution: no claim


def test_equal_strategies_give_no_finding_and_say_so(tmp_path):
    root = planted(tmp_path / "equal", kmalloc_mean=2.0, altmap_mean=2.0, seed=4)
    analysis = analyze(root)
    assert findings(analysis) == []
    assert significance_line(analysis).startswith("No difference between levels of `memmap.strategy`")


def test_changing_the_data_changes_the_text(tmp_path):
    forward = _texts(planted(tmp_path / "fwd", kmalloc_mean=6.0, altmap_mean=1.0))
    reverse = _texts(planted(tmp_path / "rev", kmalloc_mean=1.0, altmap_mean=6.0))
    assert forward[0].startswith("**kmalloc**") and reverse[0].startswith("**altmap**")
    assert forward != reverse


def _threshold_dir(tmp_path):
    """kmalloc's OOM kills jump only when onlining.delay_s >= 5; no difference below."""
    rng = np.random.default_rng(12)
    rows = []
    for strategy, driver, delay in itertools.product(["kmalloc", "altmap"], ["xen", "hyperv"], [0, 2, 5, 10]):
        lam = 8.0 if strategy == "kmalloc" and delay >= 5 else 1.0
        for _ in range(15):
            rows.append(
                {
                    "memmap.strategy": strategy,
                    "driver.name": driver,
                    "onlining.delay_s": delay,
                    "oom_kills": rng.poisson(lam),
                }
            )
    factors = ["memmap.strategy", "driver.name", "onlining.delay_s"]
    return write_results(tmp_path / "thr", pd.DataFrame(rows), factors, ["oom_kills"])


def test_regime_condition_is_described(tmp_path):
    texts = _texts(_threshold_dir(tmp_path))
    assert len(texts) == 1
    assert "when onlining.delay_s ≥ 5" in texts[0]
    assert "4 of 8 regimes" in texts[0]


def test_describe_regimes_variants():
    table = pd.DataFrame(
        [(d, x) for d in ("xen", "hyperv") for x in (0, 2, 5, 10)],
        columns=["driver.name", "onlining.delay_s"],
    )
    table.index = [f"driver.name={d}, onlining.delay_s={x}" for d, x in table.itertuples(index=False)]
    everything = set(table.index)
    assert describe_regimes(everything, everything, table) == " in all 8 regimes"
    xen = {r for r in everything if "xen" in r}
    assert describe_regimes(xen, everything, table) == " when driver.name = xen"
    low = {r for r in everything if r.endswith("=0") or r.endswith("=2")}
    assert describe_regimes(low, everything, table) == " when onlining.delay_s ≤ 2"
    all_but_one = everything - {"driver.name=xen, onlining.delay_s=0"}
    assert describe_regimes(all_but_one, everything, table) == " except when driver.name = xen and onlining.delay_s = 0"


def test_too_few_replications_are_called_out(tmp_path):
    root = planted(tmp_path / "tiny", kmalloc_mean=9.0, altmap_mean=0.5, n=3)
    line = significance_line(analyze(root))
    assert line.startswith("No difference")
    assert "With 3 vs 3 runs per comparison" in line and "more replications are needed" in line


def _rank_case(root, kmalloc: list[float], altmap: list[float]):
    """OOM kills of kmalloc and altmap runs that Mann-Whitney U tells apart: the comparison's row and its line."""
    rows = [{"memmap.strategy": "kmalloc", "oom_kills": v} for v in kmalloc]
    rows += [{"memmap.strategy": "altmap", "oom_kills": v} for v in altmap]
    analysis = analyze(write_results(root, pd.DataFrame(rows), ["memmap.strategy"], ["oom_kills"]))
    row = analysis.comparisons.iloc[0]
    assert row["test"] == "mann-whitney-u" and row["significant"]
    (text,) = [f.text for f in findings(analysis)]
    return row, text


def test_a_rank_difference_whose_means_interval_spans_zero_says_so(tmp_path):
    """Mann-Whitney U finds kmalloc's runs higher (every one above every altmap run), but one outlier widens the
    means' interval past 0: the line gives the difference, says its interval spans 0 and gives the rank test's
    own effect, the Hodges-Lehmann shift (the median of the 100 differences: 1) with the interval the test
    inverts; a line whose interval does not span 0 (the planted one) says nothing of the kind."""
    row, text = _rank_case(tmp_path / "rank", [1, 1, 1, 1, 1, 1, 1, 1, 2, 30], [0] * 9 + [0.5])
    assert row["diff_ci_low"] < 0 < row["diff_ci_high"]
    assert (row["shift"], row["shift_ci_low"], row["shift_ci_high"]) == (1.0, 1.0, 1.0)
    assert text.startswith("**kmalloc**: ") and "Mann-Whitney U" in text
    shift = "(Hodges-Lehmann shift +1, 95% CI +1 to +1)"
    assert f"; the runs differ by rank {shift}, but the means' 95% interval spans 0;" in text
    assert not any("interval spans 0" in t for t in _texts(planted(tmp_path / "planted")))


def test_a_rank_difference_the_other_way_from_the_means_says_so(tmp_path):
    """altmap's mean is higher (one run far above the rest), but nine of its ten runs are below every kmalloc
    run: Mann-Whitney U finds kmalloc higher by rank. The line follows the means (altmap higher), so it must say
    that by rank the runs differ the other way, with the (negative) Hodges-Lehmann shift: the typical altmap
    run is 1 lower."""
    _, text = _rank_case(tmp_path / "other-way", [8] * 10, [7] * 9 + [23])
    assert text.startswith("**altmap**: ")  # the head follows the means: 8.6 against 8
    shift = "(Hodges-Lehmann shift −1, 95% CI −1 to −1)"
    assert f"; by rank the runs differ the other way {shift}: a few runs make this side's higher mean" in text


def test_a_line_with_deterministic_regimes_gives_their_difference(tmp_path):
    """kmalloc adds more usable memory than altmap in both regimes: by exactly 96 MiB in every run at 1G blocks
    (deterministic), by 40 MiB give or take at 128M (tested). The pooled means at the head of the line (68 MiB
    apart) come from both, so the line gives the tested regime's difference with its interval and the
    deterministic one's exactly; before, only the first was shown."""
    rng = np.random.default_rng(3)
    rows = []
    for size in ("128M", "1G"):
        for strategy in ("kmalloc", "altmap"):
            for _ in range(10):
                if size == "1G":
                    value = (4096 + (96 if strategy == "kmalloc" else 0)) << 20
                else:
                    value = int((4096 + (40 if strategy == "kmalloc" else 0) + rng.normal(0, 2)) * (1 << 20))
                rows.append({"guest.block_size": size, "memmap.strategy": strategy, "usable_bytes_added": value})
    factors = ["guest.block_size", "memmap.strategy"]
    root = write_results(tmp_path / "mixed", pd.DataFrame(rows), factors, ["usable_bytes_added"])
    (text,) = _texts(root)
    assert text.startswith("**kmalloc**: 68 MiB more usable memory added than **altmap** (4.07 GiB vs 4 GiB)")
    assert "in both regimes — difference +40.1 MiB (95% CI +37.5 MiB to +42.6 MiB)" in text and "Welch t" in text
    assert "; deterministic (identical runs on each side) in 1 of these regimes, difference +96 MiB there;" in text
