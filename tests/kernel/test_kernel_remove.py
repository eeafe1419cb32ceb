"""Offline and hot-remove (kernel-facts.md section 3, "Hot-remove"; section 9, RFC18)."""

import pytest
from kmodel_helpers import add_backed, fill_user, make_guest, offline_all, online_all

from balloonsim.kernel import EBUSY, EINVAL, BlockState, ZoneType
from balloonsim.kernel.errno import EINTR
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.page_alloc import Gfp, Transaction
from balloonsim.units import PAGE_SHIFT, GiB, MiB


def test_remove_online_block_ebusy():
    g = make_guest("kmalloc")
    assert add_backed(g, 0, 4 * GiB, 256 * MiB) == 0
    assert g.online_memory_block(33, "online_movable") == 0
    assert g.remove_memory(4 * GiB, 256 * MiB) == -EBUSY
    assert g.remove_memory(4 * GiB + 128 * MiB, 128 * MiB) == -EBUSY
    assert sorted(g.blocks) == [32, 33]
    assert g.remove_memory(4 * GiB, 128 * MiB) == 0  # the offline one can go alone
    assert g.offline_memory_block(33) == 0
    assert g.remove_memory(4 * GiB + 128 * MiB, 128 * MiB) == 0
    assert not g.blocks


@pytest.mark.parametrize(
    ("start", "size"), [(4 * GiB + 64 * MiB, 128 * MiB), (4 * GiB, 0), (4 * GiB, 384 * MiB), (8 * GiB, 128 * MiB)]
)
def test_remove_einval(start, size):
    g = make_guest("kmalloc")
    assert add_backed(g, 0, 4 * GiB, 256 * MiB) == 0
    assert g.remove_memory(start, size) == -EINVAL
    assert sorted(g.blocks) == [32, 33]


def test_online_offline_einval():
    g = make_guest("kmalloc")
    assert g.online_memory_block(32) == -EINVAL  # not added: nothing is online before it is added
    assert add_backed(g, 0, 4 * GiB, 128 * MiB) == 0
    assert g.offline_memory_block(32) == -EINVAL  # not online
    assert g.online_memory_block(32, "online_sideways") == -EINVAL
    assert g.online_memory_block(32) == 0
    assert g.online_memory_block(32) == -EINVAL  # already online


def test_offline_ebusy_when_hosting_kmalloc_memmap():
    # 4.19: onlined pages at the head of the free lists, so a 2 MiB vmemmap block steals a pageblock of the
    # newest onlined block; 4 GiB boot: the kernel's small allocations stay in boot memory's ZONE_NORMAL
    g = make_guest("kmalloc", kernel="4.19", boot=[4 * GiB])
    assert add_backed(g, 0, 8 * GiB, 128 * MiB) == 0
    assert g.online_memory_block(64, "online_kernel") == 0
    assert g.blocks[64].unmovable == 0
    normal = g.alloc.zones[(0, ZoneType.NORMAL)]
    kernel_before = normal.kernel
    assert add_backed(g, 0, 9 * GiB, 128 * MiB) == 0  # block 72: its memmap lands in block 64
    b72 = g.blocks[72]
    assert b72.memmap.landed_in == {64}
    assert normal.kernel - kernel_before >= 512  # from block 64's zone
    assert g.blocks[64].unmovable == 512
    assert not g.removable(g.blocks[64])
    assert g.offline_memory_block(64) == -EBUSY
    assert g.stats.offline_ebusy == 1
    assert g.blocks[64].state is BlockState.ONLINE
    assert g.remove_memory(9 * GiB, 128 * MiB) == 0  # frees block 72's memmap, from block 64
    assert g.blocks[64].unmovable == 0
    assert g.offline_memory_block(64) == 0


