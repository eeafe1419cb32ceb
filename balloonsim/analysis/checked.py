"""The report's "Checked against real kernels": for each metric of the answer, what the recordings say of it.

A finding is only as good as the mechanism behind its metric. `balloonsim validate` replays recordings of real
kernels through the model; its tallies per metric are shipped in balloonsim/validate/coverage.json (see
`balloonsim.validate.coverage`), and this section states them next to the answer: how many recorded quantities
behind each metric agree, which known disagreements cover the rest and which way they lean, and which metrics no
recording checks, so that their findings rest on the model alone. The drivers a study runs that no recording
exercises (QEMU has no Hyper-V or Xen host) are named too.
"""

from __future__ import annotations

from typing import Any

from balloonsim.analysis.document import Bullets, Heading, Para
from balloonsim.analysis.metrics import info
from balloonsim.validate.coverage import RECORDED_DRIVERS

SECTION = "Checked against real kernels"


def checked_section(metrics: list[str], drivers: list[str], coverage: dict[str, Any] | None) -> list:
    """The section's blocks for `metrics` (the answer's, in its order) and the study's `drivers`; none without
    metrics or without a coverage file this balloonsim can read."""
    if not metrics or coverage is None:
        return []
    cited: list[str] = []
    entries = coverage["metrics"]
    items = [_metric_line(m, entries[m], cited) for m in metrics if m in entries]
    unchecked = [f"**{info(m).label}**" for m in metrics if m not in entries]
    if unchecked:
        items.append(
            f"{_series(unchecked)}: no recording measures {'them' if len(unchecked) > 1 else 'it'}; "
            f"{'their' if len(unchecked) > 1 else 'its'} findings rest on the model alone."
        )
    blocks: list = [Heading(1, SECTION), Para(_intro(coverage)), Bullets(items)]
    if cited:
        known = coverage["known"]
        cited.sort(key=int)
        blocks += [Para("The known disagreements named above:"), Bullets([f"[{n}] {known[n]}." for n in cited])]
    recorded = set(RECORDED_DRIVERS.values())
    unrecorded = [d for d in drivers if d not in recorded]
    if unrecorded:
        blocks.append(Para(_unrecorded(unrecorded, coverage)))
    return blocks


def _intro(cov: dict[str, Any]) -> str:
    return (
        f"`balloonsim validate` replays {cov['recordings']} recordings of Linux {_series(cov['kernels'])} guests "
        f"under QEMU ({cov['cases']} cases hot-plugging {_series(cov['devices'])}) through the model and compares "
        "them quantity by quantity (validation/README.md). For each metric of the answer, the recorded "
        "quantities that measure it:"
    )


def _metric_line(metric: str, entry: dict[str, Any], cited: list[str]) -> str:
    text = f"**{info(metric).label}**: " + " ".join(_check_text(check, cited) for check in entry["checks"])
    if entry.get("note"):
        text += f" Not checked: {entry['note']}."
    return text


def _check_text(check: dict[str, Any], cited: list[str]) -> str:
    """'The outcome of each add_memory(): 168 of 180 agree (34 cases); in the other 12 the kernel's add failed
    where the model's succeeded (known disagreements [9], [12]).'"""
    rows, agree = check["rows"], check["agree"]
    cases = f"{check['cases']} case{'s' if check['cases'] != 1 else ''}"
    text = f"{check['label'][0].upper()}{check['label'][1:]}: {agree} of {rows} agree ({cases})"
    if agree == rows:
        return text + "."
    text += f"; in the other {rows - agree}" if rows - agree > 1 else "; in the other one"
    text += _lean(check, rows - agree)
    known = check["known"]
    for n in known:
        if n not in cited:
            cited.append(n)
    notes = []
    if known:
        notes.append(f"known disagreement{'s' if len(known) > 1 else ''} " + ", ".join(f"[{n}]" for n in known))
    if check["disagree"]:
        notes.append(f"{check['disagree']} not explained")
    return text + (f" ({'; '.join(notes)})" if notes else "") + "."


def _lean(check: dict[str, Any], differ: int) -> str:
    """Which way the model leans where it differs, when the rows are numbers."""
    higher, lower = check["model_higher"], check["model_lower"]
    if not higher and not lower:
        return " the values differ"
    some = "" if higher + lower == differ else f", {higher + lower} of them numbers,"
    if check["outcome"]:
        if not higher:
            return f"{some} the kernel's add failed where the model's succeeded"
        if not lower:
            return f"{some} the model's add failed where the kernel's succeeded"
        return (
            f"{some} the model's add succeeded {_times(lower)} where the kernel's failed, and failed "
            f"{_times(higher)} where the kernel's succeeded"
        )
    if not higher:
        return f"{some} the model's value is lower"
    if not lower:
        return f"{some} the model's value is higher"
    return f"{some} the model's value is higher {_times(higher)} and lower {_times(lower)}"


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _unrecorded(drivers: list[str], cov: dict[str, Any]) -> str:
    many = len(drivers) > 1
    return (
        f"No recording runs the {_series([f'`{d}`' for d in drivers])} driver{'s' if many else ''} (the "
        f"recordings hot-plug {_series(cov['devices'])} only; validation/README.md says why): what "
        f"{'they do of their' if many else 'it does of its'} own "
        "is modelled from the kernel source alone; the kernel's part of each hot-add (add_memory(), the memmap, "
        "onlining, reclaim) is what the recordings check."
    )


def _series(words: list[str]) -> str:
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]
