"""Each memmap strategy's placement and accounting against kernel-facts.md section 9."""

import pytest
from kmodel_helpers import (
    DIMM_PAGES,
    DIMM_PFN,
    DIMM_SIZE,
    DIMM_START,
    add_backed,
    dimm_guest,
    make_guest,
    offline_all,
    online_all,
    overhead_pages,
    populate,
)

from balloonsim.kernel import BlockState, ZoneType
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.page_alloc import Gfp
from balloonsim.memmap import get_strategy, registry
from balloonsim.units import PAGE_SHIFT, PMD_PAGES, GiB, MiB, kb

MEMMAP_PAGES = 40960  # 160 MiB: the memmap of 10 GiB
KMALLOC_MEMTOTAL_KB = 10_485_760
ALTMAP_MEMTOTAL_KB = 10_321_920


def test_registry_has_every_strategy():
    assert {"kmalloc", "altmap", "altmap-range", "subrange-hint", "node-pool"} <= set(registry())


# ------------------------------------------------------------------------------------- kmalloc ---
def test_kmalloc_dimm_accounting():
    g = dimm_guest("kmalloc")
    boot = g.meminfo()
    assert add_backed(g, 1, DIMM_START, DIMM_SIZE) == 0
    added = g.meminfo()
    assert len(g.blocks) == 80 and sorted(g.blocks) == list(range(32, 112))
    # the memmap is taken from online memory at add: 80 PMDs = 40960 pages = 163,840 kB
    assert added.memmap_kmalloc_pages == MEMMAP_PAGES
    assert kb(added.memmap_kmalloc_pages) == 163_840
    assert added.memmap_in_range_pages == added.vmemmap_pages == 0
    assert added.nr_memmap_pages == MEMMAP_PAGES
    assert added.kernel_pages == MEMMAP_PAGES + overhead_pages(g)
    assert boot.MemFree_kb - added.MemFree_kb == kb(MEMMAP_PAGES + overhead_pages(g))
    assert added.MemTotal_kb == boot.MemTotal_kb  # used, not subtracted from MemTotal
    assert added.present_pages == boot.present_pages
    # node 1 is memoryless: every memmap page is remote (off-node page_structs)
    assert g.stats.memmap_remote_pages == MEMMAP_PAGES
    assert all(z.kernel == 0 for (nid, _), z in g.alloc.zones.items() if nid == 1)
    online_all(g)
    onlined = g.meminfo()
    assert onlined.MemTotal_kb - boot.MemTotal_kb == KMALLOC_MEMTOTAL_KB
    assert onlined.present_pages - boot.present_pages == DIMM_PAGES
    assert onlined.MemFree_kb - boot.MemFree_kb == KMALLOC_MEMTOTAL_KB - kb(MEMMAP_PAGES + overhead_pages(g))
    assert g.node_has_memory(1)
    assert g.alloc.zones[(1, ZoneType.NORMAL)].present == DIMM_PAGES


def test_kmalloc_node_local_when_node_has_memory():
    g = make_guest("kmalloc", boot=[2 * GiB, 2 * GiB])
    assert add_backed(g, 1, 8 * GiB, 1 * GiB) == 0
    assert g.stats.memmap_kmalloc_pages == 4096  # 16 MiB per GiB
    assert g.stats.memmap_remote_pages == 0
    z1 = g.alloc.zones[(1, ZoneType.NORMAL)]
    assert z1.kernel >= 4096


def test_kmalloc_remote_prefers_nearest_node():
    g = make_guest("kmalloc", boot=[2 * GiB, 2 * GiB], extra_nodes=1)
    assert add_backed(g, 2, 8 * GiB, 1 * GiB) == 0
    assert g.stats.memmap_remote_pages == 4096
    # same distance to node 0 and 1: the lower node id wins, as node order builds it
    assert g.alloc.zones[(0, ZoneType.DMA32)].kernel >= 4096


def test_kmalloc_vmemmap_addresses_in_trace():
    g = dimm_guest("kmalloc", trace=True)
    assert add_backed(g, 1, DIMM_START, DIMM_SIZE) == 0
    pop = [t for t in g.trace if t.startswith("vmemmap_populate")]
    assert len(pop) == 80
    assert pop[0] == "vmemmap_populate: start/end: ffffea0004000000 - ffffea0004200000 PMD node 0"
    assert pop[-1] == "vmemmap_populate: start/end: ffffea000de00000 - ffffea000e000000 PMD node 0"


