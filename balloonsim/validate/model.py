"""The model's side of a recording: the same steps replayed on balloonsim's kernel model.

Everything here talks to the kernel model through its top-level API (Guest: add_memory, online_memory_block,
offline_memory_block, remove_memory, alloc_contig_range, meminfo(), the zones in guest.alloc), so that a change
inside balloonsim.kernel needs no change here. The guest is configured from the recording only: boot memory
per node from QEMU's -m / -numa, the kernel profile from the release, the memory block size from
block_size_bytes, and memmap_on_memory, memhp_default_state and movable_node from the kernel command line.

The drivers are the ones studies run, not copies of their kernel calls, in a ReplayWorld
(balloonsim.validate.world: the recorded guest, a host that backs what QEMU backs, no workload):
- pc-dimm: device_add is drivers/dimm.py AcpiDimm.notify() at the recorded address and node (from 6.9 the
  earlier DIMMs whose add failed are retried first; then acpi_memory_enable_device(): the range backed, a static
  memory group (5.15+), one add_memory() with MHP_MEMMAP_ON_MEMORY by the release's rule); device_del is
  AcpiDimm.eject() (acpi_scan_try_to_offline(): every block offlined, failures retried once, the blocks offlined
  put back online when one still fails, else __remove_memory()), run for as long as the recording waited.
- virtio-mem: drivers/virtio_mem on the recorded device; each resize sets QEMU's requested size and lets its
  worker run as long as the recording waited.
Ordinary activity in the guest (the `activity` step) has no counterpart in the model. The `anon` step's process
is a task of the studies' user memory (balloonsim.sim.memory), faulting and OOM-killed as theirs are (the `hold`
step's keeps its memory, which an offline then migrates). A `hugepages` step is answered with
`Guest.gigantic_pages()`, the count behind the studies' gigantic_pages_end: the naturally aligned 1 GiB ranges
of hot-added memory alloc_contig_pages() could take (the model takes none).
The `fill` step's tmpfs file is user memory the model cannot reclaim (anon with no swap: movable, so compaction
can move it), taken zone by zone until each zone has the free pages, per-cpu lists included, that the recording's
next snapshot shows: the same memory left where the kernel left it, whatever the boot-time noise. A `fill` of a
given size (`size_mib`) after `swapon` is the model's own prediction instead: the file's pages are faulted in as
dd writes them, and the model's kswapd and direct reclaim write them (swap-backed, on the anon LRU) to a swap
device of the recorded disk's size, as the kernel does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from balloonsim.drivers.dimm import AcpiDimm, DimmParams
from balloonsim.drivers.virtio_mem import VirtioMem, VirtioMemParams
from balloonsim.kernel import BlockState, Guest, GuestConfig, GuestCrash, errname
from balloonsim.kernel.errno import EEXIST
from balloonsim.kernel.page_alloc import SWAP_CLUSTER_MAX, USER_ZONEIDX, Gfp, Transaction
from balloonsim.kernel.profiles import PROFILES
from balloonsim.kernel.swap import SwapDevice
from balloonsim.memmap import get_strategy
from balloonsim.units import PAGE_SHIFT, PAGE_SIZE, MiB
from balloonsim.validate.parse import Recording
from balloonsim.validate.world import ReplayWorld

if TYPE_CHECKING:
    from balloonsim.sim.memory import UserMemory

ONLINE_VALUES = ("online", "online_kernel", "online_movable")
VIRTIO_MEM_DEVICE_BLOCK = 2 * MiB  # QEMU's default for a memory-backend-ram (the guest logs it)


def profile_for(release: str) -> str:
    """The newest kernel profile not newer than `release` ("6.5" -> "6.1")."""

    def ver(s: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", s)[:2])

    fits = [p for p in PROFILES if ver(p) <= ver(release)]
    if not fits:
        raise ValueError(f"no kernel profile for release {release}")
    return max(fits, key=ver)


@dataclass
class ModelSnapshot:
    meminfo: dict[str, int]  # MemTotal, MemFree, MemAvailable, SwapTotal, SwapFree (kB)
    vmstat: dict[str, int | None]  # nr_memmap_pages, nr_memmap_boot_pages (None: the release has none)
    zones: dict[tuple[int, str], tuple[int, int, int]]  # (node, zone) -> (spanned, present, managed)
    blocks: dict[int, tuple[str, str | None, int]]  # block id -> (state, zone of an online block, node)
    kswapd_pass_kb: int = 0  # the most one kswapd pass of node 0 reclaims (kswapd_pass_pages())


@dataclass
class ModelRun:
    profile: str
    probed_block_size: int
    block_size: int
    snapshots: dict[str, ModelSnapshot] = field(default_factory=dict)
    outcomes: dict[int, object] = field(default_factory=dict)  # step index -> what the step returned
    crash: str | None = None
    add_failures: int = 0  # add_memory() calls that failed but with -EEXIST (which ACPI binds), retries included


def _snapshot(guest: Guest) -> ModelSnapshot:
    mi = guest.meminfo()
    swap = guest.alloc.swap
    zones = {}
    for (nid, zt), z in guest.alloc.zones.items():
        spanned = z.span_end - z.span_start if z.span_start is not None else 0
        zones[(nid, zt.value)] = (spanned, z.present, z.managed)
    blocks = {
        b.id: (b.state.value, b.zone.type.value if b.state is BlockState.ONLINE and b.zone else None, b.nid)
        for b in guest.blocks.values()
    }
    return ModelSnapshot(
        meminfo={
            "MemTotal": mi.MemTotal_kb,
            "MemFree": mi.MemFree_kb,
            "MemAvailable": mi.MemAvailable_kb,
            "SwapTotal": swap.slots * PAGE_SIZE >> 10,
            "SwapFree": swap.free * PAGE_SIZE >> 10,
        },
        vmstat={"nr_memmap_pages": mi.nr_memmap_pages, "nr_memmap_boot_pages": mi.nr_memmap_boot_pages},
        zones=zones,
        blocks=dict(sorted(blocks.items())),
        kswapd_pass_kb=kswapd_pass_pages(guest) * PAGE_SIZE >> 10,
    )


def kswapd_pass_pages(guest: Guest, nid: int = 0) -> int:
    """kswapd_shrink_node()'s nr_to_reclaim for a user allocation (mm/vmscan.c, 6.1.192 and 6.12.118): the sum of
    max(high watermark, SWAP_CLUSTER_MAX) over the node's managed zones up to ZONE_MOVABLE, the most one kswapd pass
    reclaims. The tolerance of free memory and swap while a file outgrows memory: the boot state, the swap cache
    and the file's own slab, which the model does not have, move them within it (validation/README.md)."""
    return sum(max(z.wmark_high, SWAP_CLUSTER_MAX) for (n, _), z in guest.alloc.zones.items() if n == nid and z.managed)


