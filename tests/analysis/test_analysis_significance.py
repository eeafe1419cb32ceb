"""The comparisons' own significance tests give scipy.stats' numbers to the last bit, and the analysis of a
results directory never imports scipy.stats (its import costs more than a small study's comparisons)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy
from scipy import stats as st

from balloonsim.analysis import significance as sig

# scipy 1.18 replaced shapiro's Fortran AS R94 (and its AS 111 and AS 66 approximations, which significance.py
# follows) with a Python rewrite on exact normal quantiles: its p-values differ from AS R94's by up to 1.6e-8
# relative (3.4e-9 absolute; 3 values with a tie: 3e-16 against 8e-16), measured over these samples with 1.18.1.
_SCIPY_HAS_AS_R94 = tuple(int(part) for part in scipy.__version__.split(".")[:2]) < (1, 18)


def _same_shapiro_p(ours: float, scipys: float) -> bool:
    """Bit for bit against AS R94; to 1e-7 relative (1e-12 absolute, for p at the rounding floor) after it."""
    if _SCIPY_HAS_AS_R94:
        return ours == scipys
    return ours == pytest.approx(scipys, rel=1e-7, abs=1e-12)


def _samples(seed: int, count: int):
    """Pairs of samples of the kinds the simulator gives: normal, small counts with many ties, skewed byte
    amounts, and tie-free permutations (the exact Mann-Whitney path), 2 to 13 values a side."""
    rng = np.random.default_rng(seed)
    for trial in range(count):
        n1, n2 = (int(n) for n in rng.integers(2, 14, size=2))
        kind = trial % 4
        if kind == 0:
            yield rng.normal(size=n1), rng.normal(0.5, 2.0, size=n2)
        elif kind == 1:
            yield rng.integers(0, 5, size=n1).astype(float), rng.integers(0, 6, size=n2).astype(float)
        elif kind == 2:
            yield rng.exponential(3.0, size=n1) * 2**30, rng.exponential(2.0, size=n2) * 2**30
        else:
            yield rng.permutation(np.arange(n1 + n2, dtype=float) * 1.5)[:n1], rng.normal(5.0, 3.0, size=n2)


@pytest.mark.parametrize("seed", [1, 2])
def test_tests_equal_scipy_stats_bit_for_bit(seed):
    checked = {"welch": 0, "exact": 0, "asymptotic": 0, "shapiro": 0}
    for a, b in _samples(seed, 400):
        both = np.concatenate([a, b])
        assert np.array_equal(sig.rankdata(both), st.rankdata(both))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if len(a) >= 3 and np.ptp(a) > 0:
                assert _same_shapiro_p(sig.shapiro_p(a), float(st.shapiro(a).pvalue)), a
                checked["shapiro"] += 1
            if np.ptp(a) > 0 or np.ptp(b) > 0:
                ref = st.ttest_ind(a, b, equal_var=False)
                assert sig.welch_t(a, b) == (float(ref.statistic), float(ref.pvalue)), (a, b)
                ref = st.mannwhitneyu(a, b, alternative="two-sided", method="auto")
                assert sig.mann_whitney_u(a, b) == (float(ref.statistic), float(ref.pvalue)), (a, b)
                checked["welch"] += 1
                exact = min(len(a), len(b)) <= 8 and len(np.unique(both)) == len(both)
                checked["exact" if exact else "asymptotic"] += 1
    assert min(checked.values()) > 50, checked  # every path was exercised


def test_exact_mann_whitney_counts_arrangements():
    # 3 against 3: U counts as 1, 1, 2, 3, 3, 3, 3, 2, 1, 1 of C(6,3) = 20 arrangements; U = 9 (a above b) is
    # the most extreme: two-sided p = 2 * P(U <= 0) = 2/20.
    assert sig.mann_whitney_u(np.array([4.0, 5.0, 6.0]), np.array([1.0, 2.0, 3.0])) == (9.0, 0.1)
    assert sig._exact_cdf(3, 3, 3) == pytest.approx((1 + 1 + 2 + 3) / 20)


def test_shapiro_separates_normal_from_skewed():
    rng = np.random.default_rng(7)
    assert sig.shapiro_p(rng.normal(size=200)) > 0.05
    assert sig.shapiro_p(rng.exponential(size=200)) < 1e-6
    assert sig.shapiro_p(np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 100.0])) < 0.001


def test_analysis_does_not_import_scipy_stats(realistic_dir):
    code = (
        "import sys\n"
        "from balloonsim.analysis import analyze\n"
        f"a = analyze({str(realistic_dir)!r})\n"
        "assert len(a.comparisons) > 0\n"
        "print('scipy.stats' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("sizes", [(3, 8), (5, 5), (6, 8), (8, 20), (10, 10), (12, 30)])
def test_the_hodges_lehmann_interval_is_the_shifts_the_mann_whitney_test_keeps(sizes):
    """Hollander & Wolfe (section 4.3): the interval is the set of shifts d for which the Mann-Whitney test of
    a - d against b does not reject at 5 %: just inside either end the test keeps the shift, just outside it
    rejects it, with the exact null distribution where mann_whitney_u() is exact and its normal approximation
    elsewhere. The shift itself is the median of every difference a_i - b_j."""
    rng = np.random.default_rng(sum(sizes))
    n1, n2 = sizes
    for _ in range(40):
        a, b = rng.normal(1.0, 1.0, n1), rng.normal(0.0, 1.0, n2)
        shift, low, high = sig.hodges_lehmann(a, b, 0.95)
        assert shift == np.median(np.subtract.outer(a, b))
        assert low <= shift <= high
        for d, rejected in ((low + 1e-9, False), (high - 1e-9, False), (low - 1e-9, True), (high + 1e-9, True)):
            assert (sig.mann_whitney_u(a - d, b)[1] < 0.05) is rejected, (d, low, high)


def test_too_few_runs_for_a_hodges_lehmann_interval():
    """With 3 and 4 runs no arrangement is rare enough for a 5 % two-sided test (2 / C(7, 3) = 5.7 %): no shift is
    ever rejected, so there is no interval."""
    shift, low, high = sig.hodges_lehmann(np.array([3.0, 4.0, 5.0]), np.array([0.0, 1.0, 2.0, 2.5]))
    assert shift == 2.75 and np.isnan(low) and np.isnan(high)
