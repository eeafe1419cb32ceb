"""add_memory()'s outcomes (kernel-facts.md section 2) and the rollback on failure."""

import pytest
from kmodel_helpers import add_backed, diff, fill_user, make_guest, populate, state

from balloonsim.kernel import E2BIG, EEXIST, EINVAL, ENOMEM
from balloonsim.kernel.errno import KernelOops
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.overhead import RESOURCE_BYTES, SECTION_ROOT_BYTES, SECTION_USAGE_BYTES
from balloonsim.kernel.page_alloc import Gfp, atomic_floor
from balloonsim.units import PAGE_SHIFT, PAGE_SIZE, GiB, MiB


@pytest.mark.parametrize(
    ("start", "size", "block"),
    [
        (4 * GiB + 64 * MiB, 128 * MiB, 128 * MiB),  # start not block aligned
        (4 * GiB, 192 * MiB, 128 * MiB),  # size not block aligned
        (4 * GiB, 4096, 128 * MiB),
        (4 * GiB + 128 * MiB, 1 * GiB, 1 * GiB),  # section aligned but not 1 GiB-block aligned
        (4 * GiB, 3 * GiB, 2 * GiB),
    ],
)
def test_einval_unaligned(start, size, block):
    g = make_guest(block_size=block)
    before = state(g)
    assert g.add_memory(0, start, size) == -EINVAL
    assert diff(state(g), before) == {}
    assert g.stats.add_errors == {-EINVAL: 1}


def test_e2big_empty_range():
    """mhp_range_allowed() wants start < end: register_memory_resource() says -E2BIG first."""
    g = make_guest()
    assert g.add_memory(0, 4 * GiB, 0) == -E2BIG


def test_einval_node_not_possible():
    g = make_guest()
    assert g.add_memory(3, 4 * GiB, 128 * MiB) == -EINVAL


def test_einval_512_altmap_multi_block():
    # 5.13-6.5: memmap_on_memory only when the add_memory() range is exactly one memory block (a08a2ae34613);
    # a caller that passes the flag anyway gets -EINVAL from add_memory_resource()
    g = make_guest("altmap", kernel="6.1")
    populate(g, 4 * GiB, 256 * MiB)
    before = state(g)
    assert g.add_memory(0, 4 * GiB, 256 * MiB) == -EINVAL
    assert diff(state(g), before) == {}
    # without the caller's MHP_MEMMAP_ON_MEMORY there is nothing to check: the ordinary memmap
    assert g.add_memory(0, 4 * GiB, 256 * MiB, memmap_on_memory=False) == 0
    assert g.stats.memmap_kmalloc_pages == 1024


def test_eexist_overlap_with_boot_memory():
    g = make_guest(boot=[4 * GiB])  # 0-3 GiB, then 4-5 GiB above the PCI hole
    before = state(g)
    for start in (0, 2 * GiB, 4 * GiB, 4 * GiB + 896 * MiB):
        assert g.add_memory(0, start, 128 * MiB) == -EEXIST
    assert g.add_memory(0, 2 * GiB + 896 * MiB, 256 * MiB) == -EEXIST  # straddles the end of low memory
    assert diff(state(g), before) == {}
    assert add_backed(g, 0, 3 * GiB, 1 * GiB) == 0  # the PCI hole itself is free
    assert add_backed(g, 0, 5 * GiB, 128 * MiB) == 0


def test_eexist_overlap_with_added_range():
    g = make_guest()
    assert add_backed(g, 0, 4 * GiB, 1 * GiB) == 0
    before = state(g)
    assert g.add_memory(0, 4 * GiB + 512 * MiB, 128 * MiB) == -EEXIST  # inside
    assert g.add_memory(0, 5 * GiB - 128 * MiB, 256 * MiB) == -EEXIST  # overlaps the last block
    assert g.add_memory(0, 3 * GiB + 896 * MiB, 256 * MiB) == -EEXIST  # overlaps the first block
    assert g.add_memory(0, 4 * GiB, 1 * GiB) == -EEXIST  # the same range again
    assert diff(state(g), before) == {}
    assert add_backed(g, 0, 5 * GiB, 128 * MiB) == 0  # adjacent is fine


