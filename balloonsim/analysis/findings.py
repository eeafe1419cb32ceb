"""Findings written from comparisons.csv by rules, never by hand, and from nothing else.

A finding is one (metric, higher level, lower level) whose difference is significant after Holm, or
deterministic (every run of each side identical, the values different), in one or more regimes, all in the
same direction. Its sentence gives the pooled means, the difference with its 95% interval, Cliff's δ, the
largest Holm-corrected p (or "deterministic: in every run") and the runs used per side. The regimes are
described by the simplest condition on the factors that singles out exactly those regimes ("when
onlining.delay ≥ 30"), else listed; factors that do not vary never appear. Comparisons that restate a
strategy's definition (`tautology`) and pairs with a side whose guests all died (`no survivors`) are no
findings; the latter get a sentence of their own. A sentence naming a level whose runs do what no kernel release
does (comparisons.csv what_if_a/what_if_b) ends with a What-if note. Because every number comes from the table,
the sentences can be regenerated from comparisons.csv alone (a test does).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from balloonsim.analysis.compare import NO_SURVIVORS, WHAT_IF_SEP, differs, what_if_text
from balloonsim.analysis.core import Analysis
from balloonsim.analysis.labels import level_text
from balloonsim.analysis.load import DEFAULT_BY
from balloonsim.analysis.memo import last_call
from balloonsim.analysis.metrics import fmt, fmt_pair, info

TEST_NAMES = {"mann-whitney-u": "Mann-Whitney U", "welch-t": "Welch t"}
SHIFT_COLUMNS = ("shift", "shift_ci_low", "shift_ci_high")  # comparisons.csv: the rank test's effect and interval
TEXT_COLUMNS = ("regime", "metric", "by", "a", "b", "test", "winner", "what_if_a", "what_if_b")
_EMPTY_WHEN_NAN = ("winner", "what_if_a", "what_if_b")  # text columns a blank cell of means ''
WHAT_IF_SECTION = "What no kernel does"  # the report's section that the what-if numbers of the sentences refer to


@dataclass
class Finding:
    """One difference in one direction, in the regimes where it holds; `text` is its sentence. Findings whose
    numbers are the same word for word (kmalloc and subrange-hint both never crash where altmap always does)
    are merged into one sentence naming every level on each side."""

    metric: str
    topic: str | None
    higher: str
    lower: str
    head: str  # '1.3× more OOM kills than'
    tail: str  # ' (102 vs 78.4 per run) when ... — ...; n = 12 vs 12 runs.'
    by: str
    delta: float  # |Cliff's delta|, median over the regimes
    regimes: int
    log_ratio: float
    directional: bool
    deterministic: bool = False  # every regime of the finding is a deterministic difference (no test)
    rows: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    pooled_diff: float = 0.0  # |pooled mean of the higher side - of the lower side|
    highers: list[str] = field(default_factory=list)
    lowers: list[str] = field(default_factory=list)
    # level -> the numbers (what_if_numbers()) of what no kernel does in its runs of these regimes
    what_ifs: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.highers = self.highers or [self.higher]
        self.lowers = self.lowers or [self.lower]

    @property
    def text(self) -> str:
        highers = _and([f"**{_name(self.by, h)}**" for h in self.highers])
        lowers = _and([f"**{_name(self.by, lo)}**" for lo in self.lowers])
        return f"{highers}: {self.head} {lowers}{self.tail}{self.what_if_clause}"

    @property
    def what_if_clause(self) -> str:
        return what_if_clause(self.by, [(lvl, self.what_ifs.get(lvl, ())) for lvl in (*self.highers, *self.lowers)])

    @property
    def rank_key(self) -> tuple:
        """Directional metrics first, then effect size (Cliff's δ), then the size of the difference (ratio of
        means; 18 vs 0 counts as large), then coverage: a fully separated 32× difference in one regime ranks
        above a fully separated 1.07× one in two. Deterministic differences have δ = 1 and rank among the
        fully separated significant ones."""
        return (not self.directional, -round(self.delta, 2), -round(self.log_ratio, 1), -self.regimes)

    @property
    def better(self) -> str | None:
        """The level the metric's direction prefers, None for a metric without one."""
        direction = info(self.metric).better
        return None if direction is None else (self.lower if direction == "lower" else self.higher)


def findings(analysis: Analysis) -> list[Finding]:
    """Every significant or deterministic, same-direction group of comparisons, best-ranked first."""
    return from_comparisons(analysis.comparisons, analysis.by)


