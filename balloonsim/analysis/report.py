"""REPORT.md and report.html: the experiment, the findings by thread question, the tables and the figures.

Every sentence about results comes from findings.py (rules over comparisons.csv) or from the data; the only
fixed prose is the method section and the questions themselves.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from balloonsim.analysis.compare import NORMAL_MIN_N, regime_factors
from balloonsim.analysis.core import Analysis
from balloonsim.analysis.document import Bullets, Document, Heading, Image, Para, Table, to_html, to_markdown
from balloonsim.analysis.findings import Finding, by_question, findings, quiet_metrics, significance_line
from balloonsim.analysis.labels import level_text
from balloonsim.analysis.metrics import QUESTION_TITLES, QUESTIONS, TABLE, fmt, info
from balloonsim.analysis.plots import PLOTS, line_metrics, manifest
from balloonsim.analysis.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from balloonsim.analysis.tables import best_table, summary_table

PER_QUESTION = 8
# The metric table's order, most telling first; a driver's own counters have no place in it (they rank by the
# strength of their findings, after the simulation's metrics).
METRIC_ORDER = {name: i for i, name in enumerate(TABLE) if TABLE[name].driver is None}
REPORT_MD = "REPORT.md"
REPORT_HTML = "report.html"


def write_report(analysis: Analysis) -> tuple[Path, Path]:
    doc = build(analysis)
    root = analysis.results.path
    md, page = root / REPORT_MD, root / REPORT_HTML
    md.write_text(to_markdown(doc))
    page.write_text(to_html(doc, root))
    return md, page


def build(analysis: Analysis) -> Document:
    results = analysis.results
    found = findings(analysis)
    subject = "memmap placement" if analysis.by == "memmap.strategy" else f"`{analysis.by}`"
    doc = Document(f"{results.name}: which {subject}, and how sure are we" if analysis.by else results.name)
    description = str(results.metadata.get("description") or "").strip()
    if description:
        doc.add(Para(f"*{description}*" if "*" not in description else description))
    doc.add(Heading(1, "At a glance"), Para(significance_line(analysis)))
    key = _key_findings(found)
    if key:
        doc.add(Bullets(key))
    doc.add(Heading(1, "The experiment"), _experiment_table(analysis))
    _findings_sections(doc, analysis, found)
    metrics = line_metrics(analysis)
    best = best_table(analysis, metrics[:5])
    if best is not None:
        doc.add(Heading(1, f"Best {analysis.by} per regime"), best)
    table = summary_table(analysis, metrics)
    if table is not None:
        doc.add(Heading(1, "Key metrics per regime"), table)
    plots = manifest(results.path) or []
    if plots:
        doc.add(Heading(1, "Figures"))
        for plot in plots:
            if (results.path / PLOTS / plot.file).is_file():
                doc.add(Heading(2, plot.title), Image(f"{PLOTS}/{plot.file}", plot.title, plot.caption))
    if not results.failed.empty:
        doc.add(Heading(1, "Failed runs"), *_failures(analysis))
    doc.add(Heading(1, "Method"), Bullets(_method(analysis)))
    return doc


def _key_findings(found: list[Finding]) -> list[str]:
    """One finding per thread question, so the summary covers every question answered: the most telling
    metric's strongest finding, preferring one not confounded by crashes."""
    out = []
    for question, group in by_question(found).items():
        directional = [f for f in group if f.directional]
        if question is not None and directional:
            first = min(
                directional,
                key=lambda f: (f.confounded, METRIC_ORDER.get(f.metric, len(METRIC_ORDER)), f.rank_key),
            )
            out.append(f"*{QUESTION_TITLES[question]}*: {first.text}")
    return out


def _findings_sections(doc: Document, analysis: Analysis, found: list[Finding]) -> None:
    results = analysis.results
    grouped = by_question(found)
    quiet, constant = quiet_metrics(analysis, found)
    doc.add(Heading(1, "Findings"))
    if found:
        doc.add(
            Para(
                "Differences significant after Holm correction, and deterministic ones (every run of each side "
                "gives the same value, the values differ: no test is needed), strongest first. Means are per "
                "run, pooled over the regimes named; each tested line gives the test, the largest "
                "Holm-corrected p of the group and Cliff's δ (1 = every run of one strategy above every run of "
                "the other)."
            )
        )
    for question in [*QUESTIONS, None]:
        metrics = [m for m in results.metrics if info(m).question == question]
        if question not in QUESTIONS:
            metrics = [m for m in results.metrics if info(m).question not in QUESTIONS]
        if not metrics:
            continue
        group = sorted(
            grouped.get(question, []),
            key=lambda f: (METRIC_ORDER.get(f.metric, len(METRIC_ORDER)), f.rank_key),
        )
        lines = [f.text for f in group[:PER_QUESTION]]
        if len(group) > PER_QUESTION:
            more = len(group) - PER_QUESTION
            lines.append(
                f"{more} more significant or deterministic difference{'s' if more != 1 else ''} in comparisons.csv."
            )
        q_quiet = [info(m).label for m in metrics if m in quiet]
        if q_quiet:
            lines.append(
                f"No significant difference between any two levels of `{analysis.by}` in any regime: "
                + ", ".join(q_quiet)
                + "."
            )
        q_const = [f"{info(m).label} = {fmt(m, constant[m])}" for m in metrics if m in constant]
        if q_const:
            lines.append("Identical in every run: " + "; ".join(q_const) + ".")
        if not lines:
            continue
        title = QUESTION_TITLES.get(question, "Other metrics") if question else "Other metrics"
        doc.add(Heading(2, title))
        if question:
            doc.add(Para(QUESTIONS[question]))
        doc.add(Bullets(lines))


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
        "The representative run of a strategy is the run whose primary metric is closest to the median of "
        'its regime; a policy map names the strategy with the best mean, "best" following the metric\'s '
        "direction.",
    ]