def guest_config(rec: Recording, block_size: int | None, kernel_reserved: int | None = None) -> GuestConfig:
    """`kernel_reserved` (bytes): what the kernel kept of boot memory besides its memmap (image, initramfs,
    memblock allocations), which depends on the distribution's build; None: GuestConfig's default."""
    m = rec.data["machine"]
    boot = [mib * MiB for mib in m["numa_mem_mib"]] if m.get("numa_mem_mib") else [m["boot_mem_mib"] * MiB]
    cmd = rec.cmdline
    cpu_flags = rec.data["provenance"].get("cpu_flags", [])
    extra = {} if kernel_reserved is None else {"kernel_reserved": kernel_reserved}
    return GuestConfig(
        boot=boot,
        max_addr=4 * 1024 * MiB + m["maxmem_gib"] * 1024 * MiB,  # QEMU's device memory starts at 4 GiB
        block_size=block_size,
        kernel=profile_for(rec.kernel),
        movable_node="movable_node" in cmd,
        direct_gbpages="pdpe1gb" in cpu_flags,
        # Debian's kernels are built with CONFIG_TRANSPARENT_HUGEPAGE_MADVISE: khugepaged runs
        transparent_hugepage="madvise",
        **extra,
    )


def boot_reserved(rec: Recording) -> int:
    """The boot reservation that gives the model the recorded boot MemTotal: the model's managed pages with none,
    less the real kernel's (the boot state is an input, like the boot memory's size)."""
    bare = Guest(guest_config(rec, rec.snapshots["boot"].block_size, kernel_reserved=0))
    real = rec.snapshots["boot"].meminfo["MemTotal"] // (PAGE_SIZE >> 10)
    return max(0, bare.meminfo().managed_pages - real) << PAGE_SHIFT


def new_guest(rec: Recording, block_size: int | None) -> Guest:
    mmom = rec.cmdline.get("memory_hotplug.memmap_on_memory", "0") in ("1", "y", "Y", "on", "force")
    config = guest_config(rec, block_size, kernel_reserved=boot_reserved(rec))
    guest = Guest(config, get_strategy("altmap" if mmom else "kmalloc", key=""))
    state = rec.cmdline.get("memhp_default_state", "offline")
    guest.auto_online = state if state in ONLINE_VALUES else None
    return guest


def _errno(ret: int) -> str:
    return "0" if ret == 0 else errname(ret).lstrip("-")


