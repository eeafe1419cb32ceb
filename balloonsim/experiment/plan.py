"""What a batch would do, for `--dry-run`: the design's size and its first runs, nothing written."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from balloonsim.experiment.csvlog import format_cell
from balloonsim.experiment.design import count_points, iter_runs
from balloonsim.experiment.levels import level_label
from balloonsim.experiment.spec import Experiment, design_axes
from balloonsim.experiment.store import StoreOptions, check_target, ok_run_ids, read_metadata

MAX_CELL = 48


def _cell(factor: str, value: object) -> str:
    """A level as runs.csv's label column and the report spell it (`hyperv request_offset=64M`), not as JSON."""
    text = level_label(factor, value) if isinstance(value, dict) else format_cell(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def describe_plan(exp: Experiment, out_dir: Path, limit: int = 10) -> str:
    """Design size, factors, where results would go and how many runs are already there, the first runs."""
    points = count_points(exp)
    total = points * exp.replications
    full = 1
    for axis in design_axes(exp):
        full *= len(exp.factors[axis[0]])
    lines = [f"experiment {exp.name}: {points} design points x {exp.replications} replications = {total} runs"]
    if full != points:
        lines[0] += f" ({full - points} of {full} design points excluded)"
    if exp.factors:
        shown = ", ".join(f"{name} ({len(levels)})" for name, levels in exp.factors.items())
        together = [" + ".join(axis) for axis in design_axes(exp) if len(axis) > 1]
        detail = f" ({'; '.join(together)} vary together)" if together else ""
        lines.append(f"factors: {shown}; design {exp.design}{detail}")
    lines.append(f"results: {out_dir}")
    meta = read_metadata(out_dir)
    basis = None
    if meta is not None:
        try:
            target = check_target(out_dir, exp, _recorded_options(meta), force=False)
            done = len(ok_run_ids(out_dir))
            basis = target.basis
            if target.grown:
                lines.append("  the experiment extends the one there (more replications or levels)")
            lines.append(f"  {done} runs already done there; {total - done} would run")
        except Exception as exc:  # noqa: BLE001 - a refusal is information here, not an error
            lines.append(f"  would be refused: {exc}")
    header = ["#", "run_id", "point", "rep", "seed", *exp.factors]
    rows = [
        [str(n), spec.run_id, str(spec.index), str(spec.replicate), str(spec.seed)]
        + [_cell(name, spec.factors[name]) for name in exp.factors]
        for n, spec in enumerate(itertools.islice(iter_runs(exp, basis), limit))
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines.append("")
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if total > len(rows):
        lines.append(f"... {total - len(rows)} more runs")
    return "\n".join(lines)


def _recorded_options(meta: dict[str, Any]) -> StoreOptions:
    return StoreOptions(**meta.get("options", {}))
