"""A scripted, deterministic hot-add / online / offline / remove of one fully backed range, as an ACPI DIMM.

The add is what drivers/acpi/acpi_memhotplug.c does: one static memory group per DIMM (5.15+), and
MHP_MEMMAP_ON_MEMORY as acpi_memory_enable_device() passes it in the guest's release. What `balloonsim
hotplug` prints: the guest's /proc/meminfo at each phase, the kernel's return values, a note when the memmap
strategy asked for could not apply and what the kernel did instead, a what-if line for what no kernel does,
and (with trace) the vmemmap populate and free operations.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

from pydantic import ValidationError

from balloonsim.errors import ConfigError
from balloonsim.kernel import BlockState, Guest, GuestConfig, GuestCrash, errname
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.vmemmap import acpi_memmap_on_memory_flag
from balloonsim.memmap import MemmapStrategy, get_strategy
from balloonsim.scenario import GuestSection
from balloonsim.units import MAX_MEMORY_BLOCK_SIZE, PAGE_SHIFT, GiB, align_up, format_size

_GUEST = GuestConfig()  # the guest defaults


@dataclass
class HotplugSpec:
    """One scripted hot-add. The guest's fields default to balloonsim's guest defaults (GuestConfig)."""

    boot: list[int] = field(default_factory=lambda: list(_GUEST.boot))
    size: int = 1 * GiB
    at: int | None = None  # None: the first free memory block above boot memory and 4 GiB (see first_free)
    node: int = 0
    block_size: int | None = _GUEST.block_size
    strategy: str = "kmalloc"
    strategy_params: dict = field(default_factory=dict)
    online: str = "online"  # online | online_kernel | online_movable | none
    remove: bool = False
    kernel: str = _GUEST.kernel
    accounting: str = _GUEST.accounting
    debug_vm: bool = _GUEST.debug_vm
    movable_node: bool = _GUEST.movable_node
    max_addr: int | None = None  # None: the default window, grown to hold the range

    def guest(self) -> GuestSection:
        """The guest as a scenario's [guest] table would give it, so it becomes a GuestConfig the one way."""
        nnodes = max(len(self.boot), self.node + 1)
        if self.max_addr is not None:
            max_addr = self.max_addr
        else:
            # the default `at` lies at most the PCI hole above the boot memory, on a memory block boundary
            at = self.at if self.at is not None else align_up(_hole_end(sum(self.boot)), MAX_MEMORY_BLOCK_SIZE)
            max_addr = max(_GUEST.max_addr, align_up(at + self.size, GiB))
        try:
            return GuestSection(
                boot=list(self.boot),
                extra_nodes=nnodes - len(self.boot),
                max_addr=max_addr,
                block_size=self.block_size,
                kernel=self.kernel,
                accounting=self.accounting,
                debug_vm=self.debug_vm,
                movable_node=self.movable_node,
            )
        except ValidationError as exc:
            raise ConfigError.from_validation(exc, "", GuestSection) from None


def _hole_end(boot: int) -> int:
    """Where boot RAM ends, at least 4 GiB: RAM past lowmem_limit continues at 4 GiB (the PCI hole)."""
    return 4 * GiB + max(0, boot - _GUEST.lowmem_limit)


def first_free(guest: Guest) -> int:
    """Where a hot-added range goes by default: the first memory block above boot memory and 4 GiB, as the
    drivers' allocate_resource() picks it (balloonsim.drivers.base.Driver.find_free_range)."""
    return align_up(max(guest.boot_end_pfn << PAGE_SHIFT, 4 * GiB), guest.block_size)


@dataclass
class Phase:
    name: str
    meminfo: dict
    gigantic_pages: int
    removable_blocks: int