def from_comparisons(comp: pd.DataFrame, by: str | None) -> list[Finding]:
    """The findings of a comparisons table (as `compare` makes it or as read back from comparisons.csv)."""
    if comp.empty or by is None:
        return []
    numbers = what_if_numbers(comp)  # over the whole table, as the report's section numbers them
    comp = _usable(comp)
    real = differs(comp)
    if not real.any():
        return []
    table = regime_table(comp)
    # Rows grouped by (metric, a, b) in Python over whole columns: a pandas groupby and its sub-frames per
    # finding cost more than the sentences.
    compared_by: dict[tuple, set] = {}
    decided = (comp["p"].notna() | comp["deterministic"].astype(bool)).to_numpy()
    keys = zip(comp["metric"], comp["a"], comp["b"], strict=True)
    for key, regime, d in zip(keys, comp["regime"], decided, strict=True):
        if d:
            compared_by.setdefault(key, set()).add(regime)
    found = comp[real]
    cols = {c: found[c].to_numpy(dtype=object) for c in ("regime", "test")}
    cols["a"] = found["a"].astype(str).to_numpy(dtype=object)
    cols["deterministic"] = found["deterministic"].astype(bool).to_numpy()
    for c in ("mean_a", "mean_b", "n_a", "n_b", "runs_a", "runs_b", "diff_ci_low", "diff_ci_high", *SHIFT_COLUMNS):
        if c in found:
            cols[c] = found[c].to_numpy()
    for c in ("what_if_a", "what_if_b"):
        if c in found:
            cols[c] = np.array([v if isinstance(v, str) else "" for v in found[c]], dtype=object)
    for c in ("diff", "cliffs_delta", "p_holm"):
        cols[c] = found[c].to_numpy(dtype=float)
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(found["metric"], found["a"], found["b"], strict=True)):
        groups.setdefault(key, []).append(i)
    out = []
    for (metric, a, b), positions in groups.items():
        at = np.array(positions, dtype=np.intp)
        compared = compared_by.get((metric, a, b), set())
        signs = np.sign(cols["diff"][at])
        for sign in dict.fromkeys(signs[~np.isnan(signs)].tolist()):  # in order of appearance, as groupby
            if sign == 0:
                continue
            higher, lower = (a, b) if sign > 0 else (b, a)
            rows = at[signs == sign]
            side = {c: v[rows] for c, v in cols.items()}
            finding = _finding(by, table, metric, higher, lower, found.iloc[rows], side, compared)
            finding.what_ifs = _what_ifs(side, str(higher), str(lower), numbers)
            out.append(finding)
    return merge(sorted(out, key=lambda f: f.rank_key))


def merge(found: list[Finding]) -> list[Finding]:
    """Merge findings whose sentences differ only in the levels named: first the lower sides of one higher
    level, then the higher sides of one group of lower levels. The first (best-ranked) keeps its place."""
    for side in ("lowers", "highers"):
        kept: list[Finding] = []
        index: dict[tuple, Finding] = {}
        for f in found:
            other = tuple(f.highers) if side == "lowers" else tuple(f.lowers)
            key = (f.metric, other, f.head, f.tail)
            if key in index:
                getattr(index[key], side).extend(getattr(f, side))
                index[key].what_ifs.update(f.what_ifs)
            else:
                index[key] = f
                kept.append(f)
        found = kept
    return found


def _usable(comp: pd.DataFrame) -> pd.DataFrame:
    """Rows that can make a finding: no tautologies, no internal metrics, no pairs without survivors."""
    keep = comp["test"].astype(str) != NO_SURVIVORS
    if "tautology" in comp:
        keep &= ~comp["tautology"].fillna(False).astype(bool)
    keep &= ~comp["metric"].map(lambda m: info(m).internal)
    return comp[keep]


