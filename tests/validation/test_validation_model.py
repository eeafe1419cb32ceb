"""The replay's pieces: kernel profiles by release, and the shipped DIMM and virtio-mem drivers it runs."""

from __future__ import annotations

from balloonsim.drivers.dimm import AcpiDimm, DimmParams
from balloonsim.drivers.virtio_mem import VirtioMem, VirtioMemParams
from balloonsim.kernel import BlockState, Guest, GuestConfig
from balloonsim.kernel.errno import EBUSY
from balloonsim.kernel.page_alloc import Transaction
from balloonsim.kernel.swap import SwapDevice
from balloonsim.memmap import get_strategy
from balloonsim.sim.oom_kill import mm_pgtables
from balloonsim.units import GiB, MiB
from balloonsim.validate.model import (
    fault_anon,
    fill,
    fill_swapping,
    hold_anon,
    kswapd_pass_pages,
    new_guest,
    profile_for,
    release_swapped,
    replay,
)
from balloonsim.validate.world import ReplayWorld


def test_profile_for_release():
    assert profile_for("6.1") == "6.1"  # memmap_on_memory single-block, no nr_memmap_pages
    assert profile_for("6.12") == "6.12"
    assert profile_for("6.18") == "6.18"
    assert profile_for("6.14") == "6.12"


def _guest(**kw) -> Guest:
    return Guest(GuestConfig(boot=[2 * GiB], block_size=128 * MiB, **kw), get_strategy("kmalloc", key=""))


