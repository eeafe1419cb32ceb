"""`balloonsim hotplug`: boot, add one backed range, online it, optionally remove it."""

from __future__ import annotations

import json

import click

from balloonsim.cli_options import PluginOption
from balloonsim.errors import ConfigError
from balloonsim.hotplug import HotplugSpec, format_report, run_hotplug
from balloonsim.kernel.profiles import DEFAULT_KERNEL, PROFILES, describe_profiles
from balloonsim.units import MAX_MEMORY_BLOCK_SIZE, SECTION_SIZE, format_size, parse_size


def _list_kernels(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(describe_profiles())
    ctx.exit()


def _size(option: str, text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise ConfigError(option, str(exc)) from None


@click.command()
@click.option(
    "--boot",
    default=",".join(format_size(b) for b in HotplugSpec().boot),
    show_default=True,
    help="Boot memory; per node with commas: 2G,2G.",
)
@click.option("--size", default="1G", show_default=True, help="Size of the hot-added range.")
@click.option(
    "--at",
    "at",
    default=None,
    help="Physical start address (default: the first memory block above boot memory and 4G).",
)
@click.option("--node", default=0, show_default=True, type=int, help="NUMA node of the new memory.")
@click.option("--block-size", default=None, help="Memory block size (default: probe_memory_block_size()).")
@click.option(
    "--strategy",
    default="kmalloc",
    show_default=True,
    cls=PluginOption,
    kind="balloonsim.memmap",
    label="Memmap strategy",
    example=" or a chain such as altmap,kmalloc",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Strategy parameter, e.g. mode=force, fallback=fail, pool_size=64M.",
)
@click.option(
    "--online",
    default="online",
    show_default=True,
    type=click.Choice(["online", "online_kernel", "online_movable", "none"]),
)
@click.option("--remove", is_flag=True, help="Offline and hot-remove the range afterwards.")
@click.option("--kernel", default=DEFAULT_KERNEL, show_default=True, type=click.Choice(list(PROFILES)))
@click.option(
    "--list-kernels",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_list_kernels,
    help="Print what differs between the kernel profiles (with commits and releases) and exit.",
)
@click.option(
    "--accounting",
    default="kernel",
    show_default=True,
    type=click.Choice(["kernel", "allocated"]),
    help="How self-hosted vmemmap shows in MemTotal.",
)
@click.option("--debug-vm", is_flag=True, help="CONFIG_DEBUG_VM: the memmap is poisoned (written) at add.")
@click.option("--movable-node", is_flag=True, help="movable_node: 'online' picks ZONE_MOVABLE.")
@click.option("--max-addr", default=None, help="End of the hotpluggable window (default: fits the range).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--trace", is_flag=True, help="Print the vmemmap populate/free operations.")
def hotplug(
    boot: str,
    size: str,
    at: str,
    node: int,
    block_size: str | None,
    strategy: str,
    params: tuple[str, ...],
    online: str,
    remove: bool,
    kernel: str,
    accounting: str,
    debug_vm: bool,
    movable_node: bool,
    max_addr: str | None,
    as_json: bool,
    trace: bool,
) -> None:
    """Hot-add a fully backed range (like an ACPI DIMM) and print meminfo per phase."""
    strategy_params: dict[str, str] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("param", f"expected KEY=VALUE, got {item!r}")
        strategy_params[key.strip()] = value.strip()
    spec = HotplugSpec(
        boot=[_size("boot", b) for b in boot.split(",")],
        size=_size("size", size),
        at=_size("at", at) if at is not None else None,
        node=node,
        block_size=_size("block-size", block_size) if block_size else None,
        strategy=strategy,
        strategy_params=strategy_params,
        online=online,
        remove=remove,
        kernel=kernel,
        accounting=accounting,
        debug_vm=debug_vm,
        movable_node=movable_node,
        max_addr=_size("max-addr", max_addr) if max_addr else None,
    )
    _check_block_size(spec)
    report = run_hotplug(spec, trace=trace)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(format_report(report))
    if report.crash or any(ret for _, ret in report.calls):
        raise SystemExit(1)


def _check_block_size(spec: HotplugSpec) -> None:
    bz = spec.block_size
    if bz is not None and (bz < SECTION_SIZE or bz > MAX_MEMORY_BLOCK_SIZE or bz & (bz - 1)):
        raise ConfigError("block-size", "must be a power of two from 128M to 2G")