def no_survivors(comp: pd.DataFrame, by: str | None) -> list[str]:
    """One sentence per level whose guests all died in some regimes: its other metrics are not compared there."""
    if comp.empty or by is None:
        return []
    dead = comp[comp["test"].astype(str) == NO_SURVIVORS]
    if dead.empty:
        return []
    table = regime_table(comp)
    every = list(table.index)
    out = []
    levels: dict[str, set[str]] = {}
    runs: dict[str, set[int]] = {}
    departures: dict[str, list[str]] = {}
    sides = dead[["a", "n_a", "runs_a", "b", "n_b", "runs_b", "regime"]].itertuples(index=False)
    what_if = zip(dead.get("what_if_a", [""] * len(dead)), dead.get("what_if_b", [""] * len(dead)), strict=True)
    for (a, n_a, runs_a, b, n_b, runs_b, regime), (w_a, w_b) in zip(sides, what_if, strict=True):
        for side, n, total, w in ((a, n_a, runs_a, w_a), (b, n_b, runs_b, w_b)):
            if int(n) == 0:
                levels.setdefault(str(side), set()).add(regime)
                runs.setdefault(str(side), set()).add(int(total))
                departures.setdefault(str(side), []).append(w if isinstance(w, str) else "")
    numbers = what_if_numbers(comp)
    groups: dict[tuple, list[str]] = {}
    for level, regimes in levels.items():
        groups.setdefault((frozenset(regimes), tuple(sorted(runs[level]))), []).append(level)
    for (regimes, counts), names in groups.items():
        where = describe_regimes(set(regimes), set(every), table)
        count = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        scope = "any regime" if not where else ("these regimes" if len(regimes) > 1 else "this regime")
        whose = "its" if len(names) == 1 else "their"
        each = " of each regime" if scope != "this regime" else ""  # one regime: its runs, not "each regime's"
        refs = [(n, _numbers(departures[n], numbers)) for n in names]
        out.append(
            f"{_and([f'**{_name(by, n)}**' for n in names])}: no guest survived{where or ' in any regime'} "
            f"(all {count} runs{each} died), so {whose} other metrics are not compared in {scope}: no "
            f"survivors, no winner.{what_if_clause(by, refs)}"
        )
    return out


def significance_line(analysis: Analysis) -> str:
    """One sentence on how many comparisons are significant, or plainly that none are."""
    return significance_text(analysis.comparisons, analysis.by, analysis.alpha)


def significance_text(comp: pd.DataFrame, by: str | None, alpha: float) -> str:
    if by is None:
        return "No factor varies, so there is nothing to compare."
    if comp.empty:
        return f"`{by}` has a single level among the successful runs, so there is nothing to compare."
    tested = comp[comp["test"].isin(TEST_NAMES)]
    n_sig = int(comp["significant"].astype(bool).sum())
    n_metrics = tested["metric"].nunique()
    det = comp[comp["deterministic"].astype(bool)]
    if n_sig == 0 and det.empty:
        return (
            f"No difference between levels of `{by}` is significant after Holm correction "
            f"({len(tested)} tests over {n_metrics} metrics, α = {alpha:g})." + _power_note(comp, alpha)
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
            f"that is significant after Holm correction (α = {alpha:g})."
        )
    elif len(tested):
        lines.append(
            f"None of the {len(tested)} tests of metrics that vary from run to run ({n_metrics} "
            f"metric{'s' if n_metrics != 1 else ''}) is "
            f"significant after Holm correction (α = {alpha:g})."
            + _power_note(comp, alpha, "before such a difference can be significant")
        )
    return " ".join(lines)


def _power_note(comp: pd.DataFrame, alpha: float, goal: str = "before any difference can be significant") -> str:
    """When the sample sizes make significance impossible, say so: the answer is "run more seeds"."""
    tested = comp[comp["test"].isin(TEST_NAMES)]
    if tested.empty:
        return ""
    n_a, n_b = int(tested["n_a"].median()), int(tested["n_b"].median())
    smallest = 2 / math.comb(n_a + n_b, n_a)  # exact two-sided Mann-Whitney p of two fully separated samples
    family = int(tested["family_size"].max())
    if smallest * family <= alpha:
        return ""
    return (
        f" With {n_a} vs {n_b} runs per comparison, even fully separated samples give a Mann-Whitney p of "
        f"{smallest:.2g} at best, and Holm multiplies the smallest p of a metric by up to {family}: more "
        f"replications are needed {goal}."
    )


def quiet_text(comp: pd.DataFrame, metric: str, by: str) -> str:
    """What a compared metric without any finding shows: identical everywhere (and its value), or no
    significant difference (and the smallest corrected p). Empty when the metric was not compared."""
    cols = _metric_rows(comp)
    at = cols.rows.get(metric)
    if at is not None and cols.tautology is not None:
        at = at[~cols.tautology[at]]
    if at is None or not len(at):
        return ""
    label = info(metric).label
    label = label[0].upper() + label[1:]
    value = _constant(cols, at)
    if value is not None:
        return f"{label}: {fmt(metric, value)} in every run of every {_noun(by)}."
    tested = at[~np.isnan(cols.p_holm[at]) & (cols.test[at] != "identical")]
    if not len(tested):
        return f"{label}: no difference between any two levels of `{by}` in any regime."
    best = float(cols.p_holm[tested].min())
    return (
        f"{label}: no difference between any two levels of `{by}` is significant after Holm correction "
        f"({len(tested)} test{'s' if len(tested) != 1 else ''}, smallest Holm p = {best:.2g})."
    )


def constant_metrics(comp: pd.DataFrame) -> dict[str, float]:
    """Metrics identical in every compared run (every row 'identical', one value): metric -> value."""
    cols = _metric_rows(comp)
    out = {}
    for metric, at in cols.rows.items():
        value = _constant(cols, at)
        if value is not None:
            out[str(metric)] = value
    return out