def test_e2big_beyond_max_addr():
    g = make_guest(max_addr=16 * GiB)
    before = state(g)
    assert g.add_memory(0, 16 * GiB, 128 * MiB) == -E2BIG
    assert g.add_memory(0, 15 * GiB, 2 * GiB) == -E2BIG  # crosses the end of the window
    assert g.add_memory(0, 64 * GiB, 1 * GiB) == -E2BIG
    assert diff(state(g), before) == {}
    assert add_backed(g, 0, 16 * GiB - 128 * MiB, 128 * MiB) == 0  # ends exactly at max_addr


def test_enomem_kmalloc_when_guest_is_full():
    g = make_guest("kmalloc")
    # a first add leaves a partly used slab page, so the second add fails in the memmap, not the metadata
    assert add_backed(g, 0, 4 * GiB, 128 * MiB) == 0
    populate(g, 5 * GiB, 1 * GiB)
    fill_user(g, 0)
    before = state(g)
    failures = g.alloc.stats.failures
    assert g.add_memory(0, 5 * GiB, 1 * GiB) == -ENOMEM
    assert g.alloc.stats.failures > failures
    assert diff(state(g), before) == {}
    assert 40 not in g.blocks
    assert g.stats.add_errors == {-ENOMEM: 1}
    # the backing is remembered for a later add
    assert g.backing.pending(40) == Extents.span(40 * 32768, 41 * 32768)


def test_enomem_keeps_page_tables_and_slab_of_the_sections_added():
    """add_memory_resource() (mm/memory_hotplug.c, 6.12.118 and 7.3.4): after a failed arch_add_memory() its
    `goto error` calls no arch_remove_memory(). x86 arch_add_memory() (arch/x86/mm/init_64.c) mapped the whole
    range with init_memory_mapping() first, and __add_pages() stopped at the first section whose
    sparse_add_section() failed, which section_activate() cleaned up itself. So of this 8-section add whose
    second section's memmap fails, the first section keeps its 2 MiB memmap, its usage map and the mem_section
    root sparse_index_init() made; the direct map stays for all 8 sections, the vmemmap tables for the first."""
    # 2 MiB direct map: a new 1 GiB needs a PMD table; room for one section's memmap, not two
    g = make_guest("kmalloc", direct_gbpages=False, max_addr=128 * GiB)
    populate(g, 100 * GiB, 1 * GiB)
    fill_user(g, 0, leave=600)
    before = state(g)
    assert g.add_memory(0, 100 * GiB, 1 * GiB) == -ENOMEM
    start = (100 * GiB) >> PAGE_SHIFT
    assert g.stale_sections == Extents.span(start, start + 32768) and g.stats.memmap_stale_pages == 512
    changed = diff(state(g), before)
    (direct_pmd, direct_pud, vmemmap_pmd, vmemmap_pud, roots), old = changed["pagetables"]
    assert direct_pmd[100] == 8 and direct_pud[0] == old[1][0] + 8  # init_memory_mapping() of the whole GiB
    assert vmemmap_pmd[1] == 1 and vmemmap_pud[0] == old[3][0] + 1  # the vmemmap of the first section only
    assert roots == old[4] | {3}  # sparse_index_init() of section 800's root
    assert changed["slab"][0][0] == SECTION_ROOT_BYTES + SECTION_USAGE_BYTES  # no resource, no memory block
    assert g.stats.pagetable_pages == 2  # the direct-map PMD table and the vmemmap PMD table
    kernel_kb = (512 + 2 + 2) * 4  # memmap, the two tables, two slab pages
    assert changed["meminfo.MemFree_kb"] == (
        before["meminfo"]["MemFree_kb"] - kernel_kb,
        before["meminfo"]["MemFree_kb"],
    )
    assert changed["meminfo.kernel_pages"] == (516, 0)


