"""Who wins one cell (a set of samples per strategy): the best strategy and whether it beats the runner-up
(`best_cell`), and the dominance view (`dominance`): the levels no other beats, the worst, and the margin.

Shared by the policy maps and the report's tables, so neither reads the other. The winner is the best mean by
the metric's direction; equal means are a tie. A deterministic difference (every run of each side identical,
the values different) counts as significant; otherwise Mann-Whitney U (two-sided, uncorrected) against alpha,
unless the caller supplies its own significance rule (say Holm-corrected comparisons).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from balloonsim.analysis.compare import deterministic
from balloonsim.analysis.metrics import better_of, info
from balloonsim.analysis.significance import mann_whitney_u

Significance = Callable[[str, str], bool]


@dataclass
class Cell:
    """One cell's verdict: the winner (if any), by how much, and whether the margin is significant."""

    best: str | None  # None: tie or no data
    runner_up: str | None
    margin: float  # |mean(best) - mean(runner-up)|, metric units
    significant: bool
    note: str = ""


def level_groups(levels: pd.Series, mask: np.ndarray) -> list[tuple[object, np.ndarray]]:
    """The levels of the runs under `mask`, in order of first appearance and without a missing one (as
    groupby(sort=False) gives them), each with its runs' positions among those under `mask`. Cells are cut from
    columns with these, not from the table: copying every column of a slice, many times a figure, cost more
    than the verdicts."""
    codes, uniques = pd.factorize(levels[mask])
    return [(uniques[i], np.flatnonzero(codes == i)) for i in range(len(uniques))]


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
    return mann_whitney_u(a, b)[1]


@dataclass
class Verdict:
    """One cell by dominance: which levels are best together, what they beat, and by how much."""

    top: list[str]  # levels no other level beats, best mean first; empty without data
    worst: str | None  # the worst mean (None when nothing differs)
    margin: float  # |mean(best) - mean(worst)|, metric units
    relative: float  # the margin against the larger magnitude (a rate's margin as is), in [0, 1]
    differs: bool  # the best beats the worst, significantly or deterministically
    deterministic: bool  # ... and every run of both is identical
    dead: list[str]  # levels without a surviving run in this cell (not ranked)
    beats_all: bool = False  # every top level beats every level outside the top
    equal: bool = False  # every level's mean is the same (as opposed to differences no test confirms)
    bottom: list[str] = field(default_factory=list)  # the worst level and those with the very same mean
    winners: list[str] = field(default_factory=list)  # the top levels that themselves beat the worst


def dominance(
    samples: dict[str, np.ndarray],
    metric: str,
    alpha: float,
    significance: Significance | None = None,
    dead: list[str] | None = None,
) -> Verdict:
    """Rank the levels of one cell; `significance(a, b)` overrides the pairwise rule (uncorrected Mann-Whitney
    or a deterministic difference). Levels tied with the best (no real difference) share the top."""
    dead = list(dead or [])
    order = rank(samples, metric)
    if len(order) < 2:
        return Verdict(order, None, 0.0, 0.0, False, False, dead)
    means = {k: float(np.mean(samples[k])) for k in order}

    def real(a: str, b: str) -> bool:
        if np.isclose(means[a], means[b], rtol=1e-9, atol=0) or better_of(metric, means[a], means[b]) == 0:
            return False
        if significance is not None:
            return significance(a, b)
        if deterministic(samples[a], samples[b]):
            return True
        return _mann_whitney(samples[a], samples[b]) < alpha

    best, worst = order[0], order[-1]
    if not real(best, worst):
        equal = bool(np.isclose(means[best], means[worst], rtol=1e-9, atol=0))
        return Verdict(order, None, 0.0, 0.0, False, False, dead, equal=equal)
    top = [k for k in order if k == best or not real(best, k)]
    margin = abs(means[best] - means[worst])
    scale = max(abs(means[best]), abs(means[worst]))
    relative = margin if info(metric).unit == "rate" else (margin / scale if scale else 0.0)
    det = deterministic(samples[best], samples[worst])
    rest = [k for k in order if k not in top]
    beats_all = all(real(t, r) for t in top for r in rest)
    bottom = [k for k in rest if np.isclose(means[k], means[worst], rtol=1e-9, atol=0)]
    winners = [k for k in top if real(k, worst)]  # tied with the best is not beating the worst
    return Verdict(
        top, worst, margin, float(min(1.0, relative)), True, det, dead, beats_all, bottom=bottom, winners=winners
    )