@dataclass(frozen=True)
class _MetricRows:
    """The columns quiet_text and constant_metrics read, as arrays, and each metric's rows with survivors (row
    positions, in table order): the report asks metric by metric, and filtering the table each time cost more
    than the sentences."""

    rows: dict[str, np.ndarray]
    test: np.ndarray
    mean_a: np.ndarray
    mean_b: np.ndarray
    p_holm: np.ndarray
    tautology: np.ndarray | None


@last_call
def _metric_rows(comp: pd.DataFrame) -> _MetricRows:
    """_MetricRows of a comparisons table, made once per table."""
    test = comp["test"].astype(str).to_numpy(dtype=object) if len(comp) else np.zeros(0, dtype=object)
    rows: dict[str, list[int]] = {}
    if len(comp):
        for i, (metric, t) in enumerate(zip(comp["metric"], test, strict=True)):
            if t != NO_SURVIVORS:
                rows.setdefault(metric, []).append(i)
    numbers = {c: comp[c].to_numpy(dtype=float) if c in comp else np.zeros(0) for c in ("mean_a", "mean_b", "p_holm")}
    return _MetricRows(
        rows={m: np.array(at, dtype=np.intp) for m, at in rows.items()},
        test=test,
        tautology=comp["tautology"].astype(bool).to_numpy() if "tautology" in comp else None,
        **numbers,
    )


def _constant(cols: _MetricRows, at: np.ndarray) -> float | None:
    """The one value every compared run had (each pair identical, or a single run with that value), else None."""
    values = np.concatenate([cols.mean_a[at], cols.mean_b[at]])
    values = values[~np.isnan(values)]
    if not len(values) or not all(t in ("identical", "too few runs") for t in cols.test[at]):
        return None
    return float(values[0]) if np.allclose(values, values[0], rtol=1e-9, atol=0) else None


def _noun(by: str) -> str:
    return "strategy" if by == DEFAULT_BY else f"level of `{by}`"


def _finding(
    by: str, table: pd.DataFrame, metric, higher, lower, rows: pd.DataFrame, cols: dict[str, np.ndarray], compared: set
) -> Finding:
    """One finding from its rows (`cols`: their columns as arrays)."""
    m = info(metric)
    first_is_hi = cols["a"] == str(higher)
    hi_mean = np.where(first_is_hi, cols["mean_a"], cols["mean_b"]).astype(float)
    lo_mean = np.where(first_is_hi, cols["mean_b"], cols["mean_a"]).astype(float)
    hi_n = np.where(first_is_hi, cols["n_a"], cols["n_b"]).astype(int)
    lo_n = np.where(first_is_hi, cols["n_b"], cols["n_a"]).astype(int)
    hi_runs = np.where(first_is_hi, cols["runs_a"], cols["runs_b"]).astype(int) if "runs_a" in cols else hi_n
    lo_runs = np.where(first_is_hi, cols["runs_b"], cols["runs_a"]).astype(int) if "runs_a" in cols else lo_n
    sign = np.where(first_is_hi, 1.0, -1.0)
    diff = cols["diff"] * sign
    low = np.where(first_is_hi, cols["diff_ci_low"], -cols["diff_ci_high"]).astype(float)
    high = np.where(first_is_hi, cols["diff_ci_high"], -cols["diff_ci_low"]).astype(float)
    shifts = _oriented_shifts(cols, first_is_hi)
    pooled_hi = float(np.sum(hi_mean * hi_n) / np.sum(hi_n))
    pooled_lo = float(np.sum(lo_mean * lo_n) / np.sum(lo_n))
    deltas = np.abs(cols["cliffs_delta"])
    ratio = pooled_hi / pooled_lo if pooled_lo > 0 and min(hi_mean.min(), lo_mean.min()) >= 0 else float("nan")
    where = describe_regimes(set(cols["regime"]), compared, table)
    amount = ""
    if m.unit in ("count", "pages", "bytes", "s") and np.isfinite(ratio):
        if ratio >= 1.1:
            amount = f"{ratio:.1f}× " if ratio < 10 else f"{ratio:.0f}× "
        else:
            amount = f"{fmt(metric, pooled_hi - pooled_lo)} "
    comparative = m.comparative or {"count": "more", "pages": "more", "bytes": "more", "s": "longer"}.get(
        m.unit, "higher"
    )
    per = " per run" if m.unit in ("count", "pages") else ""
    det = cols["deterministic"]
    head = f"{amount}{comparative} {m.label} than"
    runs_text = _runs_text(hi_n, lo_n, hi_runs, lo_runs, len(rows))
    if det.all():
        values = _values_text(metric, hi_mean, lo_mean, pooled_hi, pooled_lo)
        tail = f" in every run ({values}{per}){where} — deterministic: in every run; {runs_text}."
    else:
        shown_hi, shown_lo = fmt_pair(metric, pooled_hi, pooled_lo)
        stats = _stats_text(metric, cols, det, diff, low, high, shifts, deltas, len(compared), where)
        tail = f" ({shown_hi} vs {shown_lo}{per}){where} — {stats}; {runs_text}."
    return Finding(
        metric=str(metric),
        topic=m.topic,
        higher=str(higher),
        lower=str(lower),
        head=head,
        tail=tail,
        by=by,
        delta=float(np.median(deltas)),
        regimes=len(rows),
        log_ratio=abs(float(np.log(ratio))) if np.isfinite(ratio) and ratio > 0 else 10.0,
        directional=m.better is not None,
        deterministic=bool(det.all()),
        rows=rows,
        pooled_diff=abs(pooled_hi - pooled_lo),
    )


