"""The validation cases: what each guest boots with and the steps the host and the guest take.

A case is data: the machine (boot memory, NUMA nodes, a virtio-mem device), the kernel command line, and a
list of steps. The same steps, with what the real kernel answered, go into the recording, and the model
replays them from there (balloonsim/validate/model.py), so nothing about a case lives in two places.

Steps:
  idle        the full snapshot taken `samples` times, `interval_s` apart, nothing else running; its
              /proc/meminfo and /proc/zoneinfo are kept: the noise the MemFree tolerances are made of
  snap        a full snapshot named `phase` (meminfo, vmstat, zoneinfo, every memory block, block size)
  dimm_add    QMP object-add memory-backend-ram + device_add pc-dimm (`size_mib`, `node`); the guest waits
              for the new blocks to appear and the block list to settle
  write       `value` into `file` of every memory block of device `dev`, lowest block first; then waits for
              the writers to be gone (busybox timeout's watchers linger up to a second)
  activity    `seconds` of ordinary shell activity (fork, exec, /proc and /sys walks, tmpfs files)
  dimm_del    QMP device_del (an ACPI eject: the guest offlines and removes the DIMM or refuses)
  vmem_resize QMP qom-set requested-size of virtio-mem device `dev`; waits until the plugged size stops moving
  fill        a tmpfs file written until about `free_mib` MiB of MemFree are left: memory the guest cannot
              reclaim (no swap) and the OOM killer cannot free, as under a study's workload
              (or, with `size_mib`, `size_mib` MiB written whatever is free: with swap, reclaim makes the room)
  anon        a process faults in `size_mib` MiB of anonymous memory (busybox dd's buffer); with no swap and less
              free, the OOM killer kills it: how many kills, and the victim's anon-rss, are the step's result
  hold        a process faults in `size_mib` MiB of anonymous memory and keeps it (busybox dd blocked on a pipe)
  swapon      the machine's swap disk (`MachineSpec.swap_mib`) made swap and added with swapon
  release     the `fill` step's file emptied, without starting a process
  sysctl      `value` written to /proc/sys/`key` (dots for slashes)
  hugepages   `value` written to the 1 GiB hstate's nr_hugepages (alloc_contig_pages() for each page, as many as
              it finds); how many the kernel then holds is the step's result
A `dimm_add` with `quiet` waits for the blocks from the host, starting no process in the guest (see
record.Runner._wait_quietly): under `fill`, a process that faults while add_memory() holds the free pages at
the min watermarks is OOM-killed, and the guest panics once only init is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .qemu import MachineSpec

IDLE = {"do": "idle", "samples": 6, "interval_s": 1}


@dataclass
class Case:
    name: str
    what: str
    machine: MachineSpec
    steps: list[dict] = field(default_factory=list)


def _cmdline(memmap_on_memory: bool, default_state: str, movable_node: bool = False) -> list[str]:
    out = [f"memhp_default_state={default_state}", f"memory_hotplug.memmap_on_memory={int(memmap_on_memory)}"]
    return out + (["movable_node"] if movable_node else [])


def _dimm_case(size_mib: int, online: str, mmom: bool) -> Case:
    size = f"{size_mib // 1024}G" if size_mib >= 1024 else f"{size_mib}M"
    zone = "movable" if online == "online_movable" else "kernel"
    steps = [
        IDLE,
        {"do": "snap", "phase": "boot"},
        {"do": "dimm_add", "dev": "dimm0", "size_mib": size_mib, "node": 0},
        {"do": "snap", "phase": "added"},
        {"do": "write", "dev": "dimm0", "file": "state", "value": online},
        {"do": "snap", "phase": "onlined"},
    ]
    if online == "online_kernel":
        steps += [{"do": "activity", "seconds": 5}, {"do": "snap", "phase": "active"}]
    steps += [
        {"do": "write", "dev": "dimm0", "file": "state", "value": "offline"},
        {"do": "snap", "phase": "offlined"},
        {"do": "dimm_del", "dev": "dimm0"},
        {"do": "snap", "phase": "removed"},
    ]
    return Case(
        name=f"dimm-{size}-{zone}{'-mmom' if mmom else ''}",
        what=f"pc-dimm of {size}, {online}, offline, device_del; memmap_on_memory={'on' if mmom else 'off'}",
        machine=MachineSpec(cmdline=_cmdline(mmom, "offline")),
        steps=steps,
    )


def _virtio_mem_case(online: str) -> Case:
    zone = "movable" if online == "online_movable" else "kernel"
    steps = [IDLE, {"do": "snap", "phase": "boot"}]
    for mib, phase in ((1024, "plugged-1G"), (300, "plugged-300M"), (0, "plugged-0")):
        steps += [{"do": "vmem_resize", "dev": "vm0", "size_mib": mib}, {"do": "snap", "phase": phase}]
    return Case(
        name=f"virtio-mem-{zone}",
        what=f"virtio-mem (4G region) plugged to 1G, 300M (a partly plugged block), 0; auto-onlined {online}",
        machine=MachineSpec(cmdline=_cmdline(False, online), virtio_mem={"id": "vm0", "size_mib": 4096, "node": 0}),
        steps=steps,
    )


def _auto_online_case(state: str, mmom: bool) -> Case:
    return Case(
        name=f"auto-online-{state.replace('_', '-')}{'-mmom' if mmom else ''}",
        what=f"memhp_default_state={state}: a 1G pc-dimm onlined inside add_memory(); how long until the guest "
        "sees every block online; then offline and device_del",
        machine=MachineSpec(cmdline=_cmdline(mmom, state)),
        steps=[
            IDLE,
            {"do": "snap", "phase": "boot"},
            {"do": "dimm_add", "dev": "dimm0", "size_mib": 1024, "node": 0},
            {"do": "snap", "phase": "added"},
            {"do": "write", "dev": "dimm0", "file": "state", "value": "offline"},
            {"do": "snap", "phase": "offlined"},
            {"do": "dimm_del", "dev": "dimm0"},
            {"do": "snap", "phase": "removed"},
        ],
    )


def _numa_case(movable_node: bool) -> Case:
    steps = [
        IDLE,
        {"do": "snap", "phase": "boot"},
        {"do": "dimm_add", "dev": "dimm0", "size_mib": 1024, "node": 1},
        {"do": "snap", "phase": "added"},
    ]
    if not movable_node:
        steps += [
            {"do": "write", "dev": "dimm0", "file": "state", "value": "online"},
            {"do": "snap", "phase": "onlined"},
        ]
    steps += [
        {"do": "write", "dev": "dimm0", "file": "state", "value": "offline"},
        {"do": "snap", "phase": "offlined"},
        {"do": "dimm_del", "dev": "dimm0"},
        {"do": "snap", "phase": "removed"},
    ]
    if movable_node:
        return Case(
            name="numa-node1-movable-node",
            what="two NUMA nodes, node 1 without boot memory, movable_node, memhp_default_state=online: a 1G "
            "pc-dimm on node 1 (onlined by the kernel's policy), offline, device_del",
            machine=MachineSpec(numa_mem_mib=[2048, 0], cmdline=_cmdline(False, "online", movable_node=True)),
            steps=steps,
        )
    return Case(
        name="numa-node1",
        what="two NUMA nodes of 1G each: a 1G pc-dimm on node 1, 'online' (the kernel picks the zone), offline, "
        "device_del",
        machine=MachineSpec(numa_mem_mib=[1024, 1024], cmdline=_cmdline(False, "offline")),
        steps=steps,
    )


# MemFree left before a 10 GiB DIMM is added with its memmap kmalloc'd (160 MiB of it, 80 sections): on either
# side of where the add stops fitting, which is about the min watermarks plus the memmap
PRESSURE_FREE_MIB = (160, 192, 208, 224, 256)


# ... and with memory_hotplug.memmap_on_memory=1: the memmap in the DIMM itself (6.6+ ACPI passes the flag for
# any DIMM; 6.1 only for a one-block DIMM, so there the 10 GiB DIMM's memmap is kmalloc'd as above)
PRESSURE_MMOM_FREE_MIB = (96, 160)


# ... and with the per-cpu lists kept small (vm.percpu_pagelist_high_fraction: pcp->high = 4 x batch = 252
# pages, 1 MiB a CPU, no automatic tuning): what the kernel leaves on them when the add runs out is what the model,
# which has no per-cpu lists, cannot leave; what is left apart is ZONE_DMA (known disagreement [7])
PRESSURE_SMALL_PCP_FREE_MIB = (160, 208)
SMALL_PCP = {"do": "sysctl", "key": "vm.percpu_pagelist_high_fraction", "value": 1_000_000}


# The quickstart's first situation, one 128 MiB add after another (as hv_balloon adds chunks nobody has onlined
# yet), each kmalloc'ing its 2 MiB memmap out of what a tmpfs file has left free, until one fails: how many fit.
PRESSURE_SERIES_FREE_MIB = 80
PRESSURE_SERIES_ADDS = 24


def _pressure_series_case() -> Case:
    """`PRESSURE_SERIES_ADDS` pc-dimms of 128M added one after another to a guest left with `PRESSURE_SERIES_FREE_MIB`
    MiB free, none onlined: each add's memmap (one order-9 block, GFP_KERNEL | __GFP_RETRY_MAYFAIL) comes out of the
    free memory, and the adds succeed until one cannot find it. Each add is waited for from the host (`quiet`, 1 s:
    an add of one block takes milliseconds), and then until the console has been silent for 2 s: every add's ACPI
    notification rescans all memory devices and retries those whose add failed (`settle_s`)."""
    adds = [
        {"do": "dimm_add", "dev": f"dimm{k}", "size_mib": 128, "node": 0, "wait_s": 60, "quiet": True, "quiet_s": 1}
        | {"settle_s": 2}
        for k in range(PRESSURE_SERIES_ADDS)
    ]
    free = PRESSURE_SERIES_FREE_MIB
    return Case(
        name=f"pressure-128M-series-free-{free}M",
        what=f"tmpfs filled until {free} MiB are free, then {PRESSURE_SERIES_ADDS} pc-dimms of 128M added one after "
        "another, none onlined (memmap kmalloc'd, 2 MiB each): which are added, which fail",
        machine=MachineSpec(slots=PRESSURE_SERIES_ADDS + 8, cmdline=_cmdline(False, "offline")),
        steps=[
            *_filled(free),
            *adds,
            {"do": "release"},
            {"do": "snap", "phase": "added"},
        ],
    )


def _retry_case() -> Case:
    """The 10 GiB add that fails with 160 MiB free, then, the pressure gone, one more DIMM: from 6.9 its
    notification's rescan retries the failed DIMM, whose first sections' memmap the failure left, and gets -EEXIST,
    which binds it with no memory and logs nothing; 6.1 does not retry it."""
    case = _pressure_case(160)
    add = {"do": "dimm_add", "dev": "dimm1", "size_mib": 128, "node": 0, "wait_s": 60, "quiet": True}
    return Case(
        name="pressure-10G-free-160M-then-128M",
        what=f"{case.what}; then a 128M pc-dimm",
        machine=case.machine,
        steps=[*case.steps, add | {"quiet_s": 1, "settle_s": 2}, {"do": "snap", "phase": "then-added"}],
    )


def _filled(free_mib: int) -> list[dict]:
    """The start of a case under memory pressure: the idle noise, the boot snapshot, and a tmpfs file written until
    `free_mib` MiB are free (the replay's input: the model is filled to what the next snapshot shows)."""
    return [
        IDLE,
        {"do": "snap", "phase": "boot"},
        {"do": "fill", "free_mib": free_mib},
        {"do": "snap", "phase": "filled"},
    ]


def _pressure_case(free_mib: int, mmom: bool = False, small_pcp: bool = False) -> Case:
    """The pressure study's mechanism on a real kernel: does add_memory() of a DIMM find its memmap (GFP_KERNEL |
    __GFP_RETRY_MAYFAIL: reclaim and compaction, no OOM killer) when the guest has only `free_mib` MiB free, and
    does a memmap in the added range (memmap_on_memory) need none of it?"""
    where = "in the DIMM (memmap_on_memory)" if mmom else "kmalloc'd"
    pcp = ", per-cpu lists of 4 x batch" if small_pcp else ""
    return Case(
        name=f"pressure-10G-free-{free_mib}M{'-mmom' if mmom else ''}{'-small-pcp' if small_pcp else ''}",
        what=f"tmpfs filled until {free_mib} MiB are free, then a 10G pc-dimm (memmap {where}{pcp}): added or -ENOMEM",
        machine=MachineSpec(cmdline=_cmdline(mmom, "offline")),
        steps=[
            *([SMALL_PCP] if small_pcp else []),
            *_filled(free_mib),
            {"do": "dimm_add", "dev": "dimm0", "size_mib": 10240, "node": 0, "wait_s": 120, "quiet": True},
            {"do": "release"},
            {"do": "snap", "phase": "added"},
        ],
    )


# Swap: a guest of 2 GiB with a 1 GiB swap disk, written a tmpfs file larger than its memory
SWAP_DISK_MIB = 1024
SWAP_FILL_MIB = (2048, 2560)  # a quarter and three quarters of the swap disk used


def _swap_case(fill_mib: int) -> Case:
    """Reclaim to swap on a real kernel, and the hot-add it makes room for: a tmpfs file of `fill_mib` MiB in a
    2 GiB guest goes partly to the swap disk (shmem pages are swap-backed, on the anon LRU, so with swap kswapd and
    direct reclaim write them out), then a 128 MiB DIMM's memmap (order 9, GFP_KERNEL | __GFP_RETRY_MAYFAIL) is
    found, by reclaiming more of it if need be, and emptying the file frees its swap."""
    return Case(
        name=f"swap-fill-{fill_mib}M-then-128M",
        what=f"{SWAP_DISK_MIB} MiB of swap, a {fill_mib} MiB tmpfs file written into the 2 GiB guest, then a "
        "128M pc-dimm (memmap kmalloc'd) added and onlined, then the file emptied",
        machine=MachineSpec(swap_mib=SWAP_DISK_MIB, cmdline=_cmdline(False, "offline")),
        steps=[
            IDLE,
            {"do": "snap", "phase": "boot"},
            {"do": "swapon"},
            {"do": "snap", "phase": "swapon"},
            {"do": "fill", "size_mib": fill_mib},
            {"do": "snap", "phase": "filled"},
            {"do": "dimm_add", "dev": "dimm0", "size_mib": 128, "node": 0},
            {"do": "snap", "phase": "added"},
            {"do": "write", "dev": "dimm0", "file": "state", "value": "online_movable"},
            {"do": "snap", "phase": "onlined"},
            {"do": "release"},
            {"do": "snap", "phase": "released"},
        ],
    )


# The OOM killer: a process faulting in more anonymous memory than a filled guest has free
OOM_FREE_MIB = 256
OOM_ANON_MIB = 512


def _oom_case(dimm_mib: int | None) -> Case:
    """When the OOM killer fires on a real kernel: a tmpfs file leaves `OOM_FREE_MIB` MiB free (nothing
    reclaimable: no swap), then a process faults in anonymous memory until the allocator gives up and the OOM killer
    kills it. Its anon-rss at the kill is how far the allocator let it go below free memory: the pressure study's
    OOM kills happen there. With `dimm_mib`, a DIMM (memmap kmalloc'd) is added and onlined movable first, and the
    process may fault into it too. The file is emptied before the last snapshot, which then shows what the kill
    and the OOM report left."""
    added = []
    if dimm_mib:
        added = [
            {"do": "dimm_add", "dev": "dimm0", "size_mib": dimm_mib, "node": 0},
            {"do": "write", "dev": "dimm0", "file": "state", "value": "online_movable"},
            {"do": "snap", "phase": "onlined"},
        ]
    size = OOM_ANON_MIB + (dimm_mib or 0)
    return Case(
        name=f"oom-anon-free-{OOM_FREE_MIB}M" + (f"-then-{dimm_mib}M" if dimm_mib else ""),
        what=f"tmpfs filled until {OOM_FREE_MIB} MiB are free"
        + (f", a {dimm_mib}M pc-dimm added (memmap kmalloc'd) and onlined movable" if dimm_mib else "")
        + f", then a process faults in {size} MiB of anonymous memory: the OOM killer kills it; then the file emptied",
        machine=MachineSpec(cmdline=_cmdline(False, "offline")),
        steps=[
            *_filled(OOM_FREE_MIB),
            *added,
            {"do": "anon", "size_mib": size},
            {"do": "release"},
            {"do": "snap", "phase": "released"},
        ],
    )


# Page tables: a process holding memory in a DIMM onlined to ZONE_NORMAL
HOLD_MIB = 768


def _dimm_1g_kernel() -> list[dict]:
    """The start of the page-table cases: the idle noise, the boot snapshot, and a 1 GiB DIMM onlined online_kernel
    (the 2 GiB guest's only ZONE_NORMAL, first in every zonelist)."""
    return [
        IDLE,
        {"do": "snap", "phase": "boot"},
        {"do": "dimm_add", "dev": "dimm0", "size_mib": 1024, "node": 0},
        {"do": "write", "dev": "dimm0", "file": "state", "value": "online_kernel"},
    ]


def _page_tables_under_pressure_case(free_mib: int = 256, hold_mib: int = 128) -> Case:
    """The same DIMM and process, but the process starts in a guest a tmpfs file has left `free_mib` MiB free (the
    file fills the DIMM first, the zone's unmovable pageblock's free pages too): where do its page tables land
    when the zone's free pages are few? The file is emptied before the offline, so only unmovable pages refuse."""
    return Case(
        name=f"pagetables-hold-{hold_mib}M-in-1G-kernel-free-{free_mib}M",
        what=f"pc-dimm of 1G onlined online_kernel, tmpfs filled until {free_mib} MiB are free, then a process "
        f"holding {hold_mib} MiB; the file emptied, then every block of the DIMM offlined",
        machine=MachineSpec(cmdline=_cmdline(False, "offline")),
        steps=[
            *_dimm_1g_kernel(),
            {"do": "fill", "free_mib": free_mib},
            {"do": "snap", "phase": "filled"},
            {"do": "hold", "size_mib": hold_mib},
            {"do": "release"},
            {"do": "snap", "phase": "released"},
            {"do": "write", "dev": "dimm0", "file": "state", "value": "offline"},
            {"do": "snap", "phase": "offlined"},
        ],
    )


def _page_tables_case() -> Case:
    """Where a process's page tables land: a 1 GiB DIMM onlined online_kernel (the guest's only ZONE_NORMAL, first
    in every zonelist), then a process faults in `HOLD_MIB` MiB and keeps it: its pages and, unmovable, its page
    tables (1.5 MiB) go to the DIMM. Which of the DIMM's blocks can then be offlined says where the tables are
    (has_unmovable_pages(): -EBUSY), and how the kernel groups unmovable pages into pageblocks."""
    return Case(
        name=f"pagetables-hold-{HOLD_MIB}M-in-1G-kernel",
        what=f"pc-dimm of 1G onlined online_kernel, then a process holding {HOLD_MIB} MiB of anonymous memory; "
        "then every block of the DIMM offlined",
        machine=MachineSpec(cmdline=_cmdline(False, "offline")),
        steps=[
            *_dimm_1g_kernel(),
            {"do": "snap", "phase": "onlined"},
            {"do": "hold", "size_mib": HOLD_MIB},
            {"do": "snap", "phase": "held"},
            {"do": "write", "dev": "dimm0", "file": "state", "value": "offline"},
            {"do": "snap", "phase": "offlined"},
        ],
    )


# 1 GiB pages asked for at a time: more than a 2 GiB guest with 2 GiB of DIMMs can give
GIGANTIC_ASK = 8


def _gigantic_case(dimm_mib: tuple[int, ...], online: str, mmom: bool) -> Case:
    """The quickstart's third situation on a real kernel: how many 1 GiB pages DIMMs added and onlined to `online`
    one after the other give, with their memmap kmalloc'd or at the start of every block. Asked for once before
    the first add (what boot memory gives) and once after the last online."""
    zone = "movable" if online == "online_movable" else "kernel"
    ask = {"do": "hugepages", "value": GIGANTIC_ASK}
    sizes = f"{dimm_mib[0] // 1024}G" if len(dimm_mib) == 1 else f"{len(dimm_mib)}x{dimm_mib[0] // 1024}G"
    steps = [IDLE, {"do": "snap", "phase": "boot"}, ask]
    for k, mib in enumerate(dimm_mib):
        steps += [
            {"do": "dimm_add", "dev": f"dimm{k}", "size_mib": mib, "node": 0},
            {"do": "write", "dev": f"dimm{k}", "file": "state", "value": online},
        ]
    return Case(
        name=f"gigantic-{sizes}-{zone}{'-mmom' if mmom else ''}",
        what=f"1 GiB pages asked for before and after pc-dimms of {' + '.join(f'{m // 1024}G' for m in dimm_mib)} "
        f"are added and {online}, one after the other; memmap_on_memory={'on' if mmom else 'off'}",
        machine=MachineSpec(cmdline=_cmdline(mmom, "offline")),
        steps=[*steps, {"do": "snap", "phase": "onlined"}, ask],
    )


def all_cases() -> list[Case]:
    cases = [
        _dimm_case(size, online, mmom)
        for size in (128, 1024, 10240)
        for online in ("online_movable", "online_kernel")
        for mmom in (False, True)
    ]
    cases += [_virtio_mem_case("online_movable"), _virtio_mem_case("online_kernel")]
    cases += [_auto_online_case("online", False), _auto_online_case("online_movable", True)]
    cases += [_numa_case(False), _numa_case(True)]
    cases += [_pressure_case(free) for free in PRESSURE_FREE_MIB]
    cases += [_pressure_case(free, mmom=True) for free in PRESSURE_MMOM_FREE_MIB]
    cases += [_pressure_case(free, small_pcp=True) for free in PRESSURE_SMALL_PCP_FREE_MIB]
    cases += [_pressure_series_case(), _retry_case()]
    cases += [
        _gigantic_case(dimms, "online_kernel", mmom) for dimms in ((2048,), (1024, 1024)) for mmom in (False, True)
    ]
    cases += [_gigantic_case((2048,), "online_movable", False)]
    cases += [_swap_case(mib) for mib in SWAP_FILL_MIB]
    cases += [_oom_case(None), _oom_case(128), _page_tables_case(), _page_tables_under_pressure_case()]
    return cases


def get_cases(names: list[str] | None) -> list[Case]:
    cases = all_cases()
    if not names:
        return cases
    by_name = {c.name: c for c in cases}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise KeyError(f"unknown case {unknown[0]!r} (known: {', '.join(by_name)})")
    return [by_name[n] for n in names]
