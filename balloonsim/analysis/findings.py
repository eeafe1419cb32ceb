"""Findings written from comparisons.csv by rules, never by hand.

A finding is one (metric, higher strategy, lower strategy) whose difference is significant after Holm, or
deterministic (every run of each side identical, the values different), in one or more regimes, all in the
same direction. The regimes are described by the simplest condition on the factors that singles out exactly
those regimes ("when onlining.delay_s >= 5"), else listed. Findings are ranked by effect size (Cliff's delta,
1 for a deterministic difference), then by how many regimes they cover, then by the ratio of means.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from balloonsim.analysis.compare import differs, regime_factors, regime_labels, regime_order
from balloonsim.analysis.core import Analysis
from balloonsim.analysis.labels import labels_of, level_text
from balloonsim.analysis.load import DEFAULT_BY
from balloonsim.analysis.metrics import QUESTIONS, fmt, fmt_pair, info

TEST_NAMES = {"mann-whitney-u": "Mann-Whitney U", "welch-t": "Welch t"}


@dataclass
class Finding:
    metric: str
    question: str | None
    higher: str
    lower: str
    text: str
    delta: float  # |Cliff's delta|, median over the regimes
    regimes: int
    log_ratio: float
    directional: bool
    confounded: bool = False  # a side's guests crashed, so its other metrics stop early
    deterministic: bool = False  # every regime of the finding is a deterministic difference (no test)

    @property
    def rank_key(self) -> tuple:
        """Directional metrics first, then effect size (Cliff's δ), then the size of the difference (ratio of
        means; 18 vs 0 counts as large), then coverage: a fully separated 32× difference in one regime ranks
        above a fully separated 1.07× one in two. Deterministic differences have δ = 1 and rank among the
        fully separated significant ones."""
        return (not self.directional, -round(self.delta, 2), -round(self.log_ratio, 1), -self.regimes)


def findings(analysis: Analysis) -> list[Finding]:
    """Every significant or deterministic, same-direction group of comparisons, best-ranked first."""
    comp = analysis.comparisons
    real = differs(comp)
    if comp.empty or not real.any():
        return []
    labels = regime_labels(analysis.results, analysis.by)
    table = _regime_table(analysis)
    out = []
    # Regimes where the pair got an answer: a test (identical pairs included) or a deterministic difference.
    decided = comp[comp["p"].notna() | comp["deterministic"].astype(bool)]
    for (metric, a, b), group in comp[real].groupby(["metric", "a", "b"], sort=False):
        if info(metric).internal:
            continue
        compared = set(decided[(decided["metric"] == metric) & (decided["a"] == a) & (decided["b"] == b)]["regime"])
        for sign, rows in group.groupby(np.sign(group["diff"]), sort=False):
            if sign == 0:
                continue
            higher, lower = (a, b) if sign > 0 else (b, a)
            out.append(_finding(analysis, labels, table, metric, higher, lower, rows, compared))
    return sorted(out, key=lambda f: f.rank_key)


def quiet_metrics(analysis: Analysis, found: list[Finding]) -> tuple[list[str], dict[str, float]]:
    """(metrics compared without any significant difference, metrics identical in every run -> value)."""
    runs = analysis.results.runs
    constant = {}
    for m in analysis.results.metrics:
        values = runs[m].dropna()
        if len(values) and values.nunique() == 1:
            constant[m] = float(values.iloc[0])
    with_finding = {f.metric for f in found}
    compared = analysis.comparisons["metric"].unique() if not analysis.comparisons.empty else []
    quiet = [m for m in compared if m not in with_finding and m not in constant and not info(m).internal]
    return quiet, constant


def significance_line(analysis: Analysis) -> str:
    """One sentence on how many comparisons are significant, or plainly that none are."""
    comp = analysis.comparisons
    by = analysis.by
    if by is None:
        return "No factor varies, so there is nothing to compare."
    if comp.empty:
        return f"`{by}` has a single level among the successful runs, so there is nothing to compare."
    tested = comp[comp["test"].isin(TEST_NAMES)]
    n_sig = int(comp["significant"].sum())
    n_metrics = tested["metric"].nunique()
    det = comp[comp["deterministic"].astype(bool)]
    if n_sig == 0 and det.empty:
        return (
            f"No difference between levels of `{by}` is significant after Holm correction "
            f"({len(tested)} tests over {n_metrics} metrics, α = {analysis.alpha:g})." + _power_note(analysis)
        )
    lines = []
    if not det.empty:
        n_det_metrics = det["metric"].nunique()
        lines.append(
            f"{len(det)} comparison{'s' if len(det) != 1 else ''} ({n_det_metrics} "
            f"metric{'s' if n_det_metrics != 1 else ''}) {'show' if len(det) != 1 else 'shows'} a deterministic "
            "difference: every run of each "
            f"level of `{by}` gives the same value and the values differ, so no test is needed."
        )
    if n_sig:
        lines.append(
            f"{n_sig} of {len(tested)} tests ({n_metrics} metrics) show a difference between levels of `{by}` "
            f"that is significant after Holm correction (α = {analysis.alpha:g})."
        )
    elif len(tested):
        lines.append(
            f"None of the {len(tested)} tests of metrics that vary from run to run ({n_metrics} "
            f"metric{'s' if n_metrics != 1 else ''}) is "
            f"significant after Holm correction (α = {analysis.alpha:g})."
            + _power_note(analysis, "before such a difference can be significant")
        )
    return " ".join(lines)


def _power_note(analysis: Analysis, goal: str = "before any difference can be significant") -> str:
    """When the sample sizes make significance impossible, say so: the answer is "run more seeds"."""
    tested = analysis.comparisons[analysis.comparisons["test"].isin(TEST_NAMES)]
    if tested.empty:
        return ""
    n_a, n_b = int(tested["n_a"].median()), int(tested["n_b"].median())
    smallest = 2 / math.comb(n_a + n_b, n_a)  # exact two-sided Mann-Whitney p of two fully separated samples
    family = int(tested["family_size"].max())
    if smallest * family <= analysis.alpha:
        return ""
    return (
        f" With {n_a} vs {n_b} runs per comparison, even fully separated samples give a Mann-Whitney p of "
        f"{smallest:.2g} at best, and Holm multiplies the smallest p of a metric by up to {family}: more "
        f"replications are needed {goal}."
    )


def by_question(found: list[Finding]) -> dict[str | None, list[Finding]]:
    """Findings grouped by the thread question of their metric, in the order of QUESTIONS, None last."""
    groups: dict[str | None, list[Finding]] = {q: [] for q in [*QUESTIONS, None]}
    for f in found:
        groups[f.question if f.question in QUESTIONS else None].append(f)
    return {q: fs for q, fs in groups.items() if fs}


def _finding(analysis, labels, table, metric, higher, lower, rows, compared) -> Finding:
    runs = analysis.results.runs
    by = analysis.by
    in_scope = runs[labels.isin(set(rows["regime"]))]
    level = labels_of(in_scope[by], by)
    hi = in_scope.loc[level == str(higher), metric].dropna()
    lo = in_scope.loc[level == str(lower), metric].dropna()
    mean_hi, mean_lo = float(hi.mean()), float(lo.mean())
    m = info(metric)
    deltas = np.abs(rows["cliffs_delta"].to_numpy(dtype=float))
    ratio = mean_hi / mean_lo if mean_lo > 0 and min(hi.min(), lo.min()) >= 0 else float("nan")
    where = describe_regimes(set(rows["regime"]), compared, table)
    amount = ""
    if m.unit in ("count", "bytes", "s") and np.isfinite(ratio):
        if ratio >= 1.1:
            amount = f"{ratio:.1f}× " if ratio < 10 else f"{ratio:.0f}× "
        else:
            amount = f"{fmt(metric, mean_hi - mean_lo)} "
    comparative = m.comparative or {"count": "more", "bytes": "more", "s": "longer"}.get(m.unit, "higher")
    per = " per run" if m.unit == "count" else ""
    caveat = _crash_caveat(metric, in_scope, by, (higher, lower))
    det = rows["deterministic"].astype(bool).to_numpy()
    lead = f"**{_name(by, higher)}**: {amount}{comparative} {m.label} than **{_name(by, lower)}**"
    if det.all():
        # No noise: the values themselves are the finding; per-regime values when they differ by regime.
        first_is_hi = (rows["a"].astype(str) == str(higher)).to_numpy()
        hi_values = np.where(first_is_hi, rows["mean_a"], rows["mean_b"])
        lo_values = np.where(first_is_hi, rows["mean_b"], rows["mean_a"])
        values = _values_text(metric, hi_values, lo_values, mean_hi, mean_lo)
        sizes = sorted(set(rows["n_a"].astype(int)) | set(rows["n_b"].astype(int)))
        runs_text = f"all {sizes[0]}–{sizes[-1]} runs" if len(sizes) > 1 else f"all {sizes[0]} runs"
        runs_text = "both runs" if sizes == [2] else runs_text
        text = (
            f"{lead} in every run ({values}{per}){where} — deterministic: {runs_text} of each side "
            f"give the same value, so no test is needed{caveat}"
        )
    else:
        shown_hi, shown_lo = fmt_pair(metric, mean_hi, mean_lo)
        text = f"{lead} ({shown_hi} vs {shown_lo}{per}){where} — {_stats_text(rows, len(compared), deltas, where)}"
        text += caveat
    return Finding(
        metric=metric,
        question=m.question,
        higher=str(higher),
        lower=str(lower),
        text=text,
        delta=float(np.median(deltas)),
        regimes=len(rows),
        log_ratio=abs(float(np.log(ratio))) if np.isfinite(ratio) and ratio > 0 else 10.0,
        directional=m.better is not None,
        confounded=bool(caveat),
        deterministic=bool(det.all()),
    )


def _values_text(metric: str, hi: np.ndarray, lo: np.ndarray, mean_hi: float, mean_lo: float) -> str:
    """The exact values of a deterministic difference: '18 vs 0', or per-regime spans '9–18 vs 0' when each
    side's values differ between regimes but the spans do not overlap; pooled means otherwise."""
    hi_low, hi_high, lo_low, lo_high = float(np.min(hi)), float(np.max(hi)), float(np.min(lo)), float(np.max(lo))
    if _close(hi_low, hi_high) and _close(lo_low, lo_high):
        return " vs ".join(fmt_pair(metric, hi_high, lo_high))
    if hi_low > lo_high or lo_low > hi_high:
        return f"{_range(metric, hi_low, hi_high)} vs {_range(metric, lo_low, lo_high)}"
    return "means " + " vs ".join(fmt_pair(metric, mean_hi, mean_lo))