def test_enomem_in_a_later_section_leaves_the_earlier_ones():
    """__add_pages() (mm/memory_hotplug.c, 6.12.118 and 7.3.4) adds a 1 GiB DIMM section by section:
    sparse_add_section() -> section_activate() -> populate_section_memmap() -> vmemmap_populate() (x86
    arch/x86/mm/init_64.c, no altmap: a 2 MiB block per section). With room for exactly 3 memmaps and nothing
    reclaimable the 4th fails with -ENOMEM; add_memory_resource() then calls no arch_remove_memory(), so the 3
    sections keep their memmap for good (no memory block device: nothing can remove them), and MemFree stays 3 x
    2 MiB plus the new GiB's direct-map PMD table lower. The resource was released, so once memory is free the
    same add passes register_memory_resource() and fails in sparse_add_section() -> section_activate() ->
    fill_subsection_map() with -EEXIST ("bitmap_intersects(map, subsection_map, ...)"), before any allocation
    for the section."""
    g = make_guest("kmalloc", direct_gbpages=False)
    # a first add leaves a partly used slab page: the usage maps of the left sections fit in it
    assert add_backed(g, 0, 4 * GiB, 128 * MiB) == 0
    populate(g, 5 * GiB, 1 * GiB)
    user = fill_user(g, 0, leave=1600)
    before = g.meminfo()
    reclaimed = g.alloc.stats.reclaimed_pages
    assert g.add_memory(0, 5 * GiB, 1 * GiB) == -ENOMEM
    assert g.alloc.stats.reclaimed_pages == reclaimed  # nothing was reclaimable
    start = (5 * GiB) >> PAGE_SHIFT
    assert g.stale_sections == Extents.span(start, start + 3 * 32768)
    assert g.stats.memmap_stale_pages == 3 * 512 and not set(g.blocks) & set(range(40, 48))
    assert before.MemFree_kb - g.meminfo().MemFree_kb == 3 * 2048 + 4
    # /proc/vmstat nr_memmap_pages counts them: populate_section_memmap() -> memmap_pages_add() per section, and
    # only the failing section's section_deactivate() -> depopulate_section_memmap() took its share back
    # (6.12.118 mm/sparse-vmemmap.c l.567-586)
    assert g.meminfo().nr_memmap_pages - before.nr_memmap_pages == 3 * 512
    assert g.stats.add_errors == {-ENOMEM: 1}
    # free the user memory: the retry gets -EEXIST at the first section, and takes nothing
    for z in g.alloc.iter_zones():
        g.alloc.free(z, min(z.anon, user), "anon")
    freed = state(g)
    assert g.add_memory(0, 5 * GiB, 1 * GiB) == -EEXIST
    assert diff(state(g), freed) == {}
    assert g.stats.add_errors == {-ENOMEM: 1, -EEXIST: 1}
    # a range that starts below them: the sections before the first left one are added and left too
    populate(g, 4 * GiB + 128 * MiB, 896 * MiB)
    assert g.add_memory(0, 4 * GiB + 128 * MiB, 1 * GiB + 128 * MiB) == -EEXIST
    assert g.stale_sections == Extents.span((4 * GiB + 128 * MiB) >> PAGE_SHIFT, start + 3 * 32768)
    assert g.stats.memmap_stale_pages == 10 * 512
    # blocks past the left sections are free to add: only sections with a memmap conflict
    assert add_backed(g, 0, 5 * GiB + 384 * MiB, 640 * MiB) == 0


def test_enomem_in_the_only_section_leaves_nothing():
    """A one-section (128 MiB) add that fails in its memmap leaves nothing: section_activate() frees what it
    allocated for the failing section (section_deactivate()), and __add_pages() had added no other
    (mm/sparse.c, mm/sparse-vmemmap.c, 6.12.118 and 7.3.4). The same add succeeds once memory is free."""
    g = make_guest("kmalloc", direct_gbpages=False, max_addr=128 * GiB)
    populate(g, 100 * GiB, 128 * MiB)
    user = fill_user(g, 0, leave=300)
    before = state(g)
    assert g.add_memory(0, 100 * GiB, 128 * MiB) == -ENOMEM
    assert diff(state(g), before) == {}
    assert not g.stale_sections and g.stats.memmap_stale_pages == 0
    for z in g.alloc.iter_zones():
        g.alloc.free(z, min(z.anon, user), "anon")
    assert g.add_memory(0, 100 * GiB, 128 * MiB) == 0