def test_offline_ebusy_with_fake_offline_holes():
    g = make_guest("kmalloc")
    s = 4 * GiB >> PAGE_SHIFT

    def withhold_half(guest, block, span):
        return span.clip(block.start_pfn, block.start_pfn + block.nr_pages // 2)

    assert g.set_online_page_callback(withhold_half) == 0
    assert add_backed(g, 0, 4 * GiB, 128 * MiB) == 0
    assert g.online_memory_block(32, "online_movable") == 0
    b = g.blocks[32]
    assert b.exposed == Extents.span(s, s + 16384) and b.withheld == 16384
    assert g.offline_memory_block(32) == -EBUSY
    assert not g.removable(b)
    b.withheld_offlinable = True  # virtio-mem lets fake-offline pages go on offline
    assert g.offline_memory_block(32) == 0
    assert g.remove_memory(4 * GiB, 128 * MiB) == 0


@pytest.mark.parametrize("strategy", ["kmalloc", "altmap", "altmap-range", "node-pool", "subrange-hint"])
def test_remove_frees_memmap_exactly(strategy):
    g = make_guest(strategy, boot=[4 * GiB])
    boot = g.meminfo()
    assert add_backed(g, 0, 8 * GiB, 2 * GiB) == 0
    online_all(g)
    offline_all(g)
    assert g.remove_memory(8 * GiB, 2 * GiB) == 0
    after = g.meminfo()
    assert after.MemFree_kb == boot.MemFree_kb
    assert after.MemTotal_kb == boot.MemTotal_kb
    assert after.kernel_pages == boot.kernel_pages
    assert after.nr_memmap_pages == 0


def test_offline_migrates_anon_and_cache():
    """do_migrate_range() (6.12.118, 7.3.4) migrates page cache like anon (balloonsim.kernel.migrate): with room
    in boot memory, nothing is dropped."""
    g = make_guest("kmalloc", page_cache=256 * MiB)
    assert add_backed(g, 0, 4 * GiB, 256 * MiB) == 0
    online_all(g, "online_movable")
    movable = g.alloc.zones[(0, ZoneType.MOVABLE)]
    assert g.alloc.alloc(0, 40000, Gfp.USER) == 40000  # Movable first
    assert movable.anon == 40000
    assert g.alloc.alloc(0, 10000, Gfp.USER, charge="pagecache") == 10000
    total_anon = sum(z.anon for z in g.alloc.iter_zones())
    total_cache = sum(z.pagecache for z in g.alloc.iter_zones())
    assert g.offline_memory_block(33) == 0
    assert g.offline_memory_block(32) == 0  # the anon pages and the cache move to boot memory
    assert movable.managed == movable.present == 0
    assert movable.free == movable.anon == movable.pagecache == 0
    assert sum(z.anon for z in g.alloc.iter_zones()) == total_anon
    assert sum(z.pagecache for z in g.alloc.iter_zones()) == total_cache
    for z in g.alloc.iter_zones():
        assert z.managed == z.free + z.pagecache + z.anon + z.kernel
        assert min(z.free_pmd, z.free_base, z.pagecache, z.anon, z.kernel) >= 0


def test_offline_retries_until_a_signal_when_anon_cannot_move():
    """offline_pages() (mm/memory_hotplug.c, 4.15+, 72b39cfc4d75): -EBUSY comes only from unmovable pages; a
    migration that finds no room is retried until a signal ends it (-EINTR, "signal backoff")."""
    g = make_guest("kmalloc")
    assert add_backed(g, 0, 4 * GiB, 2 * GiB) == 0
    online_all(g, "online_movable")
    movable = g.alloc.zones[(0, ZoneType.MOVABLE)]
    fill_user(g, 0)  # hot-added and boot memory full of anon
    assert movable.anon > 32768
    before = [(z.managed, z.free_pmd, z.free_base, z.anon) for z in g.alloc.iter_zones()]
    assert g.offline_memory_block(32) == -EINTR  # its anon pages have nowhere to go: not -EBUSY
    assert [(z.managed, z.free_pmd, z.free_base, z.anon) for z in g.alloc.iter_zones()] == before
    assert g.stats.offline_eintr == 1 and g.stats.offline_ebusy == 0
    assert g.removable(g.blocks[32])  # nothing unmovable: it would go once memory is freed
    g.alloc.free(movable, 40000, "anon")  # the workload frees memory: the retry succeeds
    assert g.offline_memory_block(32) == 0


# --------------------------------------------------------------------------- RFC altmap-range ---
def test_altmap_range_partial_remove_einval():
    g = make_guest("altmap-range")
    assert add_backed(g, 0, 4 * GiB, 1 * GiB) == 0
    # "you can't remove half of a DIMM": the upper half is -EINVAL; the lower half also hosts the upper
    # half's memmap, which the model reports first as -EBUSY
    assert g.remove_memory(4 * GiB + 512 * MiB, 512 * MiB) == -EINVAL
    assert g.remove_memory(4 * GiB + 896 * MiB, 128 * MiB) == -EINVAL
    assert g.remove_memory(4 * GiB, 512 * MiB) in (-EINVAL, -EBUSY)
    assert len(g.blocks) == 8
    assert g.remove_memory(4 * GiB, 1 * GiB) == 0


def test_altmap_range_host_offline_ebusy():
    g = make_guest("altmap-range")
    assert add_backed(g, 0, 4 * GiB, 1 * GiB) == 0
    online_all(g, "online_movable")
    assert g.offline_memory_block(32) == -EBUSY  # hosts the memmap of the 7 other online blocks
    for bid in range(39, 32, -1):
        assert g.offline_memory_block(bid) == 0
    assert g.offline_memory_block(32) == 0


def test_altmap_range_trace_backwards():
    g = make_guest("altmap-range", trace=True)
    assert add_backed(g, 0, 4 * GiB, 1 * GiB) == 0
    assert g.trace == ["This has added: ffffea0004000000 - ffffea000403ffc0 (refcount: 8)"]
    assert g.remove_memory(4 * GiB, 1 * GiB) == 0
    frees = g.trace[1:]
    starts = [int(line.split()[2], 16) for line in frees]
    assert len(frees) == 8
    assert starts == sorted(starts, reverse=True)
    assert frees[0] == "vmemmap_free: start/end: ffffea0004e00000 - ffffea0005000000"
    assert frees[-1] == "vmemmap_free: start/end: ffffea0004000000 - ffffea0004200000"


def test_altmap_trace_forwards():
    """Merged memmap_on_memory: remove_memory_blocks_and_altmaps() walks the blocks ascending."""
    g = make_guest("altmap", trace=True)
    assert add_backed(g, 0, 4 * GiB, 512 * MiB) == 0
    n = len(g.trace)
    assert g.remove_memory(4 * GiB, 512 * MiB) == 0
    starts = [int(line.split()[2], 16) for line in g.trace[n:]]
    assert len(starts) == 4 and starts == sorted(starts)


# ---------------------------------------------------- where unmovable kernel allocations land ---
def test_kernel_pages_go_back_to_the_zone_they_came_from():
    """Page tables and slab freed at hot-remove go back where they were allocated, not to the first local zone
    holding kernel pages (that took NORMAL's self-hosted vmemmap pages and left Zone.kernel at -1)."""
    g = make_guest("altmap-range", accounting="allocated", direct_gbpages=False)
    assert add_backed(g, 0, 4 * GiB, 128 * MiB) == 0  # its direct-map table comes from DMA32 (no NORMAL yet)
    assert add_backed(g, 0, 5 * GiB, 128 * MiB) == 0
    assert g.online_memory_block(40, "online_movable") == 0
    assert g.remove_memory(4 * GiB, 128 * MiB) == 0
    assert g.offline_memory_block(40) == 0
    for z in g.alloc.iter_zones():
        assert z.kernel >= 0 and z.managed == z.free + z.pagecache + z.anon + z.kernel, z
    g = make_guest("altmap-range", accounting="allocated", direct_gbpages=False)
    assert add_backed(g, 0, 4 * GiB, 128 * MiB) == 0
    assert add_backed(g, 0, 5 * GiB, 128 * MiB) == 0
    assert g.online_memory_block(40) == 0  # ZONE_NORMAL: the kernel's own allocations pin it
    assert g.remove_memory(4 * GiB, 128 * MiB) == 0
    assert g.offline_memory_block(40) == -EBUSY
    assert all(z.kernel >= 0 for z in g.alloc.iter_zones())


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_online_kernel_dimm_first_block_stays(kernel):
    """Recorded on Debian 6.1 and 6.12 under QEMU (validation/recorded/dimm-1G-kernel--6.*.json): 2 GiB boot (no
    ZONE_NORMAL), a 1 GiB DIMM at 4 GiB onlined online_kernel, seconds of shell activity: offlining memory32
    fails with EBUSY, memory33..39 go, and MemTotal stays one block above boot. The first block onlined
    creates ZONE_NORMAL, where every unmovable allocation starts (build_zonerefs_node()); the kernel's own
    allocations land in its pages."""
    g = make_guest("kmalloc", kernel=kernel)
    boot = g.meminfo().MemTotal_kb
    assert add_backed(g, 0, 4 * GiB, 1 * GiB) == 0
    online_all(g, "online_kernel")
    results = {bid: g.offline_memory_block(bid) for bid in range(32, 40)}
    assert results == {32: -EBUSY, **{bid: 0 for bid in range(33, 40)}}
    assert g.meminfo().MemTotal_kb - boot == 131072
    assert g.remove_memory(4 * GiB, 1 * GiB) == -EBUSY


@pytest.mark.parametrize("online_type", ["online_movable", "online_kernel"])
def test_online_kernel_with_boot_zone_normal_and_online_movable_remove(online_type):
    """online_movable: ZONE_MOVABLE never takes unmovable allocations, removal always works (recorded,
    dimm-*-movable--6.*.json). A guest whose boot memory reaches above 4 GiB has a ZONE_NORMAL with free
    boot pages, which the kernel uses before freshly onlined ones (FPI_TO_TAIL, 5.10): removable too."""
    g = make_guest("kmalloc", boot=[2 * GiB] if online_type == "online_movable" else [4 * GiB])
    at = 4 * GiB if online_type == "online_movable" else 8 * GiB
    assert add_backed(g, 0, at, 1 * GiB) == 0
    online_all(g, online_type)
    offline_all(g)
    assert g.remove_memory(at, 1 * GiB) == 0


def test_offline_shrinks_the_zone_span():
    """shrink_zone_span() (mm/memory_hotplug.c, offline_pages() -> remove_pfn_range_from_zone(), since 5.5
    d33695b16a9f): offlining the zone's first or last range moves its start or end to the nearest pfn still
    online in it; offlining one in the middle changes nothing; offlining the last one empties the span. A real
    Debian 6.1/6.12/6.18 guest shows ZONE_MOVABLE's spanned pages back at 0 after offlining a whole DIMM
    (validation/recorded/dimm-1G-movable--6.*.json)."""
    g = make_guest("kmalloc")
    assert add_backed(g, 0, 4 * GiB, 512 * MiB) == 0  # blocks 32-35
    online_all(g, "online_movable")
    z = g.alloc.zones[(0, ZoneType.MOVABLE)]
    pfn = lambda bid: bid * (128 * MiB >> PAGE_SHIFT)  # noqa: E731
    assert (z.span_start, z.span_end) == (pfn(32), pfn(36))
    assert g.offline_memory_block(33) == 0  # the middle: the span stays
    assert (z.span_start, z.span_end) == (pfn(32), pfn(36))
    assert g.offline_memory_block(32) == 0  # the first: the next online pfn is block 34's
    assert (z.span_start, z.span_end) == (pfn(34), pfn(36))
    assert g.offline_memory_block(35) == 0  # the last: ends after block 34
    assert (z.span_start, z.span_end) == (pfn(34), pfn(35))
    assert g.offline_memory_block(34) == 0
    assert z.span_start is None and z.span_end is None and not z.intersects(pfn(32), pfn(36))


def test_onlining_after_the_span_shrank_uses_the_default_zone():
    """default_zone_for_pfn() asks zone_intersects() of the current span: once ZONE_MOVABLE has shrunk away from
    a block, onlining it with "online" no longer inherits ZONE_MOVABLE."""
    g = make_guest("kmalloc")
    assert add_backed(g, 0, 4 * GiB, 256 * MiB) == 0
    online_all(g, "online_movable")
    assert g.offline_memory_block(32) == 0
    assert g.online_memory_block(32, "online") == 0
    assert g.blocks[32].zone.type is ZoneType.NORMAL


def test_before_5_5_the_zone_span_shrinks_at_removal():
    """4.19: shrink_zone_span() runs from __remove_pages() -> __remove_zone(), for the zone the offline block's
    struct pages still link to; offlining alone leaves the span (d33695b16a9f moved it to offline_pages() in
    5.5)."""
    g = make_guest("kmalloc", kernel="4.19")
    assert add_backed(g, 0, 4 * GiB, 256 * MiB) == 0
    online_all(g, "online_movable")
    z = g.alloc.zones[(0, ZoneType.MOVABLE)]
    offline_all(g)
    assert z.span_end - z.span_start == 256 * MiB >> PAGE_SHIFT
    assert g.remove_memory(4 * GiB, 256 * MiB) == 0
    assert z.span_start is None


@pytest.mark.parametrize(("kernel", "leaked"), [("6.12", 0), ("6.18", 8 * 511)])
def test_618_hot_remove_leaks_511_pages_of_each_2m_memmap_block(kernel, leaked):
    """x86 remove_pmd_table() frees a PMD-mapped vmemmap block through free_pagetable(), which 6.18 made
    pagetable_free() ("x86/mm: use pagetable_free()", bf9e4e30f353): __free_pages(page, compound_order(page))
    of a non-compound order-9 block frees its first page and leaks 511 ("x86/mm: fix freeing of PMD-sized
    vmemmap pages", 2026). A real Debian 6.18.15 guest's free memory stays 16.6 MiB lower after a 1 GiB DIMM
    came and went while nr_memmap_pages drops back (validation/recorded/dimm-1G-movable--6.18.json); 6.12 gives
    it all back. The altmap's memmap is not freed this way."""
    g = make_guest("kmalloc", kernel=kernel)
    free0 = g.meminfo().free_pages
    assert add_backed(g, 0, 4 * GiB, 1 * GiB) == 0
    online_all(g, "online_movable")
    offline_all(g)
    assert g.remove_memory(4 * GiB, 1 * GiB) == 0
    mi = g.meminfo()
    assert mi.memmap_kmalloc_pages == 0 and g.stats.memmap_leaked_pages == leaked
    assert free0 - mi.free_pages == leaked
    assert mi.kernel_pages == leaked + g.stats.pagetable_pages + sum(g.slab_pages.values())
    ga = make_guest("altmap", kernel=kernel)
    assert add_backed(ga, 0, 4 * GiB, 1 * GiB) == 0
    assert ga.remove_memory(4 * GiB, 1 * GiB) == 0 and ga.stats.memmap_leaked_pages == 0


def test_balloon_base_pages_pin_every_block_they_span():
    """A balloon's order-0 pages (hv_balloon's 4 KiB units, Xen's decrease_reservation()) are PageOffline with a
    reference: offline_pages() -> scan_movable_pages() fails -EBUSY ("unmovable page", mm/memory_hotplug.c,
    6.12.118 and 7.3.4 as read) on every block holding one. Taken one after another from the free lists (5.10+:
    onlined memory at the tail, oldest block first), an allocation that runs past the end of one block's free
    pages pins the next block too, with exactly the pages it took there; freeing them unpins both."""
    g = make_guest("kmalloc", kernel="6.12")  # 2 GiB boot: the DIMM is the only ZONE_NORMAL
    assert add_backed(g, 0, 4 * GiB, 512 * MiB) == 0
    online_all(g, "online_kernel")
    a = g.alloc
    normal = a.zones[(0, ZoneType.NORMAL)]
    first = g.placement.landing(normal, 1)
    assert first is not None
    used = normal.hot_managed - normal.free
    through = 0  # running sum of managed pages in onlining order, up to the block the next page comes from
    for b in normal.hot:
        through += normal.hot.pages(b)
        if b is first:
            break
    left = through - used  # that block's free pages
    pinned = {b.id: b.unmovable for b in g.blocks.values()}
    txn = Transaction()
    assert a.alloc(0, left + 100, Gfp.BALLOON, txn, partial=True) == left + 100
    pieces = [(t.block.id if t.block else None, t.pages) for t in txn.takes]
    second = g.blocks[first.id + 1]
    assert pieces == [(first.id, left), (second.id, 100)]
    for bid, n in pieces:
        assert g.blocks[bid].unmovable == pinned[bid] + n
        assert not g.removable(g.blocks[bid])
    assert g.offline_memory_block(second.id) == -EBUSY
    for t in txn.takes:
        a.release(t)
    assert {b.id: b.unmovable for b in g.blocks.values()} == pinned
    assert g.removable(second) and g.offline_memory_block(second.id) == 0


@pytest.mark.parametrize("la57", [False, True])
def test_removal_keeps_the_pud_tables_with_4_level_paging(la57):
    """remove_pagetable() -> remove_p4d_table() frees an emptied PUD table only `if (pgtable_l5_enabled())`
    (arch/x86/mm/init_64.c, 6.12.118 l.1240-1246), for the direct map and the vmemmap
    alike: with 4-level paging, a hot-add into a new 512 GiB region leaves its direct-map PUD table behind after
    removal, and the next hot-add there finds it. With 5-level paging both go."""
    g = make_guest("kmalloc", max_addr=2048 * GiB, la57=la57)
    before = g.stats.pagetable_pages
    start = 1024 * GiB  # a 512 GiB region of the direct map no boot memory shares
    assert add_backed(g, 0, start, 128 * MiB) == 0
    first_add = g.stats.pagetable_pages - before
    online_all(g, "online_movable")
    assert g.offline_memory_block(start >> PAGE_SHIFT >> 15) == 0
    assert g.remove_memory(start, 128 * MiB) == 0
    kept = g.stats.pagetable_pages - before
    assert kept == (0 if la57 else 1)
    assert len(g.table_pages) == g.stats.pagetable_pages
    assert add_backed(g, 0, start, 128 * MiB) == 0
    assert g.stats.pagetable_pages - before == first_add  # the kept table is the new add's again
    online_all(g, "online_movable")
    assert g.offline_memory_block(start >> PAGE_SHIFT >> 15) == 0
    assert g.remove_memory(start, 128 * MiB) == 0
    assert g.stats.pagetable_pages - before == kept
    assert len(g.table_pages) == g.stats.pagetable_pages