def what_if_clause(by: str, levels: list[tuple[str, tuple[int, ...]]]) -> str:
    """' What-if (*What no kernel does*): **altmap** and **altmap,kmalloc** (1, 2); **subrange-hint** (3).' for
    the levels named whose runs do what no kernel release does (numbered in the report's section WHAT_IF_SECTION):
    the sentence then describes a proposal, or a driver passing a flag it never passes, not a kernel."""
    groups: dict[tuple[int, ...], list[str]] = {}
    for level, refs in levels:
        if refs:
            groups.setdefault(refs, []).append(f"**{_name(by, level)}**")
    if not groups:
        return ""
    if len(groups) == 1 and len(next(iter(groups.values()))) == len(levels) > 1:
        # every side departs alike: the departure comes with the regime (another factor), not with a level
        refs = next(iter(groups))
        which = f"departure {refs[0]}" if len(refs) == 1 else "departures " + _or([str(r) for r in refs])
        return f" What-if (*{WHAT_IF_SECTION}*): every side's runs, in the regimes with {which}."
    parts = [f"{_and(names)} ({', '.join(map(str, refs))})" for refs, names in groups.items()]
    return f" What-if (*{WHAT_IF_SECTION}*): {'; '.join(parts)}."


def what_if_numbers(comp: pd.DataFrame) -> dict[str, int]:
    """Each departure from every kernel release in comparisons.csv (what_if_a, what_if_b) -> its number, from 1 in
    order of first appearance: the sentences and the report's section number them alike."""
    cells = [c for pair in zip(comp.get("what_if_a", ()), comp.get("what_if_b", ()), strict=True) for c in pair]
    text = what_if_text(np.array([c if isinstance(c, str) else "" for c in cells], dtype=object))
    return {part: i for i, part in enumerate(filter(None, text.split(WHAT_IF_SEP)), start=1)}


def _what_ifs(cols: dict[str, np.ndarray], higher: str, lower: str, numbers: dict[str, int]) -> dict:
    """Each side's departures over the finding's regimes, as numbers (a level can depart in one regime and not in
    another: altmap is a kernel's own for a DIMM and a what-if for hv_balloon)."""
    if "what_if_a" not in cols:
        return {}
    first_is_hi = cols["a"] == higher
    return {
        level: _numbers(np.where(first_is_hi, cols[mine], cols[other]), numbers)
        for level, mine, other in ((higher, "what_if_a", "what_if_b"), (lower, "what_if_b", "what_if_a"))
    }


def _numbers(cells, numbers: dict[str, int]) -> tuple[int, ...]:
    """The numbers of the departures in some what_if cells, ascending."""
    text = what_if_text(np.asarray(cells, dtype=object))
    return tuple(sorted(numbers[p] for p in text.split(WHAT_IF_SEP) if p in numbers))


def _runs_text(hi_n, lo_n, hi_runs, lo_runs, regimes: int) -> str:
    """'n = 12 vs 12 runs', per regime when several; survivors shown as '4 of 10 (survivors)'."""

    def side(n, total) -> str:
        n_text = _span(n)
        if (n < total).any():
            return f"{n_text} of {_span(total)} (survivors)"
        return n_text

    per = " per regime" if regimes > 1 else ""
    return f"n = {side(hi_n, hi_runs)} vs {side(lo_n, lo_runs)} runs{per}"


def _span(values) -> str:
    lo, hi = int(np.min(values)), int(np.max(values))
    return str(lo) if lo == hi else f"{lo}–{hi}"


