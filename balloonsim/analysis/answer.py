"""The answer to an experiment's question: the first section of its report, a few sentences from comparisons.csv.

The experiment names its primary metrics; the answer takes them in that order, each with its strongest findings
(or, when there is none, what the metric showed: identical everywhere, or no significant difference), then the
levels whose guests all died (their other metrics are not compared), then the strongest findings on other
metrics that are large enough to matter. Everything comes from the comparisons table through findings.py, so
`answer(pd.read_csv("comparisons.csv"), ...)` gives the sentences REPORT.md shows, word for word.
"""

from __future__ import annotations

import math

import pandas as pd

from balloonsim.analysis.findings import Finding, from_comparisons, no_survivors, quiet_text
from balloonsim.analysis.metrics import PRIMARY_ORDER, info

ANSWER = "Answer"  # the report's first section
QUESTION = "**Question.** "
MAX_SENTENCES = 6
PER_PRIMARY = 2  # findings per primary metric (one per pair of levels, strongest first)
MATERIAL = math.log(1.25)  # another metric enters the answer only with a difference of 25 % or more


def answer(
    comp: pd.DataFrame, by: str | None, primary: list[str] | tuple[str, ...], found: list[Finding] | None = None
) -> list[str]:
    """The answer's sentences, most relevant first (`found`: the table's findings, when already made)."""
    return [text for _, text in answer_items(comp, by, primary, found)]


def answer_items(
    comp: pd.DataFrame, by: str | None, primary: list[str] | tuple[str, ...], found: list[Finding] | None = None
) -> list[tuple[str | None, str]]:
    """The answer's sentences, each with the metric it is about (None: the levels whose guests all died)."""
    if comp.empty or by is None:
        return []
    found = from_comparisons(comp, by) if found is None else found
    compared = set(comp["metric"])
    primary = [m for m in primary if m in compared] or _default_primary(found, compared)
    out: list[tuple[str | None, str]] = []
    dead = [(None, text) for text in no_survivors(comp, by)]
    for metric in primary:
        # the widest difference first (best against worst), then the others the metric's findings rank
        own = sorted((f for f in found if f.metric == metric), key=lambda f: (-round(f.delta, 2), -f.pooled_diff))
        if own:
            out += [(metric, f.text) for f in own[:PER_PRIMARY]]
        elif text := quiet_text(comp, metric, by):
            out.append((metric, text))
        if info(metric).survival and dead:
            out += dead
            dead = []
    out += dead
    seen = set(primary)
    for f in found:  # one sentence per other metric, strongest first
        if len(out) >= MAX_SENTENCES:
            break
        if f.metric not in seen and f.directional and f.log_ratio >= MATERIAL:
            seen.add(f.metric)
            out.append((f.metric, f.text))
    return out


def _default_primary(found, compared: set[str]) -> list[str]:
    """Without a declared primary metric: the first two of PRIMARY_ORDER with a finding, else the first compared."""
    with_finding = {f.metric for f in found}
    chosen = [m for m in PRIMARY_ORDER if m in with_finding][:2]
    return chosen or [m for m in PRIMARY_ORDER if m in compared][:1]


def answer_section(markdown: str) -> list[str]:
    """The answer's sentences as a REPORT.md shows them (the bullets under '## Answer')."""
    body = _section(markdown)
    return [line[2:] for line in body.splitlines() if line.startswith("- ")]


def question_of(markdown: str) -> str:
    """The question a REPORT.md answers, '' when it states none."""
    line = next((x for x in _section(markdown).splitlines() if x.startswith(QUESTION)), "")
    return line.removeprefix(QUESTION)


def _section(markdown: str) -> str:
    part = markdown.split(f"\n## {ANSWER}\n", 1)
    return part[1].split("\n## ", 1)[0] if len(part) > 1 else ""