def test_enomem_in_the_first_section_leaves_no_section():
    """An 8-section add whose first section's memmap fails: __add_pages() added none, so there is nothing to
    conflict with later. (The kernel keeps init_memory_mapping()'s direct map here too; the model rolls the
    tables back when no section stays.)"""
    g = make_guest("kmalloc", direct_gbpages=False, max_addr=128 * GiB)
    populate(g, 100 * GiB, 1 * GiB)
    fill_user(g, 0, leave=8)  # enough for the tables and a slab page, not for 2 MiB of memmap
    before = state(g)
    assert g.add_memory(0, 100 * GiB, 1 * GiB) == -ENOMEM
    assert diff(state(g), before) == {}
    assert not g.stale_sections


def test_enomem_rollback_keeps_free_pageblocks():
    """A failed one-section add gives back exactly what it took: no pageblock is left split."""
    g = make_guest("kmalloc", direct_gbpages=False, max_addr=128 * GiB)
    populate(g, 100 * GiB, 128 * MiB)
    fill_user(g, 0, leave=500)
    before = g.meminfo()
    assert g.add_memory(0, 100 * GiB, 128 * MiB) == -ENOMEM
    assert g.meminfo().free_pmd_blocks == before.free_pmd_blocks
    assert g.meminfo() == before


def test_enomem_subrange_hint_fail_without_usable_hint():
    g = make_guest("subrange-hint", {"fallback": "fail"})
    start_pfn = 4 * GiB >> PAGE_SHIFT
    populate(g, 4 * GiB, 128 * MiB)
    before = state(g)
    assert g.add_memory(0, 4 * GiB, 128 * MiB) == -ENOMEM  # no hint at all
    assert g.add_memory(0, 4 * GiB, 128 * MiB, hint=Extents()) == -ENOMEM
    # a backed extent too small for the 512-page memmap once pageblock aligned
    assert g.add_memory(0, 4 * GiB, 128 * MiB, hint=Extents.span(start_pfn + 1, start_pfn + 1023)) == -ENOMEM
    # a hint for another block does not help this one
    other = (8 * GiB) >> PAGE_SHIFT
    assert g.add_memory(0, 4 * GiB, 128 * MiB, hint=Extents.span(other, other + 32768)) == -ENOMEM
    assert diff(state(g), before) == {}
    assert g.add_memory(0, 4 * GiB, 128 * MiB, hint=Extents.span(start_pfn + 1, start_pfn + 1025)) == 0
    assert g.blocks[32].memmap.in_range == Extents.span(start_pfn + 512, start_pfn + 1024)


def test_enomem_subrange_hint_second_block_rolls_back_the_first():
    g = make_guest("subrange-hint", {"fallback": "fail"})
    s = 4 * GiB >> PAGE_SHIFT
    populate(g, 4 * GiB, 256 * MiB)
    before = state(g)
    assert g.add_memory(0, 4 * GiB, 256 * MiB, hint=Extents.span(s, s + 32768)) == -ENOMEM
    assert diff(state(g), before) == {}


def test_enomem_chain_subrange_hint_then_kmalloc_falls_back():
    """A chain whose first link placed some blocks before failing: undone, then the next link runs."""
    g = make_guest("subrange-hint,kmalloc", {"fallback": "fail"})
    s = 4 * GiB >> PAGE_SHIFT
    populate(g, 4 * GiB, 256 * MiB)
    assert g.add_memory(0, 4 * GiB, 256 * MiB, hint=Extents.span(s, s + 32768)) == 0
    assert all(g.blocks[b].memmap.kind == "kmalloc" for b in (32, 33))
    assert all(not g.blocks[b].vmemmap_pfns for b in (32, 33))
    assert g.stats.memmap_kmalloc_pages == 1024
    assert g.stats.memmap_in_range_pages == 0
    assert g.stats.memmap_fallbacks == 2


def test_success_counts():
    g = make_guest()
    assert add_backed(g, 0, 4 * GiB, 256 * MiB) == 0
    assert g.add_memory(0, 4 * GiB, 256 * MiB) == -EEXIST
    assert (g.stats.add_calls, g.stats.add_ok, g.stats.add_errors) == (2, 1, {-EEXIST: 1})
    assert sorted(g.blocks) == [32, 33]
    assert g.groups == {0: (4 * GiB >> PAGE_SHIFT, 65536)}