def _oriented_shifts(cols: dict[str, np.ndarray], first_is_hi: np.ndarray) -> tuple[np.ndarray, ...]:
    """The Hodges-Lehmann shift and its interval of each row, as the higher side over the lower (NaN where the
    test was not Mann-Whitney U, or the table predates the columns)."""
    if "shift" not in cols:
        nan = np.full(len(first_is_hi), np.nan)
        return nan, nan, nan
    shift, low, high = (np.asarray(cols[c], dtype=float) for c in SHIFT_COLUMNS)
    return (
        np.where(first_is_hi, shift, -shift),
        np.where(first_is_hi, low, -high),
        np.where(first_is_hi, high, -low),
    )


def _stats_text(metric, cols, det, diff, low, high, shifts, deltas, n_compared: int, where: str) -> str:
    """Difference and interval, Cliff's δ, the test(s), the largest Holm p; the share of regimes unless the
    description already says it, and how many regimes were deterministic."""
    tested = ~det
    order = np.argsort(diff[tested], kind="stable")
    d, lo, hi = diff[tested][order], low[tested][order], high[tested][order]
    shifts = tuple(x[tested][order] for x in shifts)
    first = f"{_signed(metric, d[0])} ({_interval(metric, lo[0], hi[0])})"
    if len(d) > 1 and not np.isclose(d[0], d[-1], rtol=1e-9, atol=0):
        last = f"{_signed(metric, d[-1])} ({_interval(metric, lo[-1], hi[-1])})"
        difference = f"difference {first} to {last} per regime"
    else:
        difference = f"difference {first}"
    tested_deltas = deltas[tested]
    if len(tested_deltas) > 1 and not np.isclose(tested_deltas.min(), tested_deltas.max()):
        delta = f"Cliff's δ {tested_deltas.min():.2f}–{tested_deltas.max():.2f}"
    else:
        delta = f"Cliff's δ {tested_deltas.max():.2f}"
    tests = " / ".join(TEST_NAMES.get(t, t) for t in sorted(set(cols["test"][tested])))
    p_holm = cols["p_holm"][tested]
    p = float(p_holm[~np.isnan(p_holm)].max()) if not np.isnan(p_holm).all() else float("nan")
    ptext = "Holm p < 0.001" if p < 0.001 else f"Holm p {'≤' if tested.sum() > 1 else '='} {p:.2g}"
    counted = not where.startswith((" when", " except"))
    scope = "" if counted or len(det) >= n_compared else f"; {len(det)} of {n_compared} regimes"
    if det.any():
        scope += f"; deterministic (identical runs on each side) in {int(det.sum())} of these regimes"
        scope += f", difference {_deterministic_span(metric, diff[det])} there"
    return f"{difference}, {delta}, {tests}, {ptext}{scope}{_spans_zero(metric, lo, hi, len(det), shifts)}"


def _deterministic_span(metric: str, diff: np.ndarray) -> str:
    """The exact differences of a line's deterministic regimes: '+96 MiB', '+0.11 to +0.12'. Without them the
    pooled means at the head of the line (the tested and the deterministic regimes together) would not follow
    from the one difference the line shows."""
    d = np.sort(diff)
    first = _signed(metric, float(d[0]))
    return first if _close(float(d[0]), float(d[-1])) else f"{first} to {_signed(metric, float(d[-1]))}"


def _spans_zero(metric: str, low: np.ndarray, high: np.ndarray, regimes: int, shifts: tuple[np.ndarray, ...]) -> str:
    """Said when the interval of a tested difference of means holds 0 (`low`, `high`: the tested regimes' of a
    line about `regimes`). Welch's t and its interval agree, but Mann-Whitney U compares the runs' ranks: it
    can find one side's runs higher while the means' interval (a few outliers widen it) still holds 0, and the
    line must not let "109 KiB more" read as a known amount. The rank test's own effect then says how much: the
    Hodges-Lehmann shift, with the interval the test inverts when the line is about one regime (`shifts`: shift,
    low, high of the same regimes, the line's higher side over its lower). A negative shift is a rank difference
    the other way (most of this side's runs lower, a few far higher): the line says so, since its head follows
    the means."""
    spans = (low < 0) & (high > 0)
    if not spans.any():
        return ""
    where = "" if regimes == 1 else f" in {int(spans.sum())} of these regimes"
    shift = shifts[0][spans]
    by_rank = _rank_shift(metric, shift, *(x[spans] for x in shifts[1:]))
    known = shift[np.isfinite(shift)]
    if len(known) and (known < 0).all():
        # the rank test found the other side higher: most runs are lower here, a few lift the mean
        return (
            f"; by rank the runs differ the other way{by_rank}: a few runs make this side's higher mean, whose "
            f"95% interval spans 0{where}"
        )
    return f"; the runs differ by rank{by_rank}, but the means' 95% interval spans 0{where}"