@dataclass
class HotplugReport:
    spec: HotplugSpec
    block_size: int
    calls: list[tuple[str, int]]  # (call text, return value)
    phases: list[Phase]
    trace: list[str]
    crash: str | None = None
    notes: list[str] = field(default_factory=list)  # what the kernel did instead of what was asked
    what_if: list[str] = field(default_factory=list)  # what no kernel does

    def as_dict(self) -> dict:
        return {
            "block_size": self.block_size,
            "calls": [{"call": c, "ret": r, "errno": errname(r)} for c, r in self.calls],
            "notes": self.notes,
            "what_if": "; ".join(self.what_if),
            "phases": [
                {
                    "phase": p.name,
                    "gigantic_pages": p.gigantic_pages,
                    "removable_blocks": p.removable_blocks,
                    **p.meminfo,
                }
                for p in self.phases
            ],
            "trace": self.trace,
            "crash": self.crash,
        }


def run_hotplug(spec: HotplugSpec, trace: bool = False) -> HotplugReport:
    # Tens of thousands of block objects make the cyclic GC rescan a growing heap again and again; the model
    # makes no reference cycles worth collecting during one script, so the collector waits until it ends.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _run_hotplug(spec, trace)
    finally:
        if enabled:
            gc.enable()


def _run_hotplug(spec: HotplugSpec, trace: bool = False) -> HotplugReport:
    if spec.online not in ("online", "online_kernel", "online_movable", "none"):
        raise ConfigError("online", f"unknown online type {spec.online!r}")
    if spec.size <= 0:
        raise ConfigError("size", "must be positive")
    cfg = spec.guest().config()
    strategy = get_strategy(spec.strategy, spec.strategy_params, key="")
    try:
        guest = Guest(cfg, strategy, trace=trace)
    except ValueError as exc:
        raise ConfigError("boot", str(exc)) from None
    strategy.check(guest.profile)
    at = spec.at if spec.at is not None else first_free(guest)
    end = at + spec.size
    report = HotplugReport(spec, guest.block_size, [], [], guest.trace if guest.trace is not None else [])
    report.what_if = guest.what_if() + strategy.departures(guest.profile)

    def phase(name: str) -> None:
        removable = sum(1 for b in guest.blocks.values() if guest.removable(b))
        report.phases.append(Phase(name, guest.meminfo().as_dict(), guest.gigantic_pages(), removable))

    phase("boot")
    start_pfn, end_pfn = at >> PAGE_SHIFT, end >> PAGE_SHIFT
    guest.backing.populate(start_pfn, end_pfn)  # a DIMM: the whole range is backed before the add
    nr_pages = end_pfn - start_pfn
    flag = acpi_memmap_on_memory_flag(guest.profile, nr_pages, guest.block_pages, guest.sp)
    group = guest.register_memory_group(spec.node, max_pages=nr_pages) if guest.profile.auto_movable else None
    try:
        ret = guest.add_memory(
            spec.node, at, spec.size, hint=Extents.span(start_pfn, end_pfn), memmap_on_memory=flag, group=group
        )
        report.calls.append((f"add_memory(nid={spec.node}, start={at:#x}, size={spec.size:#x})", ret))
        if ret:
            return report
        report.notes += _memmap_notes(guest, strategy, flag)
        phase("added")
        if spec.online != "none":
            failed = _each_block(guest, report, "online", lambda b: guest.online_memory_block(b, spec.online))
            phase("onlined")
            if failed:
                return report
        if spec.remove:
            # offline from the top: with altmap-range the first blocks host the others' memmap
            online = [b.id for b in guest.blocks.values() if b.state is BlockState.ONLINE]
            if online:
                failed = _each_block(guest, report, "offline", guest.offline_memory_block, ids=online[::-1])
                phase("offlined")
                if failed:
                    return report
            ret = guest.remove_memory(at, spec.size)
            report.calls.append((f"remove_memory(start={at:#x}, size={spec.size:#x})", ret))
            if not ret:
                phase("removed")
    except GuestCrash as crash:
        report.crash = str(crash)
        phase("crashed")
    return report


