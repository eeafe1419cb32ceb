"""The significance tests of the comparisons (Shapiro-Wilk, Welch's t, Mann-Whitney U), average ranks, and the
Hodges-Lehmann shift with the interval the Mann-Whitney test inverts.

Written here on numpy and scipy.special because importing scipy.stats costs about 0.6 s of CPU, more than the
whole comparison of a small study, and sits on the analysis' critical path. Each gives what scipy.stats (1.17)
gives for one-dimensional samples without NaN, in the same floating-point steps, so comparisons.csv keeps its
bytes; tests/analysis/test_analysis_significance.py holds them to scipy.stats on random samples. scipy has no
Hodges-Lehmann interval: the tests hold it to the Mann-Whitney test it inverts.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given the mean of the ranks they span (scipy.stats.rankdata's 'average')."""
    ranks, _ = _ranks_and_ties(np.asarray(x, dtype=float))
    return ranks


def _ranks_and_ties(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks, and the size of each group of equal values (one entry a group)."""
    n = len(x)
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    first = np.concatenate([[True], ordered[:-1] != ordered[1:]]) if n else np.zeros(0, dtype=bool)
    starts = np.flatnonzero(first)
    counts = np.diff(starts, append=n)
    # a group starting at position s (0-based) of size c spans ranks s+1 .. s+c: its mean is s+1 + (c-1)/2
    average = (starts + 1).astype(float) + (counts.astype(float) - 1) / 2
    ranks = np.empty(n, dtype=float)
    ranks[order] = np.repeat(average, counts)
    return ranks, counts


def welch_t(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Welch's unequal-variance t test: (t, two-sided p)."""
    n1, n2 = len(a), len(b)
    m1, m2 = np.mean(a), np.mean(b)
    v1 = np.mean((a - m1) ** 2) * (n1 / (n1 - 1))
    v2 = np.mean((b - m2) ** 2) * (n2 / (n2 - 1))
    vn1, vn2 = v1 / n1, v2 / n2
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (vn1 + vn2) ** 2 / (vn1**2 / (n1 - 1) + vn2**2 / (n2 - 1))
        df = np.where(np.isnan(df), 1.0, df)
        t = np.divide(m1 - m2, np.sqrt(vn1 + vn2))
    p = 2 * special.stdtr(df, -np.abs(t))
    return float(t), float(p)


def mann_whitney_u(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test: (U of `a`, p). Exact when either sample has at most 8 values and none
    tie; otherwise the normal approximation with the tie and continuity corrections (scipy's method='auto')."""
    n1, n2 = len(a), len(b)
    ranks, ties = _ranks_and_ties(np.concatenate([a, b]).astype(float))
    u1 = np.sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    u = np.maximum(u1, n1 * n2 - u1)
    if (n1 > 8 and n2 > 8) or np.any(ties > 1):
        n = n1 + n2
        t = ties.astype(float)
        s = np.sqrt(n1 * n2 / 12 * ((n + 1) - np.sum(t**3 - t) / (n * (n - 1))))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (u - n1 * n2 / 2 - 0.5) / s
        p = special.ndtr(-z)
    else:
        p = _exact_cdf(n1, n2, int(n1 * n2 - u))
    return float(u1), float(np.clip(p * 2, 0.0, 1.0))


def hodges_lehmann(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """The Hodges-Lehmann shift of `a` over `b` (the median of every difference a_i - b_j) and its confidence
    interval at `level`, the one the Mann-Whitney test above inverts (Hollander & Wolfe, Nonparametric Statistical
    Methods, section 4.3): the C-th smallest and C-th largest of the n1 n2 differences, C the largest count whose
    U would reject, from the exact null distribution where mann_whitney_u() is exact (at most 8 values on a side,
    no ties), else from the same tie-corrected normal approximation with its continuity correction. NaN below two
    values a side; NaN bounds when too few runs let the test reject any shift at this level."""
    n1, n2 = len(a), len(b)
    if n1 < 2 or n2 < 2:
        return (math.nan, math.nan, math.nan)
    d = np.sort(np.subtract.outer(np.asarray(a, dtype=float), np.asarray(b, dtype=float)).ravel())
    n = n1 * n2
    shift = float(np.median(d))
    tail = (1 - level) / 2
    _, ties = _ranks_and_ties(np.concatenate([a, b]).astype(float))
    if (n1 > 8 and n2 > 8) or np.any(ties > 1):
        m = n1 + n2
        t = ties.astype(float)
        s = math.sqrt(n1 * n2 / 12 * ((m + 1) - float(np.sum(t**3 - t)) / (m * (m - 1))))
        # U <= k rejects while ndtr((k + 0.5 - n/2) / s) <= tail: the largest such k, plus one (a count)
        c = math.floor(n / 2 - 0.5 + float(special.ndtri(tail)) * s) + 1 if s > 0 else 0
    else:
        c = int(np.sum(_exact_cdfs(n1, n2, n // 2) <= tail))
    if c < 1:  # no shift at all would be rejected at this level: too few runs for an interval
        return (shift, math.nan, math.nan)
    return (shift, float(d[c - 1]), float(d[n - c]))


def _exact_cdf(n1: int, n2: int, k: int) -> float:
    """P(U <= k) under the null hypothesis, for k at most n1*n2/2.

    The number of ways to reach each U is a coefficient of the Gaussian binomial [n1+n2, n1]_q; they are
    counted exactly (Python integers), divided by C(n1+n2, n1) and summed in order, as scipy sums its table
    (whose float counts are exact too while C(n1+n2, n1) < 2**53: any sample of a few hundred runs).
    """
    return float(_exact_cdfs(n1, n2, k)[k])


def _exact_cdfs(n1: int, n2: int, k: int) -> np.ndarray:
    """P(U <= j) for j = 0 .. k (see _exact_cdf)."""
    small, large = min(n1, n2), max(n1, n2)
    counts = [1] + [0] * k  # coefficients of q^0 .. q^k of prod_{i<=small} (1 - q^(large+i)) / (1 - q^i)
    for i in range(1, small + 1):
        for u in range(k, large + i - 1, -1):  # times (1 - q^(large+i)), highest power first
            counts[u] -= counts[u - large - i]
        for u in range(i, k + 1):  # divided by (1 - q^i): a running sum with stride i
            counts[u] += counts[u - i]
    total = special.binom(n1 + n2, small)
    return np.cumsum(np.array(counts, dtype=float) / total)


# Royston (1995), Algorithm AS R94 (Applied Statistics 44(4)): coefficients of the approximations of the
# Shapiro-Wilk weights and of the distribution of log(1 - W); each lowest order first.
_C1 = (0.0, 0.221157, -0.147981, -2.07119, 4.434685, -2.706056)
_C2 = (0.0, 0.042981, -0.293762, -1.752461, 5.682633, -3.582633)
_C3 = (0.544, -0.39978, 0.025054, -0.0006714)
_C4 = (1.3822, -0.77857, 0.062767, -0.0020322)
_C5 = (-1.5861, -0.31082, -0.083751, 0.0038915)
_C6 = (-0.4803, -0.082676, 0.0030302)
_G = (-2.273, 0.459)
_SMALL = 1e-19


def shapiro_p(x: np.ndarray) -> float:
    """The p-value of the Shapiro-Wilk test of normality, for 3 to 5000 values not all equal (AS R94, with its
    own normal quantile and tail approximations, AS 111 and AS 66, as scipy uses them)."""
    n = len(x)
    y = np.sort(np.asarray(x, dtype=float))
    y = y - np.asarray(x, dtype=float)[n // 2]  # centred on a middle value (of the unsorted sample, as scipy)
    if y[-1] - y[0] < _SMALL:
        return 1.0
    w1 = _one_minus_w(y, _weights(n))
    if not w1 > 0:  # W = 1: as normal as a sample gets
        return 1.0
    if n == 3:
        w = 1 - w1
        return 0.0 if w < 0.75 else 1.0 - 6 / math.pi * math.acos(math.sqrt(w))
    ln_w1, ln_n = math.log(w1), math.log(n)
    if n <= 11:
        gamma = _poly(_G, n)
        if ln_w1 >= gamma:
            return _SMALL
        ln_w1 = -math.log(gamma - ln_w1)
        m, s = _poly(_C3, n), math.exp(_poly(_C4, n))
    else:
        m, s = _poly(_C5, ln_n), math.exp(_poly(_C6, ln_n))
    return _upper_tail((ln_w1 - m) / s)


def _weights(n: int) -> list[float]:
    """The first n // 2 Shapiro-Wilk coefficients (antisymmetric: the rest are their negatives, mirrored)."""
    half = n // 2
    if n == 3:
        return [math.sqrt(2) / 2]
    m = [_normal_quantile((i + 1 - 0.375) / (n + 0.25)) for i in range(half)]
    summ2 = 0.0
    for v in m:
        summ2 += v**2
    summ2 *= 2.0
    root = math.sqrt(summ2)
    rsn = 1 / math.sqrt(n)
    a1 = _poly(_C1, rsn) - m[0] / root
    if n > 5:
        a2 = -m[1] / root + _poly(_C2, rsn)
        fac = math.sqrt((summ2 - 2 * m[0] ** 2 - 2 * m[1] ** 2) / (1 - 2 * a1**2 - 2 * a2**2))
        first = [a1, a2]
    else:
        fac = math.sqrt((summ2 - 2 * m[0] ** 2) / (1 - 2 * a1**2))
        first = [a1]
    return first + [v * (-1.0 / fac) for v in m[len(first) :]]


def _one_minus_w(y: list[float] | np.ndarray, a: list[float]) -> float:
    """1 - W for sorted values `y`, accumulated in the algorithm's order (values scaled by their range)."""
    n = len(y)
    spread = float(y[-1] - y[0])

    def weight(i: int) -> float:  # the i-th coefficient of all n: -a[i] below the middle, a[n-1-i] above
        j = n - 1 - i
        return 0.0 if i == j else (-1 if i < j else 1) * a[min(i, j)]

    sx, sa = 0.0, 0.0
    for i in range(n):
        sx += float(y[i]) / spread
        sa += weight(i)
    sa /= n
    sx /= n
    ssa = ssx = sax = 0.0
    for i in range(n):
        asa = weight(i) - sa
        xsx = float(y[i]) / spread - sx
        ssa += asa * asa
        ssx += xsx * xsx
        sax += asa * xsx
    root = math.sqrt(ssa * ssx)
    return (root - sax) * (root + sax) / (ssa * ssx)


def _poly(c: tuple[float, ...], x: float) -> float:
    """c[0] + c[1] x + c[2] x^2 + ..., by Horner's rule from the highest order."""
    if len(c) == 1:
        return c[0]
    p = x * c[-1]
    if len(c) == 2:
        return c[0] + p
    for coef in reversed(c[1:-1]):
        p = (p + coef) * x
    return c[0] + p


def _normal_quantile(p: float) -> float:
    """The standard normal quantile, Beasley-Springer (AS 111): what AS R94 was tuned with."""
    q = p - 0.5
    if abs(q) <= 0.42:
        r = q * q
        num = q * (((-25.44106049637 * r + 41.39119773534) * r + -18.61500062529) * r + 2.50662823884)
        return num / ((((3.13082909833 * r + -21.06224101826) * r + 23.08336743743) * r + -8.47351093090) * r + 1.0)
    r = 1 - p if q > 0 else p
    if not r > 0:
        return 0.0
    r = math.sqrt(-math.log(r))
    value = ((2.32121276858 * r + 4.85014127135) * r + -2.29796479134) * r + -2.78718931138
    value /= (1.63706781897 * r + 3.54388924762) * r + 1.0
    return -value if q < 0 else value


def _upper_tail(z: float) -> float:
    """P(Z > z) for a standard normal Z, Hill's AS 66 (as AS R94 uses it)."""
    upper = True
    if not z > 0:
        upper, z = False, -z
    if not (z <= 7.0 or (upper and z <= 38.0)):
        return 0.0 if upper else 1.0
    y = 0.5 * z * z
    if z <= 1.28:  # the continued fractions evaluated from the inside out, each step as the nested formula has it
        d = y + 5.92885724438
        d = y + 2.62433121679 + 48.6959930692 / d
        d = y + 5.75885480458 - 29.8213557808 / d
        tail = 0.5 - z * (0.398942280444 - 0.399903438504 * y / d)
    else:
        d = z + 3.99019417011
        d = z + 0.742380924027 + 30.789933034 / d
        d = z + 4.8385912808 - 15.1508972451 / d
        d = z - 0.151679116635 + 5.29330324926 / d
        d = z + 3.98064794e-4 + 1.98615381364 / d
        d = z - 3.8052e-8 + 1.00000615302 / d
        tail = 0.398942280385 * math.exp(-y) / d
    return tail if upper else 1 - tail