def _rank_shift(metric: str, shift: np.ndarray, low: np.ndarray, high: np.ndarray) -> str:
    """' (Hodges-Lehmann shift +1 MiB, 95% CI +1 MiB to +2 MiB)', or the range of the shifts of several regimes;
    '' where there is none (another test)."""
    known = np.isfinite(shift)
    if not known.any():
        return ""
    shift, low, high = shift[known], low[known], high[known]
    if len(shift) == 1:
        interval = f", {_interval(metric, low[0], high[0])}" if np.isfinite(low[0]) and np.isfinite(high[0]) else ""
        return f" (Hodges-Lehmann shift {_signed(metric, float(shift[0]))}{interval})"
    first, last = _signed(metric, float(shift.min())), _signed(metric, float(shift.max()))
    return f" (Hodges-Lehmann shift {first}{'' if first == last else f' to {last}'})"


def _interval(metric: str, low: float, high: float) -> str:
    """'95% CI +12 to +76 points', '95% CI +278 KiB to +951 KiB'."""
    if info(metric).unit == "rate":
        return f"95% CI {_signed(metric, low).removesuffix(' points')} to {_signed(metric, high)}"
    return f"95% CI {_signed(metric, low)} to {_signed(metric, high)}"


def _signed(metric: str, value: float) -> str:
    """A difference in the metric's unit with its sign: +5.8, -2 MiB, +60 points (a rate's difference)."""
    if np.isnan(value):
        return "–"
    if info(metric).unit == "rate":
        return f"{value * 100:+.0f} points"
    if value == 0:
        return "0"
    text = fmt(metric, abs(value))
    return ("+" if value > 0 else "−") + text


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


