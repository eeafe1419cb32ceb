"""REPORT.md and report.html: the answer to the experiment's question, survival, findings, tables, figures.

Every sentence about results comes from findings.py and answer.py (rules over comparisons.csv, read back from
the file just written, so a reader can regenerate them) or from the data; the only fixed prose is the method
section and the question itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from balloonsim.analysis.answer import ANSWER, QUESTION, answer, answer_items
from balloonsim.analysis.checked import checked_section
from balloonsim.analysis.compare import (
    NORMAL_MIN_N,
    WHAT_IF_SEP,
    regime_factors,
    regime_labels,
    regime_order,
    runs_what_if,
    what_if_text,
)
from balloonsim.analysis.core import Analysis
from balloonsim.analysis.document import Bullets, Document, Heading, Image, Para, Table, to_html, to_markdown
from balloonsim.analysis.findings import (
    WHAT_IF_SECTION,
    Finding,
    constant_metrics,
    from_comparisons,
    quiet_text,
    read_text_columns,
    significance_text,
    what_if_numbers,
)
from balloonsim.analysis.labels import level_text
from balloonsim.analysis.metrics import TABLE, TOPICS, fmt, info
from balloonsim.analysis.plots import PLOTS, line_metrics, manifest
from balloonsim.analysis.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from balloonsim.analysis.tables import best_table, summary_table
from balloonsim.validate.coverage import load_coverage

PER_TOPIC = 8
# The metric table's order, most telling first; a driver's own counters have no place in it (they rank by the
# strength of their findings, after the simulation's metrics).
METRIC_ORDER = {name: i for i, name in enumerate(TABLE) if TABLE[name].driver is None}
REPORT_MD = "REPORT.md"
REPORT_HTML = "report.html"
COMPARISONS = "comparisons.csv"


def write_report(analysis: Analysis, text: Draft | None = None) -> tuple[Path, Path]:
    """REPORT.md and report.html; `text` is the report's text when it was drafted already (see `draft`)."""
    doc = build(analysis, text)
    root = analysis.results.path
    md, page = root / REPORT_MD, root / REPORT_HTML
    md.write_text(to_markdown(doc))
    page.write_text(to_html(doc, root))
    return md, page


@dataclass
class Draft:
    """The report without its figures: the blocks before and after them. It reads only the analysis and
    comparisons.csv, so it can be drafted while the figures are being drawn."""

    title: str
    before: list
    after: list


def read_comparisons(root: Path) -> pd.DataFrame:
    """comparisons.csv as a reader gets it: what the sentences are made from."""
    path = Path(root) / COMPARISONS
    return read_text_columns(pd.read_csv(path)) if path.is_file() else pd.DataFrame()


def answer_of(analysis: Analysis) -> list[str]:
    """The answer's sentences, from comparisons.csv as written."""
    return answer(read_comparisons(analysis.results.path), analysis.by, analysis.results.primary)


def build(analysis: Analysis, text: Draft | None = None) -> Document:
    """The report: its text (drafted now, or before while the figures were drawn) around the figures in plots/."""
    text = text or draft(analysis)
    doc = Document(text.title, list(text.before))
    root = analysis.results.path
    plots = manifest(root) or []
    if plots:
        doc.add(Heading(1, "Figures"))
        for plot in plots:
            if (root / PLOTS / plot.file).is_file():
                doc.add(Heading(2, plot.title), Image(f"{PLOTS}/{plot.file}", plot.title, plot.caption))
    doc.add(*text.after)
    return doc


