"""The best strategy of one cell (a set of samples per strategy) and whether it beats the runner-up.

Shared by the policy maps and the report's tables, so neither reads the other. The winner is the best mean by
the metric's direction; equal means are a tie. A deterministic difference (every run of each side identical,
the values different) counts as significant; otherwise Mann-Whitney U (two-sided, uncorrected) against alpha,
unless the caller supplies its own significance rule (say Holm-corrected comparisons).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

from balloonsim.analysis.compare import deterministic
from balloonsim.analysis.metrics import better_of, info

Significance = Callable[[str, str], bool]


@dataclass
class Cell:
    """One cell's verdict: the winner (if any), by how much, and whether the margin is significant."""

    best: str | None  # None: tie or no data
    runner_up: str | None
    margin: float  # |mean(best) - mean(runner-up)|, metric units
    significant: bool
    note: str = ""


def rank(samples: dict[str, np.ndarray], metric: str) -> list[str]:
    """Strategies from best to worst mean, by the metric's direction."""
    means = {k: float(np.mean(v)) for k, v in samples.items() if len(v)}
    sign = 1.0 if info(metric).better == "lower" else -1.0
    return sorted(means, key=lambda k: sign * means[k])


def best_cell(
    samples: dict[str, np.ndarray], metric: str, alpha: float, significance: Significance | None = None
) -> Cell:
    """The best strategy of one cell; `significance(best, runner_up)` overrides the Mann-Whitney test."""
    order = rank(samples, metric)
    if len(order) < 2:
        return Cell(order[0] if order else None, None, float("nan"), False, "" if order else "no data")
    best, second = order[0], order[1]
    mean_best, mean_second = float(np.mean(samples[best])), float(np.mean(samples[second]))
    if better_of(metric, mean_best, mean_second) == 0 or np.isclose(mean_best, mean_second, rtol=1e-9, atol=0):
        tied = [k for k in order if np.isclose(float(np.mean(samples[k])), mean_best, rtol=1e-9, atol=0)]
        if len(tied) == len(order):
            return Cell(None, None, 0.0, False, "all equal")
        rest = order[len(tied)]  # the best of the others: how far the tied leaders are ahead
        margin = abs(mean_best - float(np.mean(samples[rest])))
        return Cell(None, rest, margin, False, "tie: " + ", ".join(tied))
    if significance is not None:
        significant = significance(best, second)
    elif deterministic(samples[best], samples[second]):
        significant = True
    else:
        significant = _mann_whitney(samples[best], samples[second]) < alpha
    return Cell(best, second, abs(mean_best - mean_second), significant)


def _mann_whitney(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value; NaN below two samples a side, 1 for two identical constant samples."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if np.all(a == a[0]) and np.all(b == b[0]) and a[0] == b[0]:
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(st.mannwhitneyu(a, b, alternative="two-sided").pvalue)