def _fragment(g):
    """Every free pageblock taken, then some base pages freed: free memory is all fragments."""
    taken = []
    marks = ("wmark_min", "wmark_low", "wmark_high")
    saved = {id(z): tuple(getattr(z, m) for m in marks) for z in g.alloc.iter_zones()}
    for z in g.alloc.iter_zones():
        for m in marks:
            setattr(z, m, 0)
    while (z := g.alloc.alloc_pmd(0, Gfp.KERNEL)) is not None:
        taken.append(z)
    for z in g.alloc.iter_zones():
        for m, v in zip(marks, saved[id(z)], strict=True):
            setattr(z, m, v)
    assert not any(z.free_pmd for z in g.alloc.zonelist(0, kernel_only=True))  # (ZONE_DMA's are out of reach)
    z = g.alloc.zones[(0, ZoneType.DMA32)]
    give = 2047 - z.free_base  # just under the model's merge threshold (4 pageblocks of fragments)
    g.alloc.free(z, give, "kernel")
    assert z.free_pmd == 0 and z.free - z.wmark_min > 2 * (PMD_PAGES + 1)
    return z


def test_kmalloc_base_page_fallback():
    g = make_guest("kmalloc", boot=[1 * GiB], trace=True, transparent_hugepage="never")
    z = _fragment(g)
    free_before = z.free
    kernel_before = g.meminfo().kernel_pages
    assert add_backed(g, 0, 4 * GiB, 256 * MiB) == 0
    for bid in (32, 33):
        m = g.blocks[bid].memmap
        assert m.base_fallback_sections == 1
        assert m.pte_pages == 1
        assert m.kmalloc_pages == PMD_PAGES + 1  # 512 base pages plus their PTE table
        assert all(not t.pmd for t in m.pieces)
    assert g.stats.base_page_fallbacks == 2
    assert g.stats.memmap_kmalloc_pages == 2 * PMD_PAGES  # nr_memmap_pages: struct pages, not PTE tables
    assert z.free == free_before - 2 * (PMD_PAGES + 1) - overhead_pages(g)
    assert g.meminfo().kernel_pages - kernel_before == 2 * (PMD_PAGES + 1) + overhead_pages(g)
    assert [t for t in g.trace if "base pages" in t] == [
        "vmemmap_populate: start/end: ffffea0004000000 - ffffea0004200000 base pages node 0",
        "vmemmap_populate: start/end: ffffea0004200000 - ffffea0004400000 base pages node 0",
    ]
    # hot-remove gives every page back
    assert g.remove_memory(4 * GiB, 256 * MiB) == 0
    assert z.free == free_before
    assert g.meminfo().kernel_pages == kernel_before


def test_kmalloc_enomem_only_when_base_pages_fail():
    g = make_guest("kmalloc", boot=[1 * GiB], transparent_hugepage="never")
    z = _fragment(g)
    # leave fewer fragments above the min watermark than one section's base-page memmap needs
    g.alloc.alloc(0, z.free - z.wmark_min - 100, Gfp.KERNEL)
    populate(g, 4 * GiB, 128 * MiB)
    assert g.add_memory(0, 4 * GiB, 128 * MiB) == -12
    assert g.stats.base_page_fallbacks == 0


def test_kmalloc_reclaims_page_cache_but_never_ooms():
    g = make_guest("kmalloc", page_cache=1536 * MiB)
    before = g.meminfo()
    assert before.Cached_kb == 1536 * 1024
    assert before.MemFree_kb < 512 * 1024
    assert add_backed(g, 0, 4 * GiB, 32 * GiB) == 0  # 512 MiB of memmap: more than is free
    after = g.meminfo()
    assert after.memmap_kmalloc_pages == 131072
    assert after.Cached_kb < before.Cached_kb
    assert g.alloc.stats.reclaimed_pages > 0
    assert after.AnonPages_kb == before.AnonPages_kb == 0