def draft(analysis: Analysis) -> Draft:
    """Every block of the report but the figures."""
    results = analysis.results
    comp = read_comparisons(results.path)
    found = from_comparisons(comp, analysis.by)
    doc = Document(results.name)
    description = str(results.metadata.get("description") or "").strip()
    if description:
        doc.add(Para(f"*{description}*" if "*" not in description else description))
    doc.add(Heading(1, ANSWER))
    if results.question:
        doc.add(Para(f"{QUESTION}{results.question}"))
    items = answer_items(comp, analysis.by, results.primary, found)
    sentences = [text for _, text in items]
    doc.add(Bullets(sentences) if sentences else Para(significance_text(comp, analysis.by, analysis.alpha)))
    departures = _what_if_lines(results, comp)
    if departures:
        doc.add(Heading(1, WHAT_IF_SECTION), Para(_WHAT_IF_INTRO), Bullets(departures))
    answered = list(dict.fromkeys(m for m, _ in items if m)) or results.primary
    doc.add(*checked_section(answered, _drivers(results), load_coverage()))
    doc.add(Heading(1, "The experiment"), _experiment_table(analysis))
    survival = _survival_table(analysis)
    if survival is not None:
        doc.add(Heading(1, "Survival"), *survival)
    _findings_sections(doc, analysis, comp, found)
    metrics = line_metrics(results)
    best = best_table(analysis, metrics[:5])
    if best is not None:
        doc.add(Heading(1, f"Best {analysis.by} per regime"), best)
    table = summary_table(analysis, metrics)
    if table is not None:
        doc.add(Heading(1, "Key metrics per regime"), table)
    after = Document(results.name)
    if not results.failed.empty:
        after.add(Heading(1, "Failed runs"), *_failures(analysis))
    after.add(Heading(1, "Method"), Bullets(_method(analysis)))
    return Draft(results.name, doc.blocks, after.blocks)


_WHAT_IF_INTRO = (
    "Some configurations do what no kernel release does (runs.csv `what_if`, written by the simulation for each "
    "run): a proposal that was never merged, or a driver passing a flag its kernel code never passes. A finding "
    "about them (marked *What-if* with these numbers) describes that proposal, not a kernel."
)


def _what_if_lines(results, comp: pd.DataFrame) -> list[str]:
    """One line per departure: its number (as the sentences cite it), the text the simulation wrote, and the
    configurations that carry it: each factor whose levels it narrows, and how many runs."""
    runs = results.runs
    what_if = runs_what_if(runs)
    numbers = what_if_numbers(comp)
    for part in what_if_text(what_if).split(WHAT_IF_SEP):  # runs' departures no comparison shows, last
        if part and part not in numbers:
            numbers[part] = len(numbers) + 1
    lines = []
    aliases = results.aliases  # a factor a zip ties to another says nothing more about the scope
    for part, n in numbers.items():
        mine = np.array([part in str(w).split(WHAT_IF_SEP) for w in what_if], dtype=bool)
        scope = []
        for f in results.factors:
            if f in aliases:
                continue
            every = [level_text(f, v) for v in results.levels(f)]
            here = set(runs.loc[mine, f].map(lambda v, f=f: level_text(f, v)))
            if len(here) < len(every):
                shown = [v for v in every if v in here]
                scope.append(f"`{f}` = {shown[0]}" if len(shown) == 1 else f"`{f}` ∈ {{{', '.join(shown)}}}")
        where = f": {'; '.join(scope)}" if scope else ""
        lines.append(f"({n}) {part} — {int(mine.sum())} of {len(runs)} runs{where}.")
    return lines


def _survival_table(analysis: Analysis) -> list | None:
    """Deaths per regime and level, on every run: the first thing a reader must know before any other number."""
    results, by = analysis.results, analysis.by
    raw = results.raw if results.raw is not None else results.runs
    deaths = [m for m in results.metrics if info(m).survival and info(m).unit == "rate"]
    if not deaths or not any(raw[m].fillna(0).gt(0).any() for m in deaths):
        return None
    labels = regime_labels(results, by)
    levels = results.levels(by) if by else [None]
    # masks over whole columns, combined per cell: filtering the table per regime and level cost more
    died = results.alive.reindex(raw.index).eq(False).to_numpy()
    of_level = [np.ones(len(raw), dtype=bool) if v is None else (raw[by] == v).to_numpy() for v in levels]
    rows = []
    for regime in regime_order(results, by):
        in_regime = (labels == regime).reindex(raw.index).to_numpy(dtype=bool)
        cells = [regime]
        for level in of_level:
            group = in_regime & level
            n = int(group.sum())
            cells.append(f"{int(died[group].sum())} of {n}" if n else "–")
        rows.append(cells)
    header = ["regime"] + ([level_text(by, v) for v in levels] if by else ["runs"])
    names = ", ".join(info(m).label for m in deaths)
    note = (
        f"Guests that died ({names}) per regime, of all runs. Every other metric is analysed on the surviving runs "
        "only (n in comparisons.csv and the tables counts them); where a level has no survivors, its other "
        "metrics are not compared."
    )
    if all(r[0] == "all runs" for r in rows):
        header, rows = header[1:], [r[1:] for r in rows]
    return [Table(header, rows, note)]