def _range(metric: str, low: float, high: float) -> str:
    if _close(low, high):
        return fmt(metric, high)
    a, b = fmt_pair(metric, low, high)
    unit_a, unit_b = a.rpartition(" ")[2], b.rpartition(" ")[2]
    if " " in a and unit_a == unit_b:  # '64–66 MiB', not '64 MiB–66 MiB'
        a = a.rpartition(" ")[0]
    return f"{a}–{b}"


def _close(x: float, y: float) -> bool:
    return bool(np.isclose(x, y, rtol=1e-9, atol=0))


def _name(by: str, level) -> str:
    """A strategy name speaks for itself; a level of another factor needs its name: 'onlining.delay = 30'."""
    return level_text(by, level) if by == DEFAULT_BY else f"{by} = {level_text(by, level)}"


def _crash_caveat(metric: str, runs: pd.DataFrame, by: str, levels: tuple) -> str:
    """A strategy whose guests crashed is measured only up to the crash: say so next to its other numbers."""
    if metric in ("guest_crashed", "crash_time_s") or "guest_crashed" not in runs:
        return ""
    notes = []
    shown = labels_of(runs[by], by)
    for level in levels:
        crashed = runs.loc[shown == str(level), "guest_crashed"].dropna()
        if len(crashed) and crashed.mean() > 0:
            notes.append(f"{level} crashed in {crashed.mean() * 100:.0f}% of these runs")
    return f" ({'; '.join(notes)}: measured up to the crash)" if notes else ""


