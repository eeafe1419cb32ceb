"""The list of CLI commands, each defined next to the library code it drives."""

from __future__ import annotations

import importlib

import click

# module path -> attribute names of click commands defined there
_COMMANDS: dict[str, tuple[str, ...]] = {
    "balloonsim.hotplug_cli": ("hotplug",),
    "balloonsim.simulate_cli": ("simulate",),
    "balloonsim.experiment.cli": ("run",),
    "balloonsim.analysis.cli": ("analyze", "plot", "report"),
    "balloonsim.bench_cli": ("bench",),
    "balloonsim.validate.cli": ("validate",),
}


def all_commands() -> list[click.Command]:
    out = []
    for module, names in _COMMANDS.items():
        mod = importlib.import_module(module)
        out.extend(getattr(mod, name) for name in names)
    return out