def _findings_sections(doc: Document, analysis: Analysis, comp: pd.DataFrame, found: list[Finding]) -> None:
    results, by = analysis.results, analysis.by
    primary = results.primary
    doc.add(Heading(1, "Findings"), Para(significance_text(comp, by, analysis.alpha)))
    if found:
        doc.add(
            Para(
                "Differences significant after Holm correction, and deterministic ones (every run of each side "
                "gives the same value, the values differ: no test is needed), primary metrics first, then "
                "strongest first. Means are per run, pooled over the regimes named; each tested line gives the "
                "difference of means with its 95% interval, Cliff's δ (1 = every run of one side above every run "
                "of the other), the test and the largest Holm-corrected p; n counts the runs used per side."
            )
        )

    def order(f: Finding) -> tuple:
        rank = primary.index(f.metric) if f.metric in primary else len(primary)
        return (rank, METRIC_ORDER.get(f.metric, len(METRIC_ORDER)), f.rank_key)

    topics = [info(m).topic for m in primary] + list(TOPICS) + [None]
    for topic in dict.fromkeys(topics):
        group = sorted([f for f in found if (f.topic if f.topic in TOPICS else None) == topic], key=order)
        if not group:
            continue
        lines = [f.text for f in group[:PER_TOPIC]]
        if len(group) > PER_TOPIC:
            more = len(group) - PER_TOPIC
            lines.append(
                f"{more} more significant or deterministic difference{'s' if more != 1 else ''} in comparisons.csv."
            )
        doc.add(Heading(2, TOPICS.get(topic, "Other metrics") if topic else "Other metrics"), Bullets(lines))
    quiet = _quiet_lines(comp, by, found)
    if quiet:
        doc.add(Heading(2, "Metrics without a finding"), Bullets(quiet))


def _quiet_lines(comp: pd.DataFrame, by: str | None, found: list[Finding]) -> list[str]:
    if comp.empty or by is None:
        return []
    with_finding = {f.metric for f in found}
    constant = constant_metrics(comp)
    lines = []
    for metric in dict.fromkeys(comp["metric"]):
        if metric in with_finding or metric in constant or info(metric).internal:
            continue
        if text := quiet_text(comp, metric, by):
            lines.append(text)
    shown = [f"{info(m).label} = {fmt(m, v)}" for m, v in constant.items() if not info(m).internal]
    if shown:
        lines.append("Identical in every run: " + "; ".join(shown) + ".")
    if "tautology" in comp:
        taut = comp[comp["tautology"].astype(bool) & comp["metric"].map(lambda m: m not in with_finding)]
        names = [info(m).label for m in dict.fromkeys(taut["metric"])]
        if names:
            lines.append(
                "Not findings, because a strategy's definition fixes them (kmalloc puts its memmap in online memory, "
                "altmap in the added range): " + ", ".join(names) + "; the comparisons are in comparisons.csv "
                "(column tautology)."
            )
    return lines