# -------------------------------------------------------------------------------------- altmap ---
def test_altmap_dimm_accounting():
    g = dimm_guest("altmap")
    boot = g.meminfo()
    assert add_backed(g, 1, DIMM_START, DIMM_SIZE) == 0
    added = g.meminfo()
    # no memmap from online memory: only page tables and metadata
    assert added.memmap_kmalloc_pages == 0
    assert boot.MemFree_kb - added.MemFree_kb == kb(overhead_pages(g))
    assert added.kernel_pages == overhead_pages(g)
    assert added.memmap_in_range_pages == added.vmemmap_pages == MEMMAP_PAGES
    assert added.nr_memmap_pages == MEMMAP_PAGES
    # 6.8+: one altmap per block, block k's memmap in its own first 2 MiB at pfn 0x100000 + k*0x8000
    for k in range(80):
        b = g.blocks[32 + k]
        assert b.memmap.kind == "altmap"
        assert b.memmap.in_range == Extents.span(DIMM_PFN + k * 0x8000, DIMM_PFN + k * 0x8000 + 512)
        assert b.vmemmap_pfns == b.memmap.in_range
        assert b.memmap.host_blocks == (b.id,)
    assert g.stats.memmap_remote_pages == 0
    online_all(g)
    onlined = g.meminfo()
    assert onlined.MemTotal_kb - boot.MemTotal_kb == ALTMAP_MEMTOTAL_KB
    assert onlined.present_pages - boot.present_pages == DIMM_PAGES  # vmemmap is present, not managed
    assert onlined.managed_pages - boot.managed_pages == DIMM_PAGES - MEMMAP_PAGES
    assert onlined.MemFree_kb - boot.MemFree_kb == ALTMAP_MEMTOTAL_KB - kb(overhead_pages(g))


@pytest.mark.parametrize(
    ("strategy", "deltas_kb"),
    [
        ("kmalloc", [131072] * 8),
        ("altmap", [129024] * 8),
        ("subrange-hint", [129024] * 8),
        # the RFC: the first block hosts the memmap of all 8 blocks (16 MiB), the others are whole
        ("altmap-range", [131072 - 8 * 2048] + [131072] * 7),
    ],
)
def test_per_128m_block_memtotal(strategy, deltas_kb):
    g = make_guest(strategy)
    populate(g, 4 * GiB, 1 * GiB)
    s = 4 * GiB >> PAGE_SHIFT
    assert g.add_memory(0, 4 * GiB, 1 * GiB, hint=Extents.span(s, s + 262144)) == 0
    got = []
    for bid in range(32, 40):
        before = g.meminfo().MemTotal_kb
        assert g.online_memory_block(bid) == 0
        got.append(g.meminfo().MemTotal_kb - before)
    assert got == deltas_kb
    assert sum(got) == 1048576 - (0 if strategy == "kmalloc" else 16384)


def test_altmap_range_first_blocks_host_everything():
    g = make_guest("altmap-range")
    assert add_backed(g, 0, 4 * GiB, 1 * GiB) == 0
    s = 4 * GiB >> PAGE_SHIFT
    assert g.blocks[32].vmemmap_pfns == Extents.span(s, s + 8 * 512)
    assert all(not g.blocks[b].vmemmap_pfns for b in range(33, 40))
    assert g.hosted_by[32] == set(range(33, 40))  # memory32's own memmap ties it to nothing
    boot = g.meminfo().managed_pages
    online_all(g)
    assert g.meminfo().managed_pages - boot == 262144 - 4096


def test_altmap_2g_blocks():
    # 4 GiB boot: ZONE_NORMAL has boot memory, where the kernel's own unmovable allocations land
    g = make_guest("altmap", boot=[4 * GiB], block_size=2 * GiB)
    boot = g.meminfo()
    assert add_backed(g, 0, 8 * GiB, 4 * GiB) == 0
    assert sorted(g.blocks) == [4, 5]
    for b in g.blocks.values():
        assert b.memmap.in_range.total == 8192  # 32 MiB = 16 PMDs
        assert b.vmemmap_pfns == Extents.span(b.start_pfn, b.start_pfn + 8192)
    online_all(g)
    # usable 2016 MiB per block
    assert g.meminfo().MemTotal_kb - boot.MemTotal_kb == 2 * 2016 * 1024
    assert g.gigantic_pages() == 2


def test_altmap_force_mode_no_waste_on_x86():
    g = make_guest("altmap", {"mode": "force"})
    assert add_backed(g, 0, 4 * GiB, 1 * GiB) == 0
    assert g.stats.altmap_waste_pages == 0
    assert g.meminfo().vmemmap_pages == 4096


@pytest.mark.parametrize("mode", ["Y", "force"])
def test_altmap_odd_struct_page_falls_back(mode):
    # sizeof(struct page) 80 (debug configs): a 2.5 MiB memmap per block is not PMD aligned, which x86's
    # arch_supports_memmap_on_memory() requires even in force mode: 6.6+ fall back silently
    g = make_guest("altmap", {"mode": mode}, struct_page_size=80)
    assert add_backed(g, 0, 4 * GiB, 128 * MiB) == 0
    assert g.stats.memmap_fallbacks == 1
    assert g.blocks[32].vmemmap_pfns.total == 0
    assert g.stats.altmap_waste_pages == 0
    # 5.13-6.5 returned -EINVAL instead (add_memory_resource(), before e3c2bfdd33a3)
    g = make_guest("altmap", {"mode": mode}, struct_page_size=80, kernel="6.1")
    populate(g, 4 * GiB, 128 * MiB)
    assert g.add_memory(0, 4 * GiB, 128 * MiB) == -22