def _stats_text(rows: pd.DataFrame, n_compared: int, deltas: np.ndarray, where: str) -> str:
    """Test, worst Holm p, effect size, and the share of regimes unless the description already says it.

    Regimes where the difference is deterministic have no p; they are counted after the tested ones."""
    counted = not where.startswith((" when", " except"))
    scope = "" if counted or len(rows) >= n_compared else f"; {len(rows)} of {n_compared} regimes"
    det = rows["deterministic"].astype(bool)
    if det.any():
        scope += f"; deterministic (identical runs on each side, no test) in {int(det.sum())} of these regimes"
    rows = rows[~det]
    tests = " / ".join(TEST_NAMES.get(t, t) for t in sorted(set(rows["test"])))
    p = float(rows["p_holm"].max())
    if p < 0.001:
        ptext = "Holm p < 0.001"
    else:
        ptext = f"Holm p {'≤' if len(rows) > 1 else '='} {p:.2g}"
    delta = f"median |Cliff's δ| = {np.median(deltas):.2f}" if len(rows) > 1 else f"|Cliff's δ| = {deltas[0]:.2f}"
    return f"{tests}, {ptext}, {delta}{scope}"


def _regime_table(analysis: Analysis) -> pd.DataFrame:
    """Regime label -> the values of the varying regime factors (one row per regime), in design order;
    attrs["levels"] holds each factor's levels in design order, for conditions that list levels."""
    results = analysis.results
    _, shown = regime_factors(results, analysis.by)
    labels = regime_labels(results, analysis.by)
    table = results.runs[shown].copy()
    table["regime"] = labels
    table = table.drop_duplicates("regime").set_index("regime").loc[regime_order(results, analysis.by)]
    table.attrs["levels"] = {f: results.levels(f) for f in shown}
    return table