def replay(rec: Recording) -> ModelRun:
    """Run the recording's steps on the model; one ModelSnapshot per recorded phase."""
    real_bs = rec.snapshots["boot"].block_size
    probed = new_guest(rec, None).block_size  # probe_memory_block_size() from the boot layout
    guest = new_guest(rec, real_bs)
    run = ModelRun(guest.profile.name, probed, guest.block_size)
    devices: dict[str, tuple[int, int]] = {}
    world = ReplayWorld(guest, guest.config)
    # the pc-dimm driver, not started: the recording's steps add and eject its DIMMs
    dimm = world.driver = AcpiDimm(world, DimmParams(dimm_size=guest.block_size))
    vmem: dict[str, VirtioMem] = {}
    filled = Transaction()  # the `fill` step's pages
    vm = rec.data["machine"].get("virtio_mem")
    if vm:
        vmem[vm["id"]] = _virtio_mem(world, rec, vm)
    try:
        for i, st in enumerate(rec.steps):
            do = st["do"]
            if do == "snap":
                run.snapshots[st["phase"]] = _snapshot(guest)
            elif do == "dimm_add":  # object_add + device_add: QEMU backs the DIMM, then the ACPI notification
                addr, size = st["result"]["addr"], st["size_mib"] * MiB
                devices[st["dev"]] = (addr, size)
                world.host.populate(size >> PAGE_SHIFT)
                run.outcomes[i] = _errno(dimm.notify(st["node"], addr, size))
            elif do == "write":
                run.outcomes[i] = {
                    w["block"]: _write(guest, w["block"], st["file"], st["value"]) for w in st["result"]["writes"]
                }
            elif do == "dimm_del":  # device_del: the ACPI eject, for as long as the recording waited
                if devices[st["dev"]] in dimm.dimms:  # else the model's add failed: nothing to eject
                    eject = world.env.process(dimm.eject(*devices[st["dev"]]))
                    world.run_for(st["elapsed_s"])
                    run.outcomes[i] = bool(eject.value) if eject.triggered else False
                else:
                    run.outcomes[i] = False
            elif do == "vmem_resize":  # QEMU's requested-size, then as long as the recording waited
                world.set_target(sum(guest.config.boot) + st["size_mib"] * MiB)
                world.run_for(st["elapsed_s"])
                run.outcomes[i] = vmem[st["dev"]].plugged_size
            elif do == "swapon":  # mkswap writes its header in the disk's first page; swapon adds the rest
                guest.alloc.swap = SwapDevice((rec.data["machine"]["swap_mib"] * MiB >> PAGE_SHIFT) - 1)
            elif do == "fill" and "size_mib" in st:  # a tmpfs file of a given size: reclaim makes the room
                run.outcomes[i] = fill_swapping(guest, st["size_mib"] * MiB >> PAGE_SHIFT)
            elif do == "fill":  # a tmpfs file down to the recorded free memory
                nxt = rec.next_snapshot(i)
                if nxt is not None:
                    run.outcomes[i] = fill(guest, {key: z.free + z.pcp for key, z in nxt.zones.items()}, filled)
            elif do == "release":  # the file emptied: its pages freed where they are, and its swap slots
                for take in filled.takes:
                    guest.alloc.release(take)
                filled.takes.clear()
                if any(s["do"] == "fill" and "size_mib" in s for s in rec.steps[:i]):
                    release_swapped(guest)  # the file fill_swapping() wrote: every anon page the model has
            elif do == "hugepages":  # nr_hugepages of 1 GiB: the ranges the studies' gigantic_pages_end counts
                run.outcomes[i] = guest.gigantic_pages()
            elif do == "anon":  # a process faulting in anonymous memory, served as a study's tasks are
                run.outcomes[i] = fault_anon(world, st["size_mib"] * MiB >> PAGE_SHIFT)
            elif do == "hold":  # the same, and it keeps the memory
                run.outcomes[i] = hold_anon(world, st["size_mib"] * MiB >> PAGE_SHIFT)
            # "idle" and "activity" change nothing the model holds, nor "sysctl" (the per-cpu lists' size: it has none)
    except GuestCrash as crash:
        run.crash = str(crash)
    run.add_failures = sum(n for err, n in guest.stats.add_errors.items() if err != -EEXIST)
    return run


