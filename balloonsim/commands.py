"""The `balloonsim` commands: each one's name, where it is defined, and its one-line help.

The root group lists the commands from this table and imports a command's module only when that command runs,
so `balloonsim --help` and `--version` cost click and nothing else (the commands pull in SimPy, pandas, scipy,
matplotlib, pyarrow or Dask). Each command stays defined next to the library code it drives; the help here is
the first sentence of its docstring, which a test keeps in step.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click


@dataclass(frozen=True)
class CommandRef:
    """Where a command is defined, and the help `balloonsim --help` shows for it without importing it."""

    module: str
    attribute: str
    short_help: str

    def load(self) -> click.Command:
        return getattr(importlib.import_module(self.module), self.attribute)


COMMANDS: dict[str, CommandRef] = {
    "hotplug": CommandRef(
        "balloonsim.hotplug_cli",
        "hotplug",
        "Hot-add a fully backed range (like an ACPI DIMM) and print meminfo per phase.",
    ),
    "simulate": CommandRef("balloonsim.simulate_cli", "simulate", "Run one simulated guest and print its metrics."),
    "run": CommandRef(
        "balloonsim.experiment.cli",
        "run",
        "Run every combination of an experiment's factors, replicated; resume if interrupted.",
    ),
    "analyze": CommandRef(
        "balloonsim.analysis.cli",
        "analyze",
        "Write DIR/summary.csv, comparisons.csv and metrics.csv from DIR/runs.csv.",
    ),
    "plot": CommandRef("balloonsim.analysis.cli", "plot", "Draw the figures into DIR/plots/ (PNG; SVG with --svg)."),
    "report": CommandRef(
        "balloonsim.analysis.cli",
        "report",
        "Write DIR/REPORT.md and a self-contained DIR/report.html (analysis and figures included).",
    ),
    "index": CommandRef(
        "balloonsim.analysis.cli",
        "index",
        "Write DIR/README.md: each study's question and the answer of its REPORT.md (default DIR: results).",
    ),
    "bench": CommandRef(
        "balloonsim.bench_cli",
        "bench",
        "Benchmarks: bare SimPy's event rate, the reference scenario against it, hot-add scale, sweeps.",
    ),
    "validate": CommandRef(
        "balloonsim.validate.cli",
        "validate",
        "Compare the model with real Linux kernels recorded under QEMU.",
    ),
}


def all_commands() -> list[click.Command]:
    """Every command, imported (for tests and documentation; the CLI itself imports only the one it runs)."""
    return [ref.load() for ref in COMMANDS.values()]