def _and(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _or(items: list[str]) -> str:
    """'a', 'a or b', 'a, b or c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _name(by: str, level) -> str:
    """A strategy name speaks for itself; a level of another factor needs its name: 'onlining.delay = 30'."""
    return level_text(by, level) if by == DEFAULT_BY else f"{by} = {level_text(by, level)}"


def regime_table(comp: pd.DataFrame) -> pd.DataFrame:
    """Regime label -> the values of the factors that name regimes, one row per regime in the table's (design)
    order; attrs["levels"] holds each factor's levels in that order, for conditions that list levels.

    The regime factors are comparisons.csv's columns before `regime`; those that never vary, or vary one to one
    with an earlier one (a zip), name nothing."""
    factors = list(comp.columns[: list(comp.columns).index("regime")])
    table = comp.drop_duplicates("regime").set_index("regime")[factors]
    text = table.astype(str)
    shown: list[str] = []
    for f in factors:
        if table[f].nunique(dropna=False) > 1 and not any(_one_to_one(text[s], text[f]) for s in shown):
            shown.append(f)
    table = table[shown].copy()
    table.attrs["levels"] = {f: _ordered(table[f]) for f in shown}
    return table


def _one_to_one(a: pd.Series, b: pd.Series) -> bool:
    pairs = pd.DataFrame({"a": a, "b": b}).drop_duplicates()
    return pairs["a"].is_unique and pairs["b"].is_unique


def _ordered(col: pd.Series) -> list:
    values = list(pd.unique(col))
    numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
    return sorted(values) if numeric else values


def read_text_columns(comp: pd.DataFrame) -> pd.DataFrame:
    """comparisons.csv as read back: text columns as text ('true' stays a label, not a boolean)."""
    out = comp.astype({c: str for c in TEXT_COLUMNS if c in comp})
    for c in _EMPTY_WHEN_NAN:  # a blank cell: NaN, which astype(str) keeps (pandas 3) or spells 'nan' (pandas 2)
        if c in out:
            out[c] = [v if isinstance(v, str) and v != "nan" else "" for v in out[c]]
    return out


def describe_regimes(selected: set[str], compared: set[str], table: pd.DataFrame) -> str:
    """The simplest true description of the selected regimes among the compared ones.

    In order of preference: all of them; an exact condition on one or two factors
    ("when onlining.delay_s ≥ 5"), unless an exception is less than half as long;
    an exception ("except when ..."); a condition most of whose regimes are selected ("in 5 of the 6 regimes
    with ..."); else a short list in design order.
    """
    every = _Regimes.of(table)
    sub = every.take([r for r in every.index if r in compared], every.columns)
    # Factors the compared regimes share but the experiment varies (say only hyperv's guests survived) bound
    # every statement: "when driver.name = hyperv and ...", never a silent "when onlining.delay = 0".
    shared = [f for f in sub.columns if sub.nunique(f) == 1 and every.nunique(f) > 1]
    context = " and ".join(f"{f} = {level_text(f, sub.first(f))}" for f in shared) if sub.index else ""
    sub = sub.take(sub.index, [f for f in sub.columns if f not in shared])
    text = _describe(selected, compared, sub)
    if not context:
        return text
    if text.startswith(" when "):
        return f" when {context} and {text[6:]}"
    if text.startswith(" except when "):
        return f" when {context}, except when {text[13:]}"
    if text in ("", " in both regimes") or text.startswith(" in all "):
        return f" when {context}" + ("" if not text else f" ({text.strip()})")
    return f" when {context},{text}"


class _Regimes:
    """Some rows and factors of a regime table, as lists: descriptions ask a table of a few dozen regimes
    hundreds of questions, each of which cost a pandas call. A table with a missing value answers through
    pandas, whose rules for NaN (equal to NaN in isin and unique, not in a Python set) the sentences follow."""

    def __init__(self, table: pd.DataFrame, index: list, columns: list[str], cells: dict[str, list]) -> None:
        self.table = table  # the whole regime table
        self.index = index  # regime labels, in the table's (design) order
        self.columns = columns
        self.cells = cells  # factor -> its value in each regime of `index`, as iterating the column gives it
        self.missing = bool(table.isna().to_numpy().any())

    @staticmethod
    @last_call
    def of(table: pd.DataFrame) -> _Regimes:
        """Every regime and factor of `table` (made once per table)."""
        return _Regimes(table, list(table.index), list(table.columns), {f: list(table[f]) for f in table.columns})

    def take(self, labels: list, columns: list[str]) -> _Regimes:
        """These regimes (labels of this view, in its order) and factors."""
        position = {r: i for i, r in enumerate(self.index)}
        at = [position[r] for r in labels]
        return _Regimes(self.table, list(labels), list(columns), {f: [self.cells[f][i] for i in at] for f in columns})

    def _frame(self, factor: str) -> pd.Series:
        return self.table.loc[self.index, factor]

    def nunique(self, factor: str) -> int:
        if self.missing:
            return int(self._frame(factor).nunique(dropna=False))
        return len(set(self.cells[factor]))

    def first(self, factor: str):
        return self._frame(factor).iloc[0] if self.missing else self.cells[factor][0]

    def values(self, factor: str, labels: list) -> set:
        """The factor's values in these regimes."""
        if self.missing:
            return set(self.table.loc[labels, factor])
        position = {r: i for i, r in enumerate(self.index)}
        return {self.cells[factor][position[r]] for r in labels}

    def having(self, factor: str, values: set) -> set[str]:
        """The regimes whose value of the factor is one of `values`."""
        if self.missing:
            col = self._frame(factor)
            return set(col.index[col.isin(values).to_numpy()])
        return {r for r, v in zip(self.index, self.cells[factor], strict=True) if v in values}

    def present(self, factor: str) -> list:
        """The factor's values among these regimes, each once, in order of first appearance."""
        if self.missing:
            return list(self._frame(factor).unique())
        return list(dict.fromkeys(self.cells[factor]))

    def design(self, factor: str) -> list | None:
        return self.table.attrs.get("levels", {}).get(factor)


def _describe(selected: set[str], compared: set[str], sub: _Regimes) -> str:
    if selected >= compared:
        if len(compared) < 2:
            return ""
        return " in both regimes" if len(compared) == 2 else f" in all {len(compared)} regimes"
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


def _conditions(sub: _Regimes, target: set[str]):
    """(text, matching regimes) for every one- and two-factor condition built from the target's values."""
    chosen = [r for r in sub.index if r in target]
    each = {}  # factor -> (its condition, the regimes meeting it); a pair of factors meets both
    for f in sub.columns:
        values = sub.values(f, chosen)
        each[f] = (_condition(f, values, _levels_in_order(sub, f)), sub.having(f, values))
    for size in (1, 2):
        for combo in itertools.combinations(list(sub.columns), size):
            parts = [each[f][0] for f in combo]
            if all(parts):
                yield size, " and ".join(parts), set.intersection(*(each[f][1] for f in combo))


def _levels_in_order(sub: _Regimes, factor: str) -> list:
    """The factor's values among these regimes, in design order when the table knows it."""
    present = sub.present(factor)
    design = sub.design(factor)
    if not design:
        return present
    rank = {level_text(factor, v): i for i, v in enumerate(design)}
    return sorted(present, key=lambda v: rank.get(level_text(factor, v), len(rank)))


def _exact_condition(target: set[str], sub: _Regimes) -> str:
    found = [(size, len(text), text) for size, text, match in _conditions(sub, target) if match == target]
    return min(found)[2] if found else ""


def _covering_condition(target: set[str], sub: _Regimes) -> str:
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