def describe_regimes(selected: set[str], compared: set[str], table: pd.DataFrame) -> str:
    """The simplest true description of the selected regimes among the compared ones.

    In order of preference: all of them; an exact condition on one or two factors
    ("when onlining.delay_s ≥ 5"), unless an exception is less than half as long;
    an exception ("except when ..."); a condition most of whose regimes are selected ("in 5 of the 6 regimes
    with ..."); else a short list in design order.
    """
    if selected >= compared:
        if len(compared) < 2:
            return ""
        return " in both regimes" if len(compared) == 2 else f" in all {len(compared)} regimes"
    sub = table.loc[[r for r in table.index if r in compared]]
    sub.attrs = dict(table.attrs)
    exact = _exact_condition(selected, sub)
    excluded = set(sub.index) - selected
    exception = _exact_condition(excluded, sub) if 0 < len(excluded) < len(selected) else ""
    # "except when driver = xen" reads better than a list of the seven other drivers
    if exact and not (exception and 2 * len(exception) <= len(exact)):
        return f" when {exact}"
    if exception:
        return f" except when {exception}"
    loose = _covering_condition(selected, sub)
    if loose:
        return loose
    listed = [r for r in sub.index if r in selected]
    head = "; ".join(listed[:3])
    more = f"; and {len(listed) - 3} more" if len(listed) > 3 else ""
    return f" in {len(listed)} regimes ({head}{more})" if len(listed) > 1 else f" in {head}"


def _conditions(sub: pd.DataFrame, target: set[str]):
    """(text, matching regimes) for every one- and two-factor condition built from the target's values."""
    for size in (1, 2):
        for combo in itertools.combinations(list(sub.columns), size):
            parts = []
            mask = pd.Series(True, index=sub.index)
            for f in combo:
                values = set(sub.loc[[r for r in sub.index if r in target], f])
                mask &= sub[f].isin(values)
                parts.append(_condition(f, values, _levels_in_order(sub, f)))
            if all(parts):
                yield size, " and ".join(parts), set(sub.index[mask])


def _levels_in_order(sub: pd.DataFrame, factor: str) -> list:
    """The factor's values among these regimes, in design order when the table knows it."""
    present = list(sub[factor].unique())
    design = sub.attrs.get("levels", {}).get(factor)
    if not design:
        return present
    rank = {level_text(factor, v): i for i, v in enumerate(design)}
    return sorted(present, key=lambda v: rank.get(level_text(factor, v), len(rank)))


def _exact_condition(target: set[str], sub: pd.DataFrame) -> str:
    found = [(size, len(text), text) for size, text, match in _conditions(sub, target) if match == target]
    return min(found)[2] if found else ""


def _covering_condition(target: set[str], sub: pd.DataFrame) -> str:
    """A condition whose regimes are mostly (at least two thirds) the target ones, and include all of them."""
    best = None
    for size, text, match in _conditions(sub, target):
        extra = len(match) - len(target)
        if match >= target and 0 < extra <= len(match) / 3:
            key = (extra, size, len(text))
            if best is None or key < best[0]:
                best = (key, f" in {len(target)} of the {len(match)} regimes with {text}")
    return best[1] if best else ""


def _condition(factor: str, values: set, all_values: list) -> str:
    """'f = v', 'f ≥ v', 'f ≤ v' or 'f ∈ {…}'; empty when the values are every level (no condition)."""
    if set(all_values) <= values:
        return ""
    if len(values) == 1:
        return f"{factor} = {level_text(factor, next(iter(values)))}"
    numeric = all(
        isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_) for v in all_values
    )
    if numeric:
        ordered = sorted(all_values)
        k = len(values)
        if set(ordered[-k:]) == values:
            return f"{factor} ≥ {level_text(factor, ordered[-k])}"
        if set(ordered[:k]) == values:
            return f"{factor} ≤ {level_text(factor, ordered[k - 1])}"
        shown = sorted(values)
    else:
        shown = [v for v in all_values if v in values]
    return f"{factor} ∈ {{{', '.join(level_text(factor, v) for v in shown)}}}"
