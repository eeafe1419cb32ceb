"""`balloonsim hotplug`: boot, add one backed range, online it, optionally remove it.

The command's options need only the kernel model's defaults (GuestConfig, the profiles); the hot-add itself
(balloonsim.hotplug, with the memmap strategies and the scenario's guest table, which bring pydantic) loads
when the command runs: `--help` costs click and the kernel model.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from balloonsim.cli_options import PluginOption
from balloonsim.errors import ConfigError
from balloonsim.kernel.errno import E2BIG, EBUSY, EEXIST, EINVAL, ENOMEM
from balloonsim.kernel.guest import GuestConfig
from balloonsim.kernel.profiles import DEFAULT_KERNEL, PROFILES, describe_profiles
from balloonsim.units import (
    MAX_MEMORY_BLOCK_SIZE,
    MAX_NUMNODES,
    MAX_PHYSMEM_BITS,
    MAX_PHYSMEM_BITS_LA57,
    SECTION_SIZE,
    format_size,
    parse_size,
)

if TYPE_CHECKING:
    from balloonsim.hotplug import HotplugSpec

# What add_memory() and remove_memory() returning an errno means here, in words (mm/memory_hotplug.c, 6.12:
# check_hotplug_memory_range(), register_memory_resource(), add_memory_resource(); try_remove_memory()).
ERRNO_WORDS = {
    -EEXIST: "the range overlaps memory the guest already has (boot memory or an earlier add): choose another "
    "--at, or leave it out for the first free block",
    -EINVAL: "the range is not aligned to the memory block size (start and size must be multiples of it, "
    "see --block-size), or is empty",
    -E2BIG: f"the range ends beyond the physical address space (MAX_PHYSMEM_BITS {MAX_PHYSMEM_BITS}: "
    f"{format_size(1 << MAX_PHYSMEM_BITS)} with 4-level paging)",
    -ENOMEM: "the guest has too little free memory for the memmap and page tables of the range (with kmalloc "
    "they come from online memory): a smaller --size, more --boot, or an altmap strategy",
    -EBUSY: "a block cannot be offlined: it holds unmovable pages (the memmap or kernel data)",
}
# The largest range this command models: the 5-level-paging address space; beyond 4-level the kernel's own
# check answers (-E2BIG).
MAX_END = 1 << MAX_PHYSMEM_BITS_LA57


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
    default=",".join(format_size(b) for b in GuestConfig().boot),  # HotplugSpec's default, the guest's
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
@click.option(
    "--node",
    default=0,
    show_default=True,
    type=click.IntRange(0, MAX_NUMNODES - 1),
    help=f"NUMA node of the new memory (below MAX_NUMNODES, {MAX_NUMNODES}).",
)
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
    """Hot-add a fully backed range (like an ACPI DIMM) and print meminfo per phase.

    \b
    Examples:
      balloonsim hotplug --boot 2G --size 1G --at 4G --strategy altmap
      balloonsim hotplug --boot 4G --size 10G --node 1 --strategy altmap-range --remove --trace
    """
    from balloonsim.hotplug import HotplugSpec, format_report, run_hotplug

    strategy_params: dict[str, str] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("--param", f"expected KEY=VALUE, got {item!r}")
        strategy_params[key.strip()] = value.strip()
    nbytes = _size("--size", size)
    start = _size("--at", at) if at is not None else None
    if nbytes == 0:
        raise ConfigError("--size", "must not be 0")
    if (start or 0) + nbytes > MAX_END:
        where = "--at" if start else "--size"
        raise ConfigError(
            where,
            f"the range would end at {(start or 0) + nbytes:#x}, beyond x86_64's largest physical address space "
            f"({MAX_END:#x}, MAX_PHYSMEM_BITS {MAX_PHYSMEM_BITS_LA57} with 5-level paging)",
        )
    spec = HotplugSpec(
        boot=[_size("--boot", b) for b in boot.split(",")],
        size=nbytes,
        at=start,
        node=node,
        block_size=_size("--block-size", block_size) if block_size else None,
        strategy=strategy,
        strategy_params=strategy_params,
        online=online,
        remove=remove,
        kernel=kernel,
        accounting=accounting,
        debug_vm=debug_vm,
        movable_node=movable_node,
        max_addr=_size("--max-addr", max_addr) if max_addr else None,
    )
    _check_block_size(spec)
    try:
        report = run_hotplug(spec, trace=trace)
    except ConfigError as exc:  # the guest, checked as a scenario's: name the option, not the table key
        option = {"guest.boot": "--boot", "guest.max_addr": "--max-addr", "guest.extra_nodes": "--node"}
        path = exc.path.split("[")[0]
        raise ConfigError(option.get(path, exc.path), exc.message) from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(format_report(report))
        for call, ret in report.calls:
            if ret in ERRNO_WORDS:
                click.echo(f"\n{call.split('(')[0]}: {ERRNO_WORDS[ret]}")
    if report.crash or any(ret for _, ret in report.calls):
        raise SystemExit(1)


def _check_block_size(spec: HotplugSpec) -> None:
    bz = spec.block_size
    if bz is not None and (bz < SECTION_SIZE or bz > MAX_MEMORY_BLOCK_SIZE or bz & (bz - 1)):
        raise ConfigError("--block-size", "must be a power of two from 128M to 2G")