def _virtio_mem(world: ReplayWorld, rec: Recording, vm: dict) -> VirtioMem:
    """The shipped driver on the recorded device: its region where the guest found it (the first resize's
    `addr`), QEMU's default device block, and no MHP_MEMMAP_ON_MEMORY (virtio_mem.c never passes it)."""
    addr = next(st["result"]["addr"] for st in rec.steps if st["do"] == "vmem_resize")
    params = VirtioMemParams(
        region_start=addr,
        region_size=vm["size_mib"] * MiB,
        node=vm.get("node", 0),
        device_block_size=VIRTIO_MEM_DEVICE_BLOCK,
        memmap_on_memory=False,
    )
    driver = VirtioMem(world, params)
    world.driver = driver
    driver.start()
    return driver


def fill(guest: Guest, free_pages: dict[tuple[int, str], int], txn: Transaction) -> int:
    """Shmem pages (movable; unreclaimable, no swap) until each zone has the free pages `free_pages` gives it
    ((node, zone name) -> pages), remembered in `txn`; returns how many were taken. Zone by zone, not in total:
    the model's boot leaves ZONE_DMA 6 MiB freer than Debian's kernels do, and those pages are no room for a
    GFP_KERNEL allocation (DMA's lowmem_reserve), so a fill to the total would leave DMA32 that much short."""
    taken = 0
    for (nid, zt), z in guest.alloc.zones.items():
        target = free_pages.get((nid, zt.value))
        if target is not None and z.managed and z.free > target:
            taken += guest.alloc.take_from(z, z.free - target, txn)
    return taken


def fill_swapping(guest: Guest, pages: int) -> int:
    """dd of `pages` into a tmpfs file, 1 MiB (its block) at a time: shmem faults (GFP_HIGHUSER_MOVABLE), which
    wake kswapd at the low watermarks (it reclaims to the high ones) and reclaim directly, while that makes
    progress, when they find no room (the slow path's loop, as balloonsim.sim.memory runs it for tasks). Returns
    the pages written: fewer when reclaim gives up, where the kernel would invoke the OOM killer."""
    alloc = guest.alloc
    zl = alloc.zonelist(0, kernel_only=False)
    chunk = MiB >> PAGE_SHIFT
    got = no_progress_loops = 0
    while got < pages:
        want = min(chunk, pages - got)
        n = alloc.alloc(0, want, Gfp.USER, partial=True)
        got += n
        if n == want:
            no_progress_loops = 0
        elif alloc.reclaim(zl, want - n):
            no_progress_loops = 0
        else:
            no_progress_loops += 1
            if not alloc.should_reclaim_retry(zl, no_progress_loops, USER_ZONEIDX):
                break
    return got


def _user_memory(world: ReplayWorld) -> UserMemory:
    """The studies' user memory (balloonsim.sim.memory) on the replayed guest, made at its first task."""
    from balloonsim.sim.memory import UserMemory

    if world.memory is None:
        world.memory = UserMemory(world)
    return world.memory


def hold_anon(world: ReplayWorld, pages: int) -> int:
    """A process that faults in `pages` of anonymous memory and keeps it (the `hold` step): a task of the
    studies' user memory that stays. Returns the pages it got."""
    mem = _user_memory(world)
    return mem.allocate(mem.spawn("dd", pages), pages)


def fault_anon(world: ReplayWorld, pages: int) -> tuple[int, int, int]:
    """dd's buffer of `pages` faulted in by a task of the studies' user memory (balloonsim.sim.memory): the slow
    path's loop, direct reclaim while it makes progress, then the OOM killer, which takes the task itself (it is
    the only one). Returns the OOM kills, and the victim's anon pages and the page-table pages oom_badness() counts
    for it (the model allocates none) when it was killed; zeros without a kill."""
    mem = _user_memory(world)
    kills = mem.oom_kills
    task = mem.spawn("dd", pages)
    mem.allocate(task, pages)
    if task.alive:
        mem.exit(task)  # dd read its block and exits: its buffer is freed
    killed = mem.oom_kills - kills
    return (killed, *mem.last_victim) if killed else (0, 0, 0)


def release_swapped(guest: Guest) -> None:
    """A file `fill_swapping` wrote, emptied: shmem_truncate_range() frees its pages in memory and its swap
    entries (the model's only user pages are the file's)."""
    alloc = guest.alloc
    for z in alloc.iter_zones():
        if z.anon:
            alloc.free(z, z.anon, "anon")
    alloc.swap.release(alloc.swap.used)


def _write(guest: Guest, bid: int, file: str, value: str) -> str:
    """echo VALUE > /sys/devices/system/memory/memoryN/FILE."""
    if bid not in guest.blocks:
        return "ENOENT"
    if file != "state":
        return "EINVAL"
    if value in ONLINE_VALUES:
        return _errno(guest.online_memory_block(bid, value))
    if value == "offline":
        return _errno(guest.offline_memory_block(bid))
    return "EINVAL"
