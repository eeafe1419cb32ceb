"""Pairwise strategy comparisons within each regime, written to comparisons.csv.

A regime is one combination of every factor except the compared one (`--by`, default memmap.strategy).
Test rule: Welch's t when both samples have n >= 8, are not constant, and pass Shapiro-Wilk (p > 0.05);
Mann-Whitney U (two-sided) otherwise, because simulator metrics are mostly skewed counts with many ties.
Two constant, identical samples are not tested (p = 1) and stay out of the Holm family: no test could
reject them. Two constant samples with different values (every run of each level gives the same number, as
the simulator's deterministic metrics do) are a *deterministic* difference: no test applies (p is empty),
they stay out of the Holm family, and `deterministic` is true; downstream they count like a significant one.
Holm's step-down correction runs over the family of all comparisons of one metric (every regime, every pair).
Effect size: Cliff's delta, P(a > b) - P(a < b), robust to the skew and ties; Hedges' g is given alongside,
and the difference of means with its 95% interval (Welch; Newcombe's hybrid score interval for a 0/1 outcome).
Survival first: the runs are Results.runs, where a dead guest's non-survival metrics are blank, so n_a/n_b count
the runs used and runs_a/runs_b every run of the side; a side whose guests all died is a row with test
"no survivors" and no winner. A comparison that only restates a strategy's definition (kmalloc's kmalloc'd
memmap) is marked `tautology`: it stays in the table, never in the findings. `what_if_a`/`what_if_b` carry what
each side's runs do that no kernel release does (runs.csv `what_if`), so that a finding can say so.
"""

from __future__ import annotations

import itertools
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import special

from balloonsim.analysis.confidence import ALPHA, LEVEL
from balloonsim.analysis.labels import level_text
from balloonsim.analysis.load import DEFAULT_BY, Results
from balloonsim.analysis.memo import last_call
from balloonsim.analysis.metrics import better_of, info, tautology, zero_one
from balloonsim.analysis.significance import hodges_lehmann, mann_whitney_u, rankdata, shapiro_p, welch_t
from balloonsim.analysis.stats import wilson_ci

NO_SURVIVORS = "no survivors"
WHAT_IF = "what_if"  # the runs.csv column of what no kernel does (balloonsim.sim.world)
WHAT_IF_SEP = "; "
NORMAL_MIN_N = 8
MANN_WHITNEY = "mann-whitney-u"
NAN = float("nan")
MIN_N = 2