def test_a_fill_takes_user_pages_zone_by_zone_nothing_reclaims_and_its_release_gives_them_back():
    """The `fill` step's tmpfs file: movable user pages until each zone has the free pages the recording shows,
    which the model cannot reclaim with no swap (shmem), all freed again by `release`."""
    g = _guest()
    zones = {(nid, zt.value): z for (nid, zt), z in g.alloc.zones.items() if z.managed}
    free0 = {key: z.free for key, z in zones.items()}
    target = {(0, "DMA32"): free0[(0, "DMA32")] - 1000 * MiB // 4096, (0, "DMA"): free0[(0, "DMA")] - 1024}
    txn = Transaction()
    taken = fill(g, target, txn)
    assert taken == 1000 * MiB // 4096 + 1024 and g.alloc.total("anon") == taken
    assert {key: z.free for key, z in zones.items()} == target
    assert g.alloc.reclaim(g.alloc.zonelist(0, kernel_only=False), 1024) == 0
    for take in txn.takes:
        g.alloc.release(take)
    assert {key: z.free for key, z in zones.items()} == free0 and g.alloc.total("anon") == 0


def test_a_file_larger_than_memory_is_written_to_swap_and_kswapd_stops_soon_after_the_high_watermark():
    """The `fill` of a given size after `swapon`: shmem pages faulted in 1 MiB at a time; below the low watermarks
    the model's kswapd runs balance_pgdat(), whose passes reclaim what they scan, from 1/4096 of the LRU up as the
    priority rises (6.12.118 mm/vmscan.c l.6867-7045), at most the high watermarks' sum (kswapd_shrink_node(),
    l.6785-6800), writing anon pages to swap, until the node is balanced. Everything the file does not keep in
    memory is in swap, and the free memory ends between the low watermark and a little above the high one.
    Emptying the file frees both its pages and its slots."""
    g = _guest()
    g.alloc.swap = SwapDevice((1 * GiB >> 12) - 1)
    dma32 = next(z for (_, zt), z in g.alloc.zones.items() if zt.value == "DMA32")
    free0 = g.alloc.total("free")
    pages = 2560 * MiB >> 12
    assert fill_swapping(g, pages) == pages
    swap = g.alloc.swap
    assert swap.used == swap.pswpout == pages - g.alloc.total("anon") > 600 * MiB >> 12
    # kswapd's passes grow from 1/4096 of the LRU, about doubling: it stops less than a refill above the high
    # watermark (a refill: from below the low watermark, by at most dd's 1 MiB block), as the recorded kernels do
    refill = dma32.wmark_high - dma32.wmark_low + 256
    assert dma32.wmark_low <= dma32.free < dma32.wmark_high + refill < dma32.wmark_low + kswapd_pass_pages(g)
    release_swapped(g)
    assert swap.used == 0 and g.alloc.total("anon") == 0 and g.alloc.total("free") == free0


def test_without_swap_a_file_larger_than_memory_stops_where_reclaim_gives_up():
    """With no swap nothing reclaims shmem (get_scan_count(): SCAN_FILE), so the slow path's retries run out
    (should_reclaim_retry()) and the file is short: where the kernel would invoke the OOM killer."""
    g = _guest()
    pages = 2560 * MiB >> 12
    got = fill_swapping(g, pages)
    assert 0 < got < pages and g.alloc.swap.used == 0
    assert all(z.free >= z.wmark_min for z in g.alloc.iter_zones() if z.managed)


def test_a_process_faulting_in_more_than_is_free_is_oom_killed_at_the_min_watermarks():
    """The `anon` step: a task of the studies' user memory faults in dd's buffer; with no swap and nothing else
    reclaimable, direct reclaim makes no progress, should_reclaim_retry() gives up and out_of_memory() kills the
    only task (select_bad_process(), 6.12.118 mm/oom_kill.c), which then holds what the user zones had above
    their min watermarks (__zone_watermark_ok(): order-0, no ALLOC_HARDER for a user fault).
    ZONE_DMA is in no zonelist of the model (known disagreement [15]). A buffer that fits is faulted in and freed
    when dd exits."""
    g = _guest()
    world = ReplayWorld(g, g.config)
    fill(g, {(0, "DMA32"): 256 * MiB >> 12}, Transaction())
    dma32 = next(z for (_, zt), z in g.alloc.zones.items() if zt.value == "DMA32")
    room = dma32.free - dma32.wmark_min
    kills, rss, tables = fault_anon(world, 512 * MiB >> 12)
    # oom_badness() counts its page tables (mm_pgtables_bytes()); the model allocates none (known [15])
    assert (kills, rss, tables) == (1, room, mm_pgtables(room))
    assert world.memory.tasks == {} and dma32.free == room + dma32.wmark_min  # the victim's pages are back
    free = g.alloc.total("free")
    assert fault_anon(world, 64 * MiB >> 12) == (0, 0, 0) and g.alloc.total("free") == free


def test_a_held_process_keeps_its_memory_and_offlining_moves_it_out_of_the_dimm():
    """The `hold` step: a task that faults in 768 MiB and stays. In a 2 GiB guest with a 1 GiB DIMM onlined
    online_kernel (ZONE_NORMAL, first in the user zonelist) most of it lands in the DIMM; offlining the DIMM's
    blocks migrates it to DMA32 (do_migrate_range(), the rmap follows), except for the first block, which the
    zone's first unmovable pageblock pins (-EBUSY), as on every recorded kernel (pagetables-hold-*)."""
    world, dimm = _dimm_online(online="online_kernel")
    g = world.guest
    pages = 768 * MiB >> 12
    assert hold_anon(world, pages) == pages
    (task,) = world.memory.tasks.values()
    normal = next(z for (_, zt), z in g.alloc.zones.items() if zt.value == "Normal")
    assert task.rss == pages and task.zones[normal] > pages // 2
    results = {b: g.offline_memory_block(b) for b in sorted(g.blocks) if b >= 32}
    assert results == {b: -EBUSY if b == 32 else 0 for b in results}
    assert task.rss == pages and sum(task.zones.values()) == pages and g.alloc.total("anon") == pages


def _dimm_online(
    kernel: str = "6.12", strategy: str = "kmalloc", online: str = "online_movable"
) -> tuple[ReplayWorld, AcpiDimm]:
    """The shipped pc-dimm driver on a replayed 2 GiB guest, with a 1 GiB DIMM at 4 GiB (blocks 32-39) added
    through it and onlined `online` (movable by default)."""
    g = Guest(GuestConfig(boot=[2 * GiB], block_size=128 * MiB, kernel=kernel), get_strategy(strategy, key=""))
    world = ReplayWorld(g, g.config)
    dimm = AcpiDimm(world, DimmParams(dimm_size=128 * MiB))
    assert dimm.add(0, 4 * GiB, 1 * GiB) == 0
    for b in sorted(g.blocks):
        assert g.online_memory_block(b, online) == 0
    return world, dimm


def _eject(world: ReplayWorld, dimm: AcpiDimm) -> bool:
    eject = world.env.process(dimm.eject(4 * GiB, 1 * GiB))
    world.run_for(10.0)
    return bool(eject.value)


def test_acpi_eject_refused_puts_blocks_back_online():
    """acpi_scan_try_to_offline(), as the replay runs it (drivers/dimm.py): a block that cannot be offlined
    fails the eject, and the blocks the eject offlined are onlined again (acpi_bus_online() ->
    memory_subsys_online(): MMOP_ONLINE). Their offline shrank ZONE_MOVABLE to the block that stayed
    (shrink_zone_span()), so default_zone_for_pfn() finds no zone they intersect and they come back in
    ZONE_NORMAL."""
    world, dimm = _dimm_online()
    g = world.guest
    g.blocks[35].unmovable = 1
    assert _eject(world, dimm) is False
    assert all(b.state is BlockState.ONLINE for b in g.blocks.values())
    zones = {bid: b.zone.type.value for bid, b in g.blocks.items()}
    assert zones == {bid: "Movable" if bid == 35 else "Normal" for bid in range(32, 40)}


def test_acpi_eject_removes_a_dimm_that_offlines():
    world, dimm = _dimm_online()
    assert _eject(world, dimm) is True
    assert not world.guest.blocks and not dimm.dimms


def test_validate_replays_the_shipped_dimm_driver(recordings, monkeypatch):
    """The replay's device_add and device_del go through drivers/dimm.py (AcpiDimm.add, AcpiDimm.eject), the
    driver DIMM studies run, not a copy of its kernel calls."""
    rec = next(r for r in recordings if any(st["do"] == "dimm_del" for st in r.steps))
    calls: list[str] = []
    add, eject = AcpiDimm.add, AcpiDimm.eject

    def added(self, *args):
        calls.append("add")
        return add(self, *args)

    def ejected(self, *args):
        calls.append("eject")
        return (yield from eject(self, *args))

    monkeypatch.setattr(AcpiDimm, "add", added)
    monkeypatch.setattr(AcpiDimm, "eject", ejected)
    replay(rec)
    steps = [st["do"] for st in rec.steps]
    assert calls.count("add") == steps.count("dimm_add") and calls.count("eject") == steps.count("dimm_del")


def _replayed_virtio_mem(g: Guest) -> tuple[ReplayWorld, VirtioMem]:
    world = ReplayWorld(g, g.config)
    params = VirtioMemParams(region_start=4 * GiB, region_size=4 * GiB, memmap_on_memory=False)
    driver = VirtioMem(world, params)
    driver.start()
    return world, driver


def _resize(world: ReplayWorld, driver: VirtioMem, size: int) -> int:
    world.set_target(sum(world.scenario.guest.boot) + size)
    world.run_for(5.0)
    return driver.plugged_size


def test_virtio_mem_partial_block():
    """The shipped driver (drivers/virtio_mem, Sub Block Mode) on a replayed guest: 300 MiB plugged = two whole
    blocks and 22 of the third block's 64 subblocks of 2 MiB (5.19+); all three blocks present, 300 MiB managed
    (the rest of the third block fake-offline), and nothing left at 0."""
    g = _guest()
    g.auto_online = "online_movable"
    world, vm = _replayed_virtio_mem(g)
    assert _resize(world, vm, 1 * GiB) == 1 * GiB
    assert _resize(world, vm, 300 * MiB) == 300 * MiB
    assert sorted(g.blocks) == [32, 33, 34]
    assert sum(b.managed for b in g.blocks.values()) == 300 * MiB >> 12
    assert vm.mode.plugged_sbs(34) == list(range(22))
    assert _resize(world, vm, 0) == 0
    assert not g.blocks


def test_validate_replays_the_shipped_virtio_mem_driver(recordings, monkeypatch):
    """`balloonsim validate` checks the driver studies run, not a copy: every resize of a recorded virtio-mem
    device goes through drivers/virtio_mem's worker (its plug requests reach the replay's host)."""
    rec = next(r for r in recordings if r.data["machine"].get("virtio_mem"))
    requests: list[int] = []
    plug = VirtioMem.send_plug_request

    def counted(self, start, end, *args):
        requests.append(end - start)
        return (yield from plug(self, start, end, *args))

    monkeypatch.setattr(VirtioMem, "send_plug_request", counted)
    run = replay(rec)
    resizes = [i for i, st in enumerate(rec.steps) if st["do"] == "vmem_resize"]
    assert run.outcomes[resizes[0]] == rec.steps[resizes[0]]["size_mib"] * MiB
    assert sum(requests) << 12 == rec.steps[resizes[0]]["size_mib"] * MiB


def test_acpi_add_passes_the_flag_as_the_release_does():
    """acpi_memory_enable_device() (drivers/acpi/acpi_memhotplug.c), as drivers/dimm.py passes it in the replay:
    on 5.13-6.5 MHP_MEMMAP_ON_MEMORY only for a DIMM of exactly one memory block (4a3e5de9c4ec), so a 1 GiB
    DIMM on 6.1 with memmap_on_memory=1 is added with the ordinary memmap, not refused; on 6.8+ each block gets
    its own altmap (6b8f0798b85a). One static memory group per DIMM (2a1578397a16, 5.15+)."""
    for kernel, self_hosted in (("6.1", False), ("6.12", True)):
        world, _ = _dimm_online(kernel, "altmap")
        g = world.guest
        assert len(g.blocks) == 8
        assert all(bool(b.vmemmap_pfns) is self_hosted for b in g.blocks.values())
        assert len(g.memory_groups) == 1 and g.memory_groups[0].max_pages == 1 * GiB >> 12
    g = Guest(GuestConfig(boot=[2 * GiB], block_size=128 * MiB, kernel="6.1"), get_strategy("altmap", key=""))
    dimm = AcpiDimm(ReplayWorld(g, g.config), DimmParams(dimm_size=128 * MiB))
    assert dimm.add(0, 4 * GiB, 128 * MiB) == 0
    assert g.blocks[32].vmemmap_pfns  # one block: memmap_on_memory


def test_the_boot_state_comes_from_the_recording(recordings):
    """The kernel's own boot reservations (image, initramfs, memblock) depend on the distribution's build: the
    replay reserves what the recorded boot MemTotal says, so the model starts from the real managed pages, and
    with the watermarks that follow from them (Debian's THP madvise: khugepaged's min_free_kbytes)."""
    for rec in recordings[:6]:
        run = replay(rec)
        assert run.snapshots["boot"].meminfo["MemTotal"] == rec.snapshots["boot"].meminfo["MemTotal"], rec.path.name
        g = new_guest(rec, rec.snapshots["boot"].block_size)
        assert g.config.transparent_hugepage == "madvise" and g.alloc.min_free_kbytes == 2 * 11 * 512 * 4