def _experiment_table(analysis: Analysis) -> Table:
    results = analysis.results
    meta, runs = results.metadata, results.runs
    rows = [["experiment", f"`{results.name}`"]]
    n_configs = len(runs.groupby(results.factors, dropna=False)) if results.factors else 1
    replications = _replications(analysis)
    spec = _experiment_spec(results)
    plural = "" if replications == "1" else "s"
    configs = f"{n_configs} configuration{'' if n_configs == 1 else 's'}"
    rows.append(["design", f"{_design_name(spec)}: {configs} × {replications} replication{plural}"])
    if isinstance(spec.get("base"), dict) and spec["base"]:
        rows.append(["base scenario", "; ".join(f"`{k}` = {level_text(k, v)}" for k, v in _flatten(spec["base"]))])
    if spec.get("seed") is not None:
        rows.append(["master seed", str(spec["seed"])])
    source = results.metadata.get("source") if isinstance(results.metadata.get("source"), dict) else {}
    if source.get("overrides"):
        rows.append(["overrides (--set)", "; ".join(f"`{o}`" for o in source["overrides"])])
    if analysis.by:
        rows.append(
            [
                "compared along",
                f"`{analysis.by}` ({', '.join(level_text(analysis.by, v) for v in results.levels(analysis.by))})",
            ]
        )
    if results.primary:
        rows.append(["primary metrics", ", ".join(f"`{m}` ({info(m).label})" for m in results.primary)])
    for f in results.factors:
        levels = ", ".join(level_text(f, v) for v in results.levels(f))
        kind = "factor" if f in results.varying_factors else "fixed"
        alias = results.aliases.get(f)
        rows.append([f"{kind} `{f}`", levels + (f" (varies with `{alias}`)" if alias else "")])
    _, shown = regime_factors(results, analysis.by)
    rows.append(
        [
            "regimes",
            _regimes_text(runs, shown),
        ]
    )
    total = len(runs) + len(results.failed)
    rows.append(["runs", f"{total}: {len(runs)} ok, {len(results.failed)} failed"])
    env = meta.get("environment") if isinstance(meta.get("environment"), dict) else {}
    git = env.get("git") if isinstance(env.get("git"), dict) else {}
    commit = meta.get("git_commit") or git.get("commit")
    if commit:
        commit = f"`{str(commit)[:12]}`" + (" (uncommitted changes)" if git.get("dirty") else "")
    provenance = (
        ("executor", meta.get("executor")),
        ("balloonsim", meta.get("balloonsim_version") or env.get("balloonsim")),
        ("python", env.get("python")),
        ("commit", commit),
    )
    rows += [[label, str(value)] for label, value in provenance if value]
    started = meta.get("started") or meta.get("started_at")
    finished = meta.get("finished") or meta.get("ended_at")
    if started or finished:
        rows.append(["ran", f"{started or '?'} → {finished or '?'}{_duration(started, finished)}"])
    return Table(["", ""], rows)


def _regimes_text(runs: pd.DataFrame, shown: list[str]) -> str:
    if not shown:
        return "1 (no other factor varies)"
    names = ", ".join(f"`{f}`" for f in shown)
    return f"{runs.groupby(shown, dropna=False).ngroups} (combinations of {names})"


def _replications(analysis: Analysis) -> str:
    """Runs per configuration as found in runs.csv (failed runs included): what the numbers rest on."""
    results = analysis.results
    table = pd.concat([results.runs, results.failed], ignore_index=True)
    if not results.factors:
        return str(len(table))
    sizes = table.groupby(results.factors, dropna=False).size()
    return str(sizes.iloc[0]) if sizes.nunique() == 1 else f"{sizes.min()}–{sizes.max()}"


def _experiment_spec(results) -> dict:
    """The experiment as run: the runner's resolved copy in metadata (with --set overrides), else the file."""
    source = results.metadata.get("source")
    resolved = source.get("resolved") if isinstance(source, dict) else None
    return resolved if isinstance(resolved, dict) else results.experiment


def _drivers(results) -> list[str]:
    """The balloon drivers the study's runs used (`driver.name`, a factor's column or the base scenario's)."""
    if "driver.name" in results.runs.columns:
        return sorted({str(v) for v in results.runs["driver.name"].dropna()})
    base = _experiment_spec(results).get("base")
    driver = base.get("driver") if isinstance(base, dict) else None
    name = driver.get("name") if isinstance(driver, dict) else None
    return [str(name)] if name else []