def holm(pvalues: np.ndarray | list[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values; NaN entries are not part of the family and stay NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def cliffs_delta(a: np.ndarray, b: np.ndarray) -> float:
    """P(a > b) - P(a < b) from ranks (O(n log n)), in [-1, 1]; 0 means fully overlapping."""
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([a, b]))
    u_a = ranks[: len(a)].sum() - len(a) * (len(a) + 1) / 2
    return float(2 * u_a / (len(a) * len(b)) - 1)


def hedges_g(a: np.ndarray, b: np.ndarray) -> float:
    """Standardised mean difference with the small-sample correction; NaN when both spreads are zero."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return float("nan")
    pooled = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    if pooled == 0:
        return float("nan")
    correction = 1 - 3 / (4 * (na + nb) - 9)
    return float((a.mean() - b.mean()) / pooled * correction)


def looks_normal(x: np.ndarray) -> bool:
    """Shapiro-Wilk does not reject normality (p > 0.05) on a non-constant sample of at least 8."""
    if len(x) < NORMAL_MIN_N or np.all(x == x[0]):
        return False
    return shapiro_p(x) > 0.05


def constant(x: np.ndarray) -> bool:
    """Every value the same (a deterministic outcome), up to floating-point noise."""
    if len(x) == 0:
        return False
    return bool((x == x[0]).all()) or bool(np.all(_same(x, x[0])))  # equal values are close: skip isclose


def deterministic(a: np.ndarray, b: np.ndarray) -> bool:
    """Both samples constant (at least MIN_N runs each) and their values differ: a difference without noise."""
    return len(a) >= MIN_N and len(b) >= MIN_N and constant(a) and constant(b) and not _same(a[0], b[0])


def pair_test(a: np.ndarray, b: np.ndarray) -> tuple[str, float, float]:
    """(test name, statistic, two-sided p) following the module's rule."""
    return _pair_test(_Side(a), _Side(b))


class _Side:
    """One side of a comparison (a level's values of a metric in a regime) with what the rules ask of it, each
    worked out once: a side meets every other level, and each rule asked again cost more than the tests."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    @cached_property
    def constant(self) -> bool:
        return constant(self.values)

    @cached_property
    def normal(self) -> bool:
        return looks_normal(self.values)

    @cached_property
    def zero_one(self) -> bool:
        """Every value (NaN aside) 0 or 1: with a rate metric, a proportion (metrics.is_rate)."""
        return zero_one(self.values)


def _pair_test(a: _Side, b: _Side) -> tuple[str, float, float]:
    x, y = a.values, b.values
    if len(x) < MIN_N or len(y) < MIN_N:
        return ("too few runs", float("nan"), float("nan"))
    if a.constant and b.constant:
        if _same(x[0], y[0]):
            return ("identical", float("nan"), 1.0)
        return ("deterministic", float("nan"), float("nan"))
    if a.normal and b.normal:
        return ("welch-t", *welch_t(x, y))
    return (MANN_WHITNEY, *mann_whitney_u(x, y))


def regime_label(row: dict, factors: list[str]) -> str:
    """'driver.name=xen, onlining.delay_s=5' over the factors that vary; 'all runs' when none do."""
    parts = [f"{f}={level_text(f, row[f])}" for f in factors]
    return ", ".join(parts) if parts else "all runs"


def regime_factors(results: Results, by: str | None) -> tuple[list[str], list[str]]:
    """(factors defining a regime, factors naming it).

    A regime is every factor but `by` and the factors varying together with it (zip); it is named by the
    factors that vary independently, since an aliased factor adds nothing to the name.
    """
    tied = results.alias_group(by) if by else set()
    factors = [f for f in results.factors if f not in tied]
    return factors, [f for f in factors if f in results.independent_factors]


def regime_labels(results: Results, by: str | None) -> pd.Series:
    """The regime label of every successful run, aligned with results.runs."""
    return _regimes(results, by)[0].copy()


def regime_order(results: Results, by: str | None) -> list[str]:
    """Every regime label once, in design order (each naming factor's levels as Results.levels gives them)."""
    return list(_regimes(results, by)[1])


def _regimes(results: Results, by: str | None) -> tuple[pd.Series, list[str]]:
    """(regime_labels, regime_order), worked out once per results and `by`: the report, its tables and the
    figures ask a dozen times, and each answer labels every run."""
    return _labelled(results, results.runs, by)


@last_call
def _labelled(results: Results, runs: pd.DataFrame, by: str | None) -> tuple[pd.Series, list[str]]:
    """_regimes of `results` while its table of runs is `runs`."""
    _, shown = regime_factors(results, by)
    rows = runs[shown].to_dict("records")
    labels = pd.Series([regime_label(row, shown) for row in rows], index=runs.index, dtype=object)
    first: dict[str, dict] = {}
    for label, row in zip(labels, rows, strict=True):
        first.setdefault(label, row)
    ranks = {f: {level_text(f, v): i for i, v in enumerate(results.levels(f))} for f in shown}
    order = sorted(first, key=lambda r: tuple(ranks[f].get(level_text(f, first[r][f]), 0) for f in shown))
    return labels, order


def compare(results: Results, by: str | None, alpha: float = ALPHA, metrics: list[str] | None = None) -> pd.DataFrame:
    """comparisons.csv: one row per metric, regime and unordered pair of levels of `by`.

    With `metrics`, only their rows, the same as in the whole table (each metric is its own Holm family)."""
    columns = _columns(results, by)
    names = results.metrics if metrics is None else [m for m in results.metrics if m in metrics]
    if by is None or results.runs[by].nunique(dropna=False) < 2:
        return pd.DataFrame(columns=columns)
    factors, shown = regime_factors(results, by)
    levels = results.levels(by)
    alive = results.alive.to_numpy()
    definitional = by == DEFAULT_BY
    rows = []
    # Each side's values are cut from whole columns by position: slicing the table copies every column, once
    # per regime and level, which cost more than the tests themselves.
    runs = results.runs.reset_index(drop=True)
    columns_of = {m: runs[m].to_numpy(dtype=float) for m in names}
    what_if = runs_what_if(runs)
    grouped = runs.groupby(factors, dropna=False, sort=False) if factors else [((), runs)]
    for key, regime in grouped:
        key = key if isinstance(key, tuple) else (key,)
        where = dict(zip(factors, key, strict=True))
        label = regime_label(where, shown)
        at = regime.index.to_numpy()
        sides = {lvl: at[_match(regime[by], lvl).to_numpy()] for lvl in levels}
        values = {lvl: {m: _Side(_present(columns_of[m][side])) for m in names} for lvl, side in sides.items()}
        survivors = {lvl: int(alive[side].sum()) for lvl, side in sides.items()}
        departures = {lvl: what_if_text(what_if[side]) for lvl, side in sides.items()}
        for a, b in itertools.combinations(levels, 2):
            if len(sides[a]) == 0 or len(sides[b]) == 0:
                continue
            counts = {
                "runs_a": len(sides[a]),
                "runs_b": len(sides[b]),
                "what_if_a": departures[a],
                "what_if_b": departures[b],
            }
            for metric in names:
                side_a, side_b = values[a][metric], values[b][metric]
                x, y = side_a.values, side_b.values
                head = {**where, "regime": label}
                if not info(metric).survival and (survivors[a] == 0 or survivors[b] == 0):
                    if len(x) or len(y) or (survivors[a] == survivors[b] == 0 and info(metric).driver is None):
                        rows.append({**head, **_dead_row(metric, by, a, b, x, y, survivors[a], survivors[b]), **counts})
                    continue
                if len(x) == 0 or len(y) == 0:
                    continue
                row = {**head, **_row(metric, by, a, b, side_a, side_b), **counts}
                row["tautology"] = definitional and tautology(metric, row["a"], row["b"])
                rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=columns)
    table["tautology"] = table["tautology"].fillna(False).astype(bool)
    order = {r: i for i, r in enumerate(regime_order(results, by))}
    table = table.sort_values("regime", key=lambda col: col.map(order), kind="stable").reset_index(drop=True)
    # Holm over each metric's family, on whole columns by position: .loc per metric cost more than the tests.
    test = table["test"].to_numpy(dtype=object)
    identical = test == "identical"
    p = np.where(identical, np.nan, table["p"].to_numpy(dtype=float))
    p_holm = np.full(len(table), np.nan)
    family = np.zeros(len(table), dtype=np.int64)
    for at in table.groupby("metric", sort=False).indices.values():
        p_holm[at] = holm(p[at])
        family[at] = int(np.count_nonzero(~np.isnan(p[at])))
    p_holm[identical] = 1.0
    table["p_holm"] = p_holm
    table["family_size"] = family
    table["alpha"] = alpha
    table["significant"] = table["p_holm"] < alpha
    table["deterministic"] = test == "deterministic"
    decided = table["significant"].to_numpy() | table["deterministic"].to_numpy()
    table["winner"] = [
        _winner(m, a, b, mean_a, mean_b) if d else ""
        for m, a, b, mean_a, mean_b, d in zip(
            table["metric"], table["a"], table["b"], table["mean_a"], table["mean_b"], decided, strict=True
        )
    ]
    return table[columns]


def _dead_row(metric: str, by: str, a, b, x: np.ndarray, y: np.ndarray, alive_a: int, alive_b: int) -> dict:
    """A pair of which one side (or both) has no surviving guest: nothing to compare, no winner. n_a/n_b are
    the survivors (0 names the dead side); the other side's mean is kept."""
    return {
        "metric": metric,
        "by": by,
        "a": level_text(by, a),
        "b": level_text(by, b),
        "n_a": alive_a,
        "n_b": alive_b,
        "mean_a": float(x.mean()) if len(x) else float("nan"),
        "mean_b": float(y.mean()) if len(y) else float("nan"),
        "test": NO_SURVIVORS,
        "tautology": False,
    }


def differs(comp: pd.DataFrame) -> pd.Series:
    """Rows that show a real difference: significant after Holm, or deterministic."""
    if comp.empty:
        return pd.Series(False, index=comp.index, dtype=bool)
    det = comp["deterministic"] if "deterministic" in comp else pd.Series(False, index=comp.index)
    return comp["significant"].astype(bool) | det.astype(bool)


_INDEX: dict[int, tuple[pd.DataFrame, dict]] = {}


def differs_index(comp: pd.DataFrame) -> dict[tuple, bool]:
    """(metric, regime, frozenset({a, b})) -> a real difference, built once per comparisons table (maps and
    tables ask thousands of times)."""
    cached = _INDEX.get(id(comp))
    if cached is not None and cached[0] is comp:
        return cached[1]
    index: dict[tuple, bool] = {}
    if not comp.empty:
        real = differs(comp).to_numpy()
        for m, r, a, b, d in zip(comp["metric"], comp["regime"], comp["a"], comp["b"], real, strict=True):
            index[(m, r, frozenset((str(a), str(b))))] = bool(d)
    _INDEX.clear()
    _INDEX[id(comp)] = (comp, index)
    return index


def pair_rows(comp: pd.DataFrame, metric: str, regime: str, x: str, y: str) -> pd.DataFrame:
    """The comparison rows of one metric, regime and unordered pair of levels (given by their labels)."""
    if comp.empty:
        return comp
    rows = comp[(comp["metric"] == metric) & (comp["regime"] == regime)]
    a, b = rows["a"].astype(str), rows["b"].astype(str)
    return rows[((a == x) & (b == y)) | ((a == y) & (b == x))]


def diff_interval(metric: str, x: np.ndarray, y: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Interval of mean(x) - mean(y): Newcombe's hybrid score interval for 0/1 outcomes (sane at 0 % and
    100 %), Welch's otherwise; exact for two constant samples, NaN below two runs a side."""
    return _diff_interval(metric, _Side(x), _Side(y), level)


def _diff_interval(metric: str, a: _Side, b: _Side, level: float = LEVEL) -> tuple[float, float]:
    x, y = a.values, b.values
    if len(x) < 1 or len(y) < 1:
        return (float("nan"), float("nan"))
    diff = float(x.mean() - y.mean())
    rate = info(metric).unit == "rate"  # is_rate, with each side's 0/1 check made once
    if a.constant and b.constant and len(x) >= MIN_N and len(y) >= MIN_N and not (rate and a.zero_one):
        return (diff, diff)
    if rate and a.zero_one and b.zero_one:
        return _newcombe(float(x.sum()), len(x), float(y.sum()), len(y), level)
    if len(x) < MIN_N or len(y) < MIN_N:
        return (float("nan"), float("nan"))
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = float(np.sqrt(va + vb))
    if se == 0:
        return (diff, diff)
    dof = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    half = float(special.stdtrit(dof, 0.5 + level / 2)) * se
    return (diff - half, diff + half)


def _newcombe(sa: float, na: int, sb: float, nb: int, level: float) -> tuple[float, float]:
    """Newcombe (1998) method 10: the difference of two proportions from their Wilson intervals."""
    pa, pb = sa / na, sb / nb
    la, ua = wilson_ci(sa, na, level)
    lb, ub = wilson_ci(sb, nb, level)
    d = pa - pb
    low = d - np.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    high = d + np.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return (float(max(-1.0, low)), float(min(1.0, high)))


def _row(metric: str, by: str, a, b, side_a: _Side, side_b: _Side) -> dict:
    x, y = side_a.values, side_b.values
    test, stat, p = _pair_test(side_a, side_b)
    mean_a, mean_b = float(x.mean()), float(y.mean())
    low, high = _diff_interval(metric, side_a, side_b)
    # the rank test's own effect and interval: the shift its p-value is about (NaN for the other tests)
    shift, shift_low, shift_high = hodges_lehmann(x, y, LEVEL) if test == MANN_WHITNEY else (NAN, NAN, NAN)
    ratio_ok = mean_b > 0 and x.min() >= 0 and y.min() >= 0
    return {
        "metric": metric,
        "by": by,
        "a": level_text(by, a),
        "b": level_text(by, b),
        "n_a": len(x),
        "n_b": len(y),
        "mean_a": mean_a,
        "mean_b": mean_b,
        "median_a": float(np.median(x)),
        "median_b": float(np.median(y)),
        "diff": mean_a - mean_b,
        "diff_ci_low": low,
        "diff_ci_high": high,
        "shift": shift,
        "shift_ci_low": shift_low,
        "shift_ci_high": shift_high,
        "ratio": mean_a / mean_b if ratio_ok else float("nan"),
        "cliffs_delta": cliffs_delta(x, y),
        "hedges_g": hedges_g(x, y),
        "test": test,
        "statistic": stat,
        "p": p,
    }


def _winner(metric: str, a, b, mean_a: float, mean_b: float) -> str:
    side = better_of(metric, mean_a, mean_b)
    return "" if side == 0 else str(a if side < 0 else b)


def comparison_columns(results: Results, by: str | None) -> list[str]:
    """The columns of comparisons.csv for these results, in order."""
    return _columns(results, by)


def _columns(results: Results, by: str | None) -> list[str]:
    return [
        *regime_factors(results, by)[0],
        "regime",
        "metric",
        "by",
        "a",
        "b",
        "n_a",
        "n_b",
        "runs_a",
        "runs_b",
        "mean_a",
        "mean_b",
        "median_a",
        "median_b",
        "diff",
        "diff_ci_low",
        "diff_ci_high",
        "shift",
        "shift_ci_low",
        "shift_ci_high",
        "ratio",
        "cliffs_delta",
        "hedges_g",
        "test",
        "statistic",
        "p",
        "p_holm",
        "family_size",
        "alpha",
        "significant",
        "deterministic",
        "tautology",
        "winner",
        "what_if_a",
        "what_if_b",
    ]


def runs_what_if(runs: pd.DataFrame) -> np.ndarray:
    """Each run's departures from every kernel release (runs.csv `what_if`, written by the simulation: a strategy
    never merged, a flag a driver's kernel code never passes), '' for a run that does what a kernel does."""
    if WHAT_IF not in runs:
        return np.full(len(runs), "", dtype=object)
    return np.array([v if isinstance(v, str) else "" for v in runs[WHAT_IF]], dtype=object)  # blank cells: NaN


def what_if_text(departures: np.ndarray) -> str:
    """The distinct departures of some runs, in order of appearance, joined as runs.csv joins one run's."""
    seen: dict[str, None] = {}
    for text in departures:
        for part in str(text).split(WHAT_IF_SEP):
            if part:
                seen.setdefault(part, None)
    return WHAT_IF_SEP.join(seen)


def _present(x: np.ndarray) -> np.ndarray:
    return x[~np.isnan(x)]


def _match(col: pd.Series, level) -> pd.Series:
    if isinstance(level, float) and np.isnan(level):
        return col.isna()
    return col == level


def _same(x, y) -> bool | np.ndarray:
    return np.isclose(x, y, rtol=1e-9, atol=0.0)