def test_altmap_without_caller_flag_is_ordinary():
    g = make_guest("altmap")
    assert add_backed(g, 0, 4 * GiB, 1 * GiB, memmap_on_memory=False) == 0
    assert g.stats.memmap_kmalloc_pages == 4096
    assert g.meminfo().vmemmap_pages == 0


def test_nr_memmap_pages_only_on_612():
    # 15995a352474 "mm: report per-page metadata information" (6.11)
    for kernel, expected in (("4.19", None), ("6.1", None), ("6.8", None), ("6.12", 4096), ("6.18", 4096)):
        g = make_guest("kmalloc", kernel=kernel)
        assert add_backed(g, 0, 4 * GiB, 1 * GiB) == 0
        mi = g.meminfo()
        assert mi.nr_memmap_pages == expected, kernel
        assert (mi.nr_memmap_boot_pages is None) == (expected is None)
    g = make_guest("kmalloc")
    assert g.meminfo().nr_memmap_boot_pages == g.boot_memmap_pages == 8192  # 2 GiB / 64


# ------------------------------------------------------------------------------- subrange-hint ---
def test_subrange_hint_places_at_backed_start():
    g = make_guest("subrange-hint")
    s = 4 * GiB >> PAGE_SHIFT
    half = s + 16384
    g.backing.populate(half, s + 32768)
    assert g.add_memory(0, 4 * GiB, 128 * MiB, hint=Extents.span(half, s + 32768)) == 0
    b = g.blocks[32]
    assert b.memmap.in_range == Extents.span(half, half + 512)
    assert b.vmemmap_pfns == Extents.span(half, half + 512)
    assert g.stats.memmap_kmalloc_pages == 0


def test_subrange_hint_fallback_kmalloc():
    g = make_guest("subrange-hint")
    assert add_backed(g, 0, 4 * GiB, 256 * MiB) == 0  # no hint
    assert g.stats.memmap_fallbacks == 2
    assert g.stats.memmap_kmalloc_pages == 1024


# ----------------------------------------------------------------------------------- node-pool ---
def test_node_pool_slots():
    g = make_guest("node-pool")  # 32 MiB pool: 16 slots of 512 pages
    assert add_backed(g, 0, 4 * GiB, 4 * GiB) == 0  # 32 blocks: two pools
    s = 4 * GiB >> PAGE_SHIFT
    host0, host1 = g.blocks[32], g.blocks[48]
    assert host0.vmemmap_pfns == Extents.span(s, s + 16 * 512)
    assert host1.vmemmap_pfns == Extents.span(host1.start_pfn, host1.start_pfn + 16 * 512)
    assert sum(b.vmemmap_pfns.total for b in g.blocks.values()) == 2 * 16 * 512
    for k in range(16):
        assert g.blocks[32 + k].memmap.in_range == Extents.span(s + k * 512, s + (k + 1) * 512)
        assert g.blocks[32 + k].memmap.host_blocks == (32,)
    assert g.hosted_by[32] == set(range(33, 48))
    # a later add on the same node reuses a freed slot
    offline_all(g)
    assert g.remove_memory(5 * GiB, 128 * MiB) == 0  # block 40: slot 8 of pool 0
    assert add_backed(g, 0, 5 * GiB, 128 * MiB) == 0
    assert g.blocks[40].memmap.in_range == Extents.span(s + 8 * 512, s + 9 * 512)


def test_node_pool_host_cannot_go_first():
    g = make_guest("node-pool")
    assert add_backed(g, 0, 4 * GiB, 256 * MiB) == 0
    assert g.remove_memory(4 * GiB, 128 * MiB) == -16  # hosts block 33's memmap
    assert not g.removable(g.blocks[32])
    assert g.remove_memory(4 * GiB + 128 * MiB, 128 * MiB) == 0
    assert g.remove_memory(4 * GiB, 128 * MiB) == 0