def _design_name(spec: dict) -> str:
    """'full factorial, driver.name with host.controller zipped, 2 exclusions' from the experiment's keys."""
    design = spec.get("design")
    if isinstance(design, dict):  # a [design] table
        spec = {**spec, **design}
        design = design.get("type") or design.get("kind")
    names = {None: "full factorial", "full": "full factorial", "factorial": "full factorial"}
    parts = [names.get(design, str(design))]
    for group in spec.get("zip") or []:
        if isinstance(group, list | tuple) and len(group) > 1:
            parts.append(" with ".join(f"`{f}`" for f in group) + " varied together (zip)")
    exclusions = spec.get("exclude") or spec.get("exclusions") or []
    if exclusions:
        parts.append(f"{len(exclusions)} exclusion{'s' if len(exclusions) != 1 else ''}")
    return ", ".join(parts)


def _flatten(table: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for key, value in table.items():
        name = f"{prefix}{key}"
        out += _flatten(value, f"{name}.") if isinstance(value, dict) else [(name, value)]
    return out


def _duration(started, finished) -> str:
    try:
        seconds = (datetime.fromisoformat(str(finished)) - datetime.fromisoformat(str(started))).total_seconds()
    except (TypeError, ValueError):
        return ""
    return f" ({seconds / 60:.1f} min)" if seconds >= 120 else f" ({seconds:.0f} s)"


def _failures(analysis: Analysis) -> list:
    failed = analysis.results.failed
    errors = failed["error"].fillna("(no message)").astype(str) if "error" in failed else pd.Series(["?"] * len(failed))
    counts = errors.str.split("\n").str[0].str.slice(0, 160).value_counts()
    rows = [[str(n), f"`{msg}`"] for msg, n in counts.head(10).items()]
    return [
        Para(
            f"{len(failed)} runs failed and are left out of every statistic above; rerunning the experiment "
            "retries them."
        ),
        Table(["runs", "error (first line)"], rows),
    ]


def _method(analysis: Analysis) -> list[str]:
    by = analysis.by or "the compared factor"
    return [
        f"A regime is one combination of every factor except `{by}`; seeds and replicates of a "
        "configuration are "
        "pooled. Means have t-intervals, medians percentile-bootstrap intervals "
        f"({BOOTSTRAP_RESAMPLES} resamples, fixed seed {BOOTSTRAP_SEED}), 0/1 outcomes Wilson intervals "
        "(summary.csv).",
        f"Within each regime every pair of levels of `{by}` is compared on every metric (comparisons.csv): "
        f"Welch's t when both samples have at least {NORMAL_MIN_N} runs and pass Shapiro-Wilk (p > 0.05), "
        "Mann-Whitney U (two-sided) otherwise; two constant, identical samples are not tested. Two constant "
        "samples with different values (every run of each side identical) are a deterministic difference: "
        'no test applies (test "deterministic", no p, outside the Holm family); the report and the policy '
        "maps count it like a significant one.",
        "p-values are Holm-corrected over all comparisons of one metric (every regime and pair); "
        "a difference "
        f"is significant when the corrected p < {analysis.alpha:g}. Effect size: Cliff's δ (Hedges' g is in "
        "comparisons.csv).",
        "Survival first: a guest's death (crash rate) is analysed on every run; every other metric only on the "
        "runs whose guest survived, so a guest that died early neither flatters nor punishes its strategy. n "
        'counts the runs used; a pair with a side without survivors is not compared (test "no survivors").',
        "Differences of means have Welch 95% intervals (Newcombe's hybrid score interval for 0/1 outcomes). "
        "A comparison that restates a strategy's definition (kmalloc's kmalloc'd memmap) is kept in "
        "comparisons.csv (tautology) but is never a finding.",
        "What no kernel release does is kept apart from what a kernel does: each run's departures (runs.csv "
        "`what_if`) go with each side of a comparison (comparisons.csv `what_if_a`, `what_if_b`), and a finding "
        "about such a side ends with a What-if note numbered as the report lists the departures.",
        "The representative run of a strategy is the run whose primary metric is closest to the median of "
        "its regime; a policy map colours a cell by the levels no other beats and shades it by the margin of the "
        'best over the worst, "best" following the metric\'s direction.',
    ]