def _memmap_notes(guest: Guest, strategy: MemmapStrategy, flag: bool) -> list[str]:
    """Why memmap_on_memory, asked for, gave the ordinary memmap: what the kernel did instead."""
    if not strategy.uses_mhp_flag or not guest.stats.memmap_fallbacks:
        return []
    p = guest.profile
    if p.memmap_on_memory == "none":
        why = f"kernel {p.name} has no memory_hotplug.memmap_on_memory (a08a2ae34613, 5.13)"
    elif not flag:
        why = (
            "acpi_memory_enable_device() passes MHP_MEMMAP_ON_MEMORY only for a DIMM of exactly one memory block "
            "(5.13-6.5, 4a3e5de9c4ec)"
        )
    elif p.memmap_on_memory == "single-block":
        why = "mhp_supports_memmap_on_memory() needs the range to be one memory block before 6.8 (6b8f0798b85a)"
    else:
        why = "mhp_supports_memmap_on_memory() fails: the vmemmap of a block does not span whole PMDs"
    blocks = guest.stats.memmap_fallbacks
    return [f"memmap: {strategy.name} asked, but {why}: the ordinary memmap from online memory for {blocks} block(s)"]


def _each_block(guest: Guest, report: HotplugReport, verb: str, fn, ids=None) -> bool:
    """Apply fn to every block; one summary call line (the first failure if any)."""
    ids = sorted(guest.blocks) if ids is None else ids
    for bid in ids:
        ret = fn(bid)
        if ret:
            report.calls.append((f"{verb} memory{bid}", ret))
            return True
    report.calls.append((f"{verb} memory{ids[0]}..memory{ids[-1]} ({len(ids)} blocks)", 0))
    return False


ROWS = [
    ("MemTotal", "MemTotal_kb", "kB"),
    ("MemFree", "MemFree_kb", "kB"),
    ("MemAvailable", "MemAvailable_kb", "kB"),
    ("present", "present_pages", "pages"),
    ("managed", "managed_pages", "pages"),
    ("nr_memmap_pages", "nr_memmap_pages", "pages"),
    ("memmap in online mem", "memmap_kmalloc_pages", "pages"),
    ("memmap in added range", "memmap_in_range_pages", "pages"),
    ("vmemmap self-hosted", "vmemmap_pages", "pages"),
    ("kernel (unmovable)", "kernel_pages", "pages"),
    ("blocks added", "blocks_added", ""),
    ("blocks online", "blocks_online", ""),
]


def format_report(report: HotplugReport) -> str:
    s = report.spec
    lines = [
        f"guest: boot {'+'.join(format_size(b) for b in s.boot)}, kernel {s.kernel}, memory block "
        f"{format_size(report.block_size)}, strategy {s.strategy}, accounting {s.accounting}",
    ]
    lines += [f"{call} = {ret}" + (f" ({errname(ret)})" if ret else "") for call, ret in report.calls]
    lines += report.notes
    if report.what_if:
        lines.append("what-if: " + "; ".join(report.what_if))
    if report.crash:
        lines.append(f"GUEST CRASHED: {report.crash}")
    names = [p.name for p in report.phases]
    width = max(12, *(len(n) + 2 for n in names))
    head = f"{'':24}" + "".join(f"{n:>{width}}" for n in names) + "  unit"
    lines += ["", head]
    for label, key, unit in ROWS:
        vals = [p.meminfo.get(key) for p in report.phases]
        if all(v is None for v in vals):
            continue
        cells = "".join(f"{'-' if v is None else v:>{width}}" for v in vals)
        lines.append(f"{label:24}{cells}  {unit}".rstrip())
    lines.append(f"{'gigantic pages (1G)':24}" + "".join(f"{p.gigantic_pages:>{width}}" for p in report.phases))
    lines.append(f"{'removable blocks':24}" + "".join(f"{p.removable_blocks:>{width}}" for p in report.phases))
    if len(report.phases) > 1:
        first = report.phases[0].meminfo
        lines.append("")
        for p in report.phases[1:]:
            d_total = p.meminfo["MemTotal_kb"] - first["MemTotal_kb"]
            d_free = p.meminfo["MemFree_kb"] - first["MemFree_kb"]
            lines.append(f"{p.name:>10}: MemTotal {d_total:+} kB, MemFree {d_free:+} kB since boot")
    if report.trace:
        lines += ["", *report.trace]
    return "\n".join(lines)