# --------------------------------------------------------------------------------- accounting ---
@pytest.mark.parametrize("strategy", ["altmap", "altmap-range"])
def test_accounting_allocated(strategy):
    gk = dimm_guest(strategy, accounting="kernel")
    ga = dimm_guest(strategy, accounting="allocated")
    boot_total = gk.meminfo().MemTotal_kb
    for g in (gk, ga):
        assert add_backed(g, 1, DIMM_START, DIMM_SIZE) == 0
        online_all(g, "online_movable")  # a kernel zone would keep its first block (the kernel's own pages)
    mk, ma = gk.meminfo(), ga.meminfo()
    assert mk.MemTotal_kb - boot_total == ALTMAP_MEMTOTAL_KB
    # allocated: the self-hosted vmemmap counts in MemTotal and shows as allocated (kernel), not free
    assert ma.MemTotal_kb - boot_total == KMALLOC_MEMTOTAL_KB
    assert ma.MemFree_kb == mk.MemFree_kb
    assert ma.kernel_pages - mk.kernel_pages == MEMMAP_PAGES
    assert ma.present_pages == mk.present_pages
    offline_all(ga)
    assert ga.meminfo().MemTotal_kb == boot_total
    assert ga.meminfo().kernel_pages == overhead_pages(ga)


def test_accounting_allocated_does_not_change_kmalloc():
    g = dimm_guest("kmalloc", accounting="allocated")
    boot_total = g.meminfo().MemTotal_kb
    assert add_backed(g, 1, DIMM_START, DIMM_SIZE) == 0
    online_all(g)
    assert g.meminfo().MemTotal_kb - boot_total == KMALLOC_MEMTOTAL_KB


@pytest.mark.parametrize(
    "strategy", ["kmalloc", "altmap", "altmap-range", "subrange-hint", "node-pool", "altmap,kmalloc"]
)
@pytest.mark.parametrize("accounting", ["kernel", "allocated"])
def test_add_online_offline_remove_returns_to_boot(strategy, accounting):
    # 4 GiB boot: the kernel's own unmovable allocations land in boot memory's ZONE_NORMAL, not in the range
    g = make_guest(strategy, boot=[4 * GiB], accounting=accounting, direct_gbpages=False, max_addr=64 * GiB)
    boot = g.meminfo()
    s = 8 * GiB
    populate(g, s, 3 * GiB)
    assert g.add_memory(0, s, 3 * GiB, hint=Extents.span(s >> PAGE_SHIFT, (s + 3 * GiB) >> PAGE_SHIFT)) == 0
    assert g.stats.pagetable_pages > 0
    online_all(g)
    offline_all(g)
    assert g.remove_memory(s, 3 * GiB) == 0
    end = g.meminfo()
    assert (end.MemFree_kb, end.MemTotal_kb, end.kernel_pages, end.present_pages) == (
        boot.MemFree_kb,
        boot.MemTotal_kb,
        boot.kernel_pages,
        boot.present_pages,
    )
    assert end.memmap_kmalloc_pages == end.memmap_in_range_pages == end.vmemmap_pages == 0
    assert g.stats.pagetable_pages == 0 and g.slab_bytes == 0
    assert not g.blocks and not g.hosted_by and not g.groups
    assert all(b.state is BlockState.OFFLINE for b in g.blocks.values())


def test_get_strategy_chain_and_params():
    chain = get_strategy("altmap,kmalloc", {"mode": "force"})
    assert chain.name == "altmap,kmalloc"
    with pytest.raises(Exception, match="did you mean 'altmap'"):
        get_strategy("altmapp")
    with pytest.raises(Exception, match="fallback"):
        get_strategy("subrange-hint", {"fallbak": "fail"})


def test_new_section_root_stays_after_remove():
    """A mem_section root (SPARSEMEM_EXTREME, 256 sections = 32 GiB) is never freed: 4 KiB of slab stays."""
    g = make_guest("kmalloc", max_addr=128 * GiB)
    boot = g.meminfo()
    assert add_backed(g, 0, 64 * GiB, 1 * GiB) == 0
    assert 2 in g.pagetables.section_roots
    offline_all(g)
    assert g.remove_memory(64 * GiB, 1 * GiB) == 0
    assert g.slab_bytes == 4096
    assert g.meminfo().kernel_pages == boot.kernel_pages + 1
    assert g.meminfo().MemFree_kb == boot.MemFree_kb - 4
    # a second add in the same 32 GiB does not allocate the root again
    assert add_backed(g, 0, 64 * GiB, 1 * GiB) == 0
    assert g.stats.metadata_bytes == 4096 + 8 * 1024 + 8 * 64 + 256  # the old root + this add


