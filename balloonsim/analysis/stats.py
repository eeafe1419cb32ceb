"""Summary statistics per combination of factors, with confidence intervals, written to summary.csv.

Seeds and replicates of one configuration are pooled. Means get a t-interval, medians a percentile bootstrap
(deterministic: a fixed seed per call, so the same data gives the same bytes), 0/1 outcomes a Wilson interval.
`runs` counts a cell's runs, `n` the ones used: a dead guest's non-survival metrics are blank (load.py).
Degenerate samples (n < 2, constant) get exact or NaN intervals instead of warnings. Quantiles come from
scipy.special (what scipy.stats' t.ppf and norm.ppf call): scipy.stats alone costs more to import than a
small study's whole summary.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from scipy import special

from balloonsim.analysis.confidence import LEVEL
from balloonsim.analysis.load import Results
from balloonsim.analysis.metrics import is_rate

BOOTSTRAP_SEED = 20181122  # the day of the thread; any fixed number makes the output reproducible
BOOTSTRAP_RESAMPLES = 2000

SUMMARY_COLUMNS = (
    "metric",
    "runs",
    "n",
    "mean",
    "std",
    "mean_ci_low",
    "mean_ci_high",
    "median",
    "median_ci_low",
    "median_ci_high",
    "min",
    "max",
    "is_rate",
    "rate_ci_low",
    "rate_ci_high",
)


def mean_ci(x: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval of the mean; exact for a constant sample, NaN for fewer than 2 values."""
    x = _clean(x)
    n = len(x)
    if n < 2:
        return (float("nan"), float("nan"))
    mean = float(x.mean())
    sem = float(x.std(ddof=1)) / np.sqrt(n)
    half = float(special.stdtrit(n - 1, 0.5 + level / 2)) * sem
    return (mean - half, mean + half)


