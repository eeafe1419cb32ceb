"""`balloonsim simulate`: one guest, from options or a scenario file, printed as a table or JSON."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import click

from balloonsim.cli_options import PluginOption
from balloonsim.errors import ConfigError, UserError


def _set(config: dict, dotted: str, raw: str) -> None:
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    keys = dotted.split(".")
    node = config
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(dotted, f"{k} is not a table")
    node[keys[-1]] = value


@click.command()
@click.option(
    "--scenario",
    "scenario_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A scenario TOML file (the keys of one run).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a key, e.g. --set memmap.strategy=altmap --set guest.boot=8G.",
)
@click.option("--driver", cls=PluginOption, kind="balloonsim.drivers")
@click.option("--strategy", cls=PluginOption, kind="balloonsim.memmap", example=" or a chain such as altmap,kmalloc")
@click.option("--onlining", cls=PluginOption, kind="balloonsim.onlining")
@click.option("--workload", cls=PluginOption, kind="balloonsim.workloads")
@click.option("--controller", cls=PluginOption, kind="balloonsim.controllers")
@click.option("--duration", help="Simulated time, e.g. 30m.")
@click.option("--seed", type=int, default=None, help="Random seed (default: the scenario's, else 0).")
@click.option("--json", "as_json", is_flag=True, help="Print metrics as JSON.")
@click.option("--timeseries", type=click.Path(dir_okay=False, path_type=Path), help="Write the time series CSV.")
@click.option("--events", type=click.Path(dir_okay=False, path_type=Path), help="Write the events CSV.")
def simulate(
    scenario_file,
    overrides,
    driver,
    strategy,
    onlining,
    workload,
    controller,
    duration,
    seed,
    as_json,
    timeseries,
    events,
) -> None:
    """Run one simulated guest and print its metrics."""
    from balloonsim.scenario import load_scenario
    from balloonsim.sim.simulation import simulate as run

    config: dict = {}
    if scenario_file is not None:
        try:
            config = tomllib.loads(scenario_file.read_text())
        except FileNotFoundError:
            raise UserError(f"{scenario_file}: no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{scenario_file}: {exc}") from None
    for key, value in (
        ("driver.name", driver),
        ("memmap.strategy", strategy),
        ("onlining.agent", onlining),
        ("workload.name", workload),
        ("host.controller", controller),
        ("duration", duration),
    ):
        if value is not None:
            _set(config, key, json.dumps(value))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("set", f"expected KEY=VALUE, got {item!r}")
        _set(config, key.strip(), value.strip())
    scenario = load_scenario(config)
    result = run(scenario, seed)
    if timeseries:
        result.timeseries.to_csv(timeseries, index=False)
    if events:
        result.events.to_csv(events, index=False)
    m = result.metrics
    if as_json:
        click.echo(
            json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()}, indent=2)
        )
        return
    width = max(len(k) for k in m)
    for k, v in m.items():
        click.echo(f"{k:<{width}}  {_fmt(k, v)}")


def _fmt(key: str, v) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "-"
    if key.endswith("_bytes") and isinstance(v, int):
        return f"{v} ({v / (1 << 20):.1f} MiB)"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