def test_node_pool_free_slot_stays_in_the_pool():
    """A removed block's slot goes back to the pool, which keeps it reserved (vmem_altmap_free() only
    gives the pages back to the altmap): the host never hands it to the buddy allocator, and the next
    block on the node takes it."""
    g = make_guest("node-pool")
    assert add_backed(g, 0, 4 * GiB, 384 * MiB) == 0  # block 32 hosts the pool; 33 and 34 take slots 1, 2
    s = 4 * GiB >> PAGE_SHIFT
    pool = Extents.span(s, s + 16 * 512)
    assert g.blocks[32].vmemmap_pfns == pool
    assert g.remove_memory(4 * GiB + 128 * MiB, 128 * MiB) == 0
    assert g.blocks[32].vmemmap_pfns == pool and g.hosted_by[32] == {34}
    assert g.online_memory_block(32) == 0
    assert g.blocks[32].managed == 32768 - 16 * 512
    assert add_backed(g, 0, 4 * GiB + 128 * MiB, 128 * MiB) == 0
    assert g.blocks[33].memmap.in_range == Extents.span(s + 512, s + 1024)
    assert g.blocks[32].vmemmap_pfns == pool and g.hosted_by[32] == {33, 34}


# ------------------------------------------------------------------------------- MemAvailable ---
def test_mem_available_subtracts_totalreserve():
    """si_mem_available(): free - totalreserve_pages (calculate_totalreserve_pages(): per zone the high watermark
    plus its largest lowmem_reserve, at most its managed pages; sysctl_lowmem_reserve_ratio DMA 256, DMA32 256,
    Normal 32), plus page cache minus min(pagecache / 2, the low watermarks)."""
    g = make_guest(boot=[4 * GiB], page_cache=256 * MiB)  # DMA 16 MiB, DMA32 3 GiB, Normal 1 GiB
    dma, dma32, normal = (g.alloc.zones[(0, zt)] for zt in (ZoneType.DMA, ZoneType.DMA32, ZoneType.NORMAL))
    reserve = (
        min(dma.managed, dma.wmark_high + (dma32.managed + normal.managed) // 256)
        + min(dma32.managed, dma32.wmark_high + normal.managed // 256)
        + normal.wmark_high
    )
    # a 4 GiB guest's ZONE_DMA is all reserve: (3 GiB + 1 GiB) / 256 is more than its 15 MiB
    assert dma.managed < dma.wmark_high + (dma32.managed + normal.managed) // 256
    assert g.alloc.totalreserve == reserve
    mi = g.meminfo()
    free, cache = mi.free_pages, mi.Cached_kb // 4
    wlow = dma.wmark_low + dma32.wmark_low + normal.wmark_low
    assert mi.MemAvailable_kb // 4 == free - reserve + cache - min(cache // 2, wlow)
    # hot-added memory online in Normal raises DMA32's reserve against Normal allocations
    assert add_backed(g, 0, 8 * GiB, 1 * GiB) == 0
    online_all(g, "online_kernel")
    assert g.alloc.totalreserve > reserve


def test_vmemmap_block_compacts_before_falling_back_to_base_pages():
    """vmemmap_alloc_block(PMD_SIZE): order 9 with __GFP_RETRY_MAYFAIL is a costly order, so
    __alloc_pages_slowpath() runs direct compaction before reclaim, and vmemmap_populate_hugepages() falls back
    to base pages only when even that fails. Free fragments among page cache (movable) are compacted into a
    pageblock; fragments among unmovable pages are not (test_kmalloc_base_page_fallback)."""
    g = make_guest("kmalloc", boot=[1 * GiB])
    z = g.alloc.zones[(0, ZoneType.DMA32)]
    for zone in g.alloc.iter_zones():
        zone.wmark_min = zone.wmark_low = zone.wmark_high = 0
    assert g.alloc.alloc(0, z.free, Gfp.USER, charge="pagecache") > 0
    g.alloc.reclaim([z], 1800)  # page-cache reclaim leaves scattered free pages
    assert z.free_pmd == 0 and 1024 + 512 <= z.free_base < 2048
    stall = g.alloc.stats.compact_stall
    assert add_backed(g, 0, 4 * GiB, 128 * MiB) == 0
    m = g.blocks[32].memmap
    assert m.base_fallback_sections == 0 and g.stats.base_page_fallbacks == 0
    assert [t.pmd for t in m.pieces] == [True]
    assert g.alloc.stats.compact_stall == stall + 1 and g.alloc.stats.compact_success == 1