def median_ci(
    x: np.ndarray, level: float = LEVEL, seed: int = BOOTSTRAP_SEED, n_resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median (BCa breaks down on the ties counts have).

    All resamples are drawn and their medians taken in one numpy call (a fixed seed per call: same data,
    same bytes). Every bootstrap median lies within the sample's range, so the interval does too.
    """
    x = _clean(x)
    if len(x) < 2:
        return (float("nan"), float("nan"))
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    medians = _bootstrap_medians(x, seed, n_resamples)
    tail = (1 - level) / 2 * 100
    low, high = np.clip(np.percentile(medians, [tail, 100 - tail]), x.min(), x.max())  # interpolation's last ulp
    return (float(low), float(high))


def _bootstrap_medians(x: np.ndarray, seed: int, n_resamples: int) -> np.ndarray:
    """np.median of each resample x[rng.integers(0, n, (n_resamples, n))], the same numbers, without sorting
    2000 resamples: a resample's k-th smallest value is the first in sorted order whose draws, counted from the
    smallest, exceed k. The draws depend only on n, so they are counted once per sample size (small ones kept,
    large ones drawn again a block of resamples at a time: see `_draw_count_blocks`)."""
    n = len(x)
    order = np.argsort(x, kind="stable")
    ranked = x[order]
    upper = np.empty(n_resamples, dtype=ranked.dtype)
    lower = np.empty(n_resamples, dtype=ranked.dtype) if n % 2 == 0 else upper
    for first, counts in _draw_count_blocks(seed, n_resamples, n):
        below = np.cumsum(counts[:, order], axis=1, dtype=np.int64 if n > INT32_MAX else np.int32)
        rows = slice(first, first + len(counts))  # draws of the i smallest values, in each resample
        upper[rows] = ranked[np.count_nonzero(below <= n // 2, axis=1)]
        if n % 2 == 0:
            lower[rows] = ranked[np.count_nonzero(below <= n // 2 - 1, axis=1)]
    if n % 2:
        return upper
    return (lower + upper) / 2  # as np.median: the mean of the two middle values


# A sample size's draw counts are kept (for the next metric of the same size) up to CACHED_CELLS resamples x
# values each (8 MiB at most: uint16 below n = 65,536) and KEPT_BYTES for all sizes together, the least recently
# used let go first; each is made BLOCK_CELLS at a time, and larger samples are drawn again per call that way, so
# that a bootstrap never holds n_resamples x n of anything but counts (at n = 10,000: 160 MB for each array it
# used to make). Drawing a size's counts is most of a median's interval when they are not kept: 10,800 runs in 9
# cells of 1,200 took 5.2-6.1 s to analyze when only 1 Mi cells per size were kept (none of them), 2.6-3.0 s now.
CACHED_CELLS = 1 << 22
KEPT_BYTES = 32 << 20
BLOCK_CELLS = 1 << 20
INT32_MAX = (1 << 31) - 1
_kept: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()


def _draw_count_blocks(seed: int, n_resamples: int, n: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first resample, draw counts of a block of resamples) covering all n_resamples: the counts of the draws
    rng.integers(0, n, (n_resamples, n)) makes, drawn a block of rows at a time (the same numbers as in one
    call)."""
    if n_resamples * n <= CACHED_CELLS:
        yield 0, _kept_counts(seed, n_resamples, n)
        return
    yield from _drawn_blocks(seed, n_resamples, n)


def _drawn_blocks(seed: int, n_resamples: int, n: int) -> Iterator[tuple[int, np.ndarray]]:
    rng = np.random.default_rng(seed)
    rows = max(1, BLOCK_CELLS // n)
    for first in range(0, n_resamples, rows):
        yield first, _counts(rng.integers(0, n, size=(min(rows, n_resamples - first), n)), n)


def _kept_counts(seed: int, n_resamples: int, n: int) -> np.ndarray:
    """How often each of n values is drawn in each resample, for median_ci's fixed seed (read-only), kept."""
    key = (seed, n_resamples, n)
    counts = _kept.get(key)
    if counts is not None:
        _kept.move_to_end(key)
        return counts
    counts = np.empty((n_resamples, n), dtype=np.min_scalar_type(n))
    for first, block in _drawn_blocks(seed, n_resamples, n):
        counts[first : first + len(block)] = block
    counts.flags.writeable = False
    _kept[key] = counts
    kept = sum(c.nbytes for c in _kept.values())
    while kept > KEPT_BYTES and len(_kept) > 1:
        kept -= _kept.popitem(last=False)[1].nbytes
    return counts


def _counts(draws: np.ndarray, n: int) -> np.ndarray:
    """Per row of `draws` (values in 0..n-1), how often each value was drawn, in the smallest integers that
    hold n."""
    rows = np.arange(len(draws))[:, None] * n
    counts = np.bincount((draws + rows).ravel(), minlength=len(draws) * n).reshape(len(draws), n)
    return counts.astype(np.min_scalar_type(n), copy=False)


def wilson_ci(successes: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion: sane at 0 and 1, unlike the normal approximation."""
    if n <= 0:
        return (float("nan"), float("nan"))
    z = float(special.ndtri(0.5 + level / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def describe(x: np.ndarray, rate: bool = False) -> dict[str, float]:
    """Every summary column of one sample."""
    x = _clean(x)
    n = len(x)
    out: dict[str, float] = {"n": n}
    if n == 0:
        nan = float("nan")
        out.update({k: nan for k in SUMMARY_COLUMNS if k not in ("metric", "runs", "n", "is_rate")})
        out["is_rate"] = rate
        return out
    out["mean"] = float(x.mean())
    out["std"] = float(x.std(ddof=1)) if n > 1 else float("nan")
    out["mean_ci_low"], out["mean_ci_high"] = mean_ci(x)
    out["median"] = float(np.median(x))
    out["median_ci_low"], out["median_ci_high"] = median_ci(x)
    out["min"] = float(x.min())
    out["max"] = float(x.max())
    out["is_rate"] = rate
    if rate:
        out["rate_ci_low"], out["rate_ci_high"] = wilson_ci(float(x.sum()), n)
    else:
        out["rate_ci_low"] = out["rate_ci_high"] = float("nan")
    return out


def interval(x: np.ndarray, rate: bool) -> tuple[float, float]:
    """The interval plots draw around a mean: Wilson for rates, t otherwise."""
    x = _clean(x)
    if rate:
        return wilson_ci(float(x.sum()), len(x))
    return mean_ci(x)


def group_summary(runs: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Tidy summary: one row per group of `keys` and metric."""
    rates = {m: is_rate(m, runs[m]) for m in metrics}
    rows = []
    runs = runs.reset_index(drop=True)  # groups cut from whole columns by position, not copied per metric
    columns = {m: runs[m].to_numpy(dtype=float) for m in metrics}
    grouped = runs.groupby(list(keys), dropna=False, sort=False) if keys else [((), runs)]
    for key, group in grouped:
        key = key if isinstance(key, tuple) else (key,)
        at = group.index.to_numpy()
        for m in metrics:
            row = dict(zip(keys, key, strict=True))
            row["metric"] = m
            row["runs"] = len(group)  # n: the runs whose value was used (a dead guest's are blank)
            row.update(describe(columns[m][at], rates[m]))
            rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, *SUMMARY_COLUMNS])


def summarize(results: Results) -> pd.DataFrame:
    """summary.csv: per combination of all factors (seeds and replicates pooled) and metric."""
    return group_summary(results.runs, results.factors, results.metrics)


def _clean(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[~np.isnan(x)]
