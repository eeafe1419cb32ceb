"""`balloonsim simulate`: one guest, from options or a scenario file, printed as a table or JSON."""

from __future__ import annotations

import json
import math
import os
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
@click.option(
    "--seed", type=click.IntRange(0, (1 << 64) - 1), default=None, help="Random seed (default: the scenario's, else 0)."
)
@click.option("--json", "as_json", is_flag=True, help="Print metrics as JSON.")
@click.option("--timeseries", type=click.Path(dir_okay=False, path_type=Path), help="Write the time series CSV.")
@click.option("--events", type=click.Path(dir_okay=False, path_type=Path), help="Write the events CSV.")
@click.option("--show-config", is_flag=True, help="Print the resolved scenario (every key, defaults included) first.")
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
    show_config,
) -> None:
    """Run one simulated guest and print its metrics.

    \b
    Examples:
      balloonsim simulate --driver hyperv --strategy altmap --set driver.request_offset=64M --duration 10m
      balloonsim simulate --workload ramp --set workload.end_size=3G --show-config --json
    """
    from balloonsim.experiment.loader import read_toml_text
    from balloonsim.scenario import load_scenario, normalized
    from balloonsim.sim.simulation import simulate as run

    config: dict = {}
    if scenario_file is not None:
        text = read_toml_text(scenario_file, "scenario file")
        try:
            config = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{scenario_file}: not valid TOML: {exc}") from None
        except RecursionError:
            raise UserError(f"{scenario_file}: not valid TOML: nested too deeply") from None
    for option, path in (("--timeseries", timeseries), ("--events", events)):
        if path is not None:
            _check_writable(option, path)
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
    resolved = normalized(scenario) if show_config else None
    result = run(scenario, seed)
    if timeseries:
        result.timeseries.to_csv(timeseries, index=False)
    if events:
        result.events.to_csv(events, index=False)
    m = result.metrics
    crash = crash_reason(result.events)
    if as_json:
        doc = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()}
        if crash is not None or resolved is not None:
            doc = {"metrics": doc, "crash": crash, **({"scenario": resolved} if resolved is not None else {})}
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    if resolved is not None:
        from balloonsim.experiment.tomlwrite import dumps

        click.echo("# resolved scenario\n" + dumps(_toml_ready(resolved)).rstrip() + "\n")
    width = max(len(k) for k in m)
    for k, v in m.items():
        click.echo(f"{k:<{width}}  {_fmt(k, v)}")
    if crash is not None:
        click.echo(f"\nguest crashed at {m.get('crash_time_s', float('nan')):.4g} s: {crash}")


def crash_reason(events) -> str | None:
    """The event log's crash detail ("...: write to unbacked memory at 0x100000000 ..."), if the guest died."""
    if events is None or "kind" not in getattr(events, "columns", ()):
        return None
    crashes = events[events["kind"] == "crash"]
    return str(crashes["detail"].iloc[-1]) if len(crashes) else None


def _toml_ready(value):
    """None has no TOML spelling: such keys are left out (they mean 'not set', the default)."""
    if isinstance(value, dict):
        return {k: _toml_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_toml_ready(v) for v in value]
    return value


def _check_writable(option: str, path: Path) -> None:
    """An output file's directory must exist and be writable before the simulation runs, not after."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserError(f"{option} {path}: is a directory")
    if not parent.is_dir():
        raise UserError(f"{option} {path}: no directory {parent}")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"{option} {path}: not writable")


def _fmt(key: str, v) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "-"
    if key.endswith("_bytes") and isinstance(v, int):
        return f"{v} ({v / (1 << 20):.1f} MiB)"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