# ----------------------------------------------- allocation classes of the hot-add path's own pages ---
def _full(g, leave=0):
    """User memory takes everything above the min watermarks, but `leave` pages."""
    for z in g.alloc.iter_zones():
        room = z.free - z.wmark_min - leave
        if room > 0:
            g.alloc.alloc(z.nid, room, Gfp.USER)
    return sum(z.anon for z in g.alloc.iter_zones())


def _oom_killer(g) -> list[int]:
    """An OOM killer that frees the largest zone's anon pages; returns the list of kills."""
    kills: list[int] = []

    def oom():
        z = max(g.alloc.iter_zones(), key=lambda z: z.anon)
        if not z.anon:
            return False
        kills.append(z.anon)
        g.alloc.free(z, z.anon // 8, "anon")  # a victim's memory goes back
        return True

    g.out_of_memory = oom
    return kills


def test_metadata_invokes_the_oom_killer_instead_of_failing():
    """kzalloc(GFP_KERNEL) of the hot-add path (section usage, memory block devices): order 0, no
    __GFP_RETRY_MAYFAIL, so __alloc_pages_may_oom() kills and the slow path retries "as long as the OOM killer
    is making progress"; -ENOMEM only when there is nothing left to kill."""
    g = make_guest("altmap", direct_gbpages=True)
    _full(g)
    populate(g, 4 * GiB, 128 * MiB)
    assert g.add_memory(0, 4 * GiB, 128 * MiB) == -ENOMEM  # no OOM killer attached: nothing to kill
    kills = _oom_killer(g)
    assert g.add_memory(0, 4 * GiB, 128 * MiB) == 0
    assert len(kills) == 1


def test_a_memmap_that_cannot_be_had_fails_the_add_before_any_oom_kill():
    """add_memory_resource() (6.12.118, 7.3.4): arch_add_memory() -> section_activate() allocates the section's
    usage map, then its memmap (vmemmap_alloc_block(): GFP_KERNEL | __GFP_RETRY_MAYFAIL, so reclaim but never
    the OOM killer); only once that succeeded does create_memory_block_devices() -> add_memory_block()
    kzalloc() the struct memory_block (GFP_KERNEL, which may OOM-kill). So on a full guest an ordinary memmap
    fails the add with -ENOMEM and kills nothing, even when the slab has no room left for the block device."""
    g = make_guest("kmalloc", direct_gbpages=True)
    _full(g)
    kills = _oom_killer(g)
    # the slab pages hold the resource and the section's usage map, not the 1 KiB struct memory_block as well
    g.slab_bytes = g.slab_total * PAGE_SIZE - (RESOURCE_BYTES + SECTION_USAGE_BYTES)
    populate(g, 4 * GiB, 128 * MiB)
    before = state(g)
    assert g.add_memory(0, 4 * GiB, 128 * MiB) == -ENOMEM
    assert kills == []
    assert diff(state(g), before) == {}


def test_direct_map_tables_are_gfp_atomic_and_unchecked():
    """x86 alloc_low_pages() after boot: __get_free_pages(GFP_ATOMIC | __GFP_ZERO), no reclaim, the callers
    (phys_pud_init()) do not check for NULL: an allocation failure is a NULL dereference, not -ENOMEM
    (E. Sharnoff, 2025, virtio-mem hotplug on 6.12). GFP_ATOMIC may use part of the min reserve."""
    g = make_guest("altmap", direct_gbpages=False)  # a PMD table per new GiB of direct map
    _full(g)
    _oom_killer(g)
    populate(g, 4 * GiB, 128 * MiB)
    assert g.add_memory(0, 4 * GiB, 128 * MiB) == 0  # the min reserve still holds a page for GFP_ATOMIC
    for z in g.alloc.iter_zones():  # now nothing at all is free
        if z.free:
            g.alloc.alloc_atomic(z.nid, z.free - atomic_floor(z.wmark_min))
    populate(g, 5 * GiB, 128 * MiB)
    with pytest.raises(KernelOops, match="phys_pud_init"):
        g.add_memory(0, 5 * GiB, 128 * MiB)
    assert g.crashed is not None


@pytest.mark.parametrize(("wmark_min", "floor"), [(1000, 375), (1001, 376), (7, 3), (1, 1), (0, 0)])
def test_gfp_atomic_may_use_five_eighths_of_the_min_reserve(wmark_min, floor):
    """__zone_watermark_ok() (4.19-6.18): GFP_ATOMIC is __GFP_HIGH (min -= min / 2: ALLOC_HIGH, 6.3+
    ALLOC_MIN_RESERVE) and cannot block (min -= min / 4: ALLOC_HARDER, 6.3+ ALLOC_NON_BLOCK), in integer
    arithmetic; an order-0 page is granted while free > min. The model let it go down to half of min only."""
    assert atomic_floor(wmark_min) == floor
    g = make_guest("altmap")
    z = g.alloc.zonelist(0, kernel_only=True)[0]
    others = [o for o in g.alloc.zonelist(0, kernel_only=True) if o is not z]
    for o in others:  # only z has room: what it gives is its own floor
        if o.free > atomic_floor(o.wmark_min):
            assert g.alloc.alloc_atomic(o.nid, o.free - atomic_floor(o.wmark_min)) > 0
    floor_z = atomic_floor(z.wmark_min)
    assert floor_z < z.wmark_min // 2
    assert g.alloc.alloc_atomic(z.nid, z.free - floor_z) > 0
    assert z.free == floor_z
    assert g.alloc.alloc_atomic(z.nid, 1) == 0  # one page more is refused


@pytest.mark.parametrize(("la57", "ok"), [(False, False), (True, True)])
def test_e2big_beyond_max_physmem_bits(la57, ok):
    """mhp_range_allowed() (5.11+; check_hotplug_memory_addressable() before, UNVERIFIED for 4.19): the range
    must end below 1 << MAX_PHYSMEM_BITS, 46 bits with 4-level paging, 52 with 5-level."""
    g = make_guest(max_addr=128 * 1024 * GiB, la57=la57)
    start = 64 * 1024 * GiB  # 1 << 46
    populate(g, start, 128 * MiB)
    assert g.add_memory(0, start, 128 * MiB) == (0 if ok else -E2BIG)
    populate(g, start - 128 * MiB, 128 * MiB)
    assert g.add_memory(0, start - 128 * MiB, 128 * MiB) == 0  # the last block below 64 TiB


def test_a_sub_gib_add_maps_its_direct_map_with_2m_pages_even_with_gbpages():
    """x86 init_memory_mapping() -> split_mem_range() (6.12.118, 7.3.4): 1 GiB pages only for a whole aligned GiB
    inside the range mapped, and after boot no range is widened (adjust_range_page_size_mask() runs only while
    !after_bootmem). So the first 128 MiB block hot-added into a new GiB takes a PMD table (alloc_low_pages(),
    GFP_ATOMIC) even with gbpages; the next blocks of that GiB reuse it; a whole aligned GiB takes none."""
    g = make_guest("altmap", direct_gbpages=True)
    before = g.stats.pagetable_pages
    for i in range(3):
        assert add_backed(g, 0, 6 * GiB + i * 128 * MiB, 128 * MiB) == 0
    assert g.stats.pagetable_pages == before + 1
    assert add_backed(g, 0, 8 * GiB, 1 * GiB, memmap_on_memory=False) == 0
    assert g.stats.pagetable_pages == before + 1
    # and the table is GFP_ATOMIC: with nothing above the atomic floor, the unchecked NULL dereference
    _full(g)
    _oom_killer(g)
    for z in g.alloc.iter_zones():
        if z.free:
            g.alloc.alloc_atomic(z.nid, z.free - atomic_floor(z.wmark_min))
    populate(g, 10 * GiB, 128 * MiB)
    with pytest.raises(KernelOops, match="phys_pud_init"):
        g.add_memory(0, 10 * GiB, 128 * MiB)


@pytest.mark.parametrize(("kernel", "tables"), [("6.6", 0), ("6.8", 1), ("6.12", 1)])
def test_memmap_on_memory_per_block_maps_a_whole_gib_with_2m_pages(kernel, tables):
    """6.8+ add_memory_resource() with MHP_MEMMAP_ON_MEMORY -> create_altmaps_and_memory_blocks() (6b8f0798b85a;
    6.12.118 mm/memory_hotplug.c) calls arch_add_memory() once per memory block, so init_memory_mapping() sees
    128 MiB at a time: no range holds a whole GiB, and an aligned 1 GiB DIMM is mapped with 2 MiB pages from one
    PMD table (4 KiB) even with gbpages. On 6.6 the same add falls back to the ordinary memmap (one range, not
    one block: mhp_supports_memmap_on_memory(size)) and arch_add_memory() maps the whole GiB with a 1 GiB page."""
    g = make_guest("altmap", kernel=kernel, direct_gbpages=True)
    before = g.stats.pagetable_pages
    assert add_backed(g, 0, 8 * GiB, 1 * GiB) == 0
    assert bool(g.blocks[64].vmemmap_pfns) is (kernel != "6.6")
    assert g.stats.pagetable_pages - before == tables
    free = g.meminfo().MemFree_kb
    assert add_backed(g, 0, 9 * GiB, 1 * GiB, memmap_on_memory=False) == 0  # the ordinary memmap: one range
    assert g.stats.pagetable_pages - before == tables
    assert g.meminfo().MemFree_kb < free  # (its memmap came from online memory)


@pytest.mark.parametrize(
    ("strategy", "params"),
    [("kmalloc", None), ("altmap", None), ("altmap,kmalloc", None), ("subrange-hint,kmalloc", {"fallback": "fail"})],
)
def test_a_chain_ending_in_the_ordinary_memmap_leaves_sections_as_it_would_alone(strategy, params):
    """The same 1 GiB add without MHP_MEMMAP_ON_MEMORY, room for 3 sections' memmap: every strategy whose add is
    then the kernel's ordinary memmap leaves the 3 sections (__add_pages(), 6.12.118 and 7.3.4), a fallback chain
    too. altmap,kmalloc: altmap without the flag is already the ordinary memmap, so the chain does not try it a
    second time (no second reclaim, one fallback per block); subrange-hint,kmalloc with no usable subrange: the
    hint fails before any memmap and kmalloc ends the chain."""
    g = make_guest(strategy, params, direct_gbpages=False)
    assert add_backed(g, 0, 4 * GiB, 128 * MiB, memmap_on_memory=False) == 0
    fallbacks = g.stats.memmap_fallbacks
    user = fill_user(g, 0, leave=1600)
    assert g.add_memory(0, 5 * GiB, 1 * GiB, memmap_on_memory=False) == -ENOMEM  # unbacked: no subrange hint
    start = (5 * GiB) >> PAGE_SHIFT
    assert g.stale_sections == Extents.span(start, start + 3 * 32768)
    assert g.stats.memmap_fallbacks - fallbacks == (0 if strategy == "kmalloc" else 8)
    for z in g.alloc.iter_zones():
        g.alloc.free(z, min(z.anon, user), "anon")
    assert g.add_memory(0, 5 * GiB, 1 * GiB, memmap_on_memory=False) == -EEXIST


def test_a_chain_ending_in_a_what_if_is_rolled_back_whole():
    """subrange-hint falls back to the ordinary memmap itself when no subrange is usable; a what-if the kernel has
    no code for, it is rolled back whole when that fails (MemmapStrategy.leaves_failed_sections), and as the link
    that ends the chain (its error came from the ordinary memmap: kmalloc would only try it again) it is in
    subrange-hint,kmalloc too."""
    for strategy in ("subrange-hint", "subrange-hint,kmalloc"):
        g = make_guest(strategy, direct_gbpages=False)
        assert add_backed(g, 0, 4 * GiB, 128 * MiB, memmap_on_memory=False) == 0
        fill_user(g, 0, leave=1600)
        before = state(g)
        assert g.add_memory(0, 5 * GiB, 1 * GiB, memmap_on_memory=False) == -ENOMEM
        assert not g.stale_sections and diff(state(g), before) == {}
