"""Where offline_pages() puts the pages in use of a block it offlines (balloonsim.kernel.migrate; kernel-facts.md
section 3). Read in Debian's 6.12.118 and 7.3.4 sources: offline_pages() -> do_migrate_range() (mm/memory_hotplug.c)
migrates every LRU folio, file and anon alike, with migrate_pages(..., alloc_migration_target, ...) (mm/migrate.c),
from node_states[N_MEMORY] minus the block's node (node_clear(mtc.nid, nmask)) unless that leaves no node;
alloc_migration_target() adds __GFP_HIGHMEM only for a ZONE_MOVABLE (or highmem) source, so a kernel-zone page's
target is at most ZONE_NORMAL (gfp GFP_USER | __GFP_MOVABLE in 6.12.118, GFP_KERNEL | __GFP_MOVABLE in 7.3.4)."""

from kmodel_helpers import add_backed, fill_user, make_guest, online_all

from balloonsim.kernel import ZoneType
from balloonsim.kernel.errno import EINTR, ENOMEM
from balloonsim.kernel.page_alloc import Gfp
from balloonsim.units import PAGE_SHIFT, GiB, MiB, kb


def _zones_ok(g) -> None:
    for z in g.alloc.iter_zones():
        assert z.managed == z.free + z.pagecache + z.anon + z.kernel
        assert min(z.free_pmd, z.free_base, z.pagecache, z.anon, z.kernel) >= 0


def _movable_guest(**kw):
    """A guest with 256 MiB hot-added at 4 GiB (blocks 32 and 33) onlined to ZONE_MOVABLE; returns it and that zone."""
    g = make_guest("kmalloc", **kw)
    assert add_backed(g, 0, 4 * GiB, 256 * MiB) == 0
    online_all(g, "online_movable")
    return g, g.alloc.zones[(0, ZoneType.MOVABLE)]


def _node1_movable_full():
    """Two nodes of 2 GiB; 256 MiB hot-added to node 1 (blocks 64, 65) onlined to ZONE_MOVABLE and filled with anon
    down to its min watermark. Returns the guest and that zone."""
    g = make_guest("kmalloc", boot=[2 * GiB, 2 * GiB])
    assert add_backed(g, 1, 8 * GiB, 256 * MiB) == 0
    online_all(g, "online_movable")
    movable = g.alloc.zones[(1, ZoneType.MOVABLE)]
    n = movable.free - movable.wmark_min
    assert g.alloc.alloc(1, n, Gfp.USER) == n
    return g, movable


def test_offline_migrates_page_cache():
    """do_migrate_range() (6.12.118, 7.3.4) migrates clean page cache (migrate_folio()), it does not drop it:
    Cached stays, and MemFree falls by the whole block (its free pages and the copies' new pages)."""
    g, movable = _movable_guest()
    n = movable.free - movable.wmark_min
    assert g.alloc.alloc(0, n, Gfp.USER, charge="pagecache") == n  # Movable first: all of it page cache
    before = g.meminfo()
    assert g.offline_memory_block(33) == 0
    after = g.meminfo()
    assert after.Cached_kb == before.Cached_kb
    assert before.MemFree_kb - after.MemFree_kb == kb(128 * MiB >> PAGE_SHIFT)
    assert before.MemTotal_kb - after.MemTotal_kb == kb(128 * MiB >> PAGE_SHIFT)
    assert movable.pagecache > 0  # half of the cache was in block 32, which stays
    _zones_ok(g)


def test_offline_migrates_to_other_nodes():
    """do_migrate_range() (6.12.118, 7.3.4): `node_clear(mtc.nid, nmask)`: with another node that has memory,
    no target is on the block's own node, even when it has room."""
    g, movable = _node1_movable_full()
    node_free = {nid: sum(z.free for z in g.alloc.iter_zones() if z.nid == nid) for nid in (0, 1)}
    block = g.blocks[65]
    used = block.managed - min(block.managed, movable.free)
    assert used > 0
    in_block_free = block.managed - used
    assert g.offline_memory_block(65) == 0
    after = {nid: sum(z.free for z in g.alloc.iter_zones() if z.nid == nid) for nid in (0, 1)}
    assert node_free[0] - after[0] == used  # every migrated page went to node 0
    assert node_free[1] - after[1] == in_block_free  # node 1 lost only the block's own free pages
    _zones_ok(g)


def test_offline_does_not_fall_back_to_its_own_node_when_another_has_memory():
    """do_migrate_range() (6.12.118, 7.3.4): the block's node is only used when no other node has memory; a full
    node 0 makes the offline retry until a signal (-EINTR) although node 1 has room."""
    g, movable = _node1_movable_full()
    fill_user(g, 0)  # node 0 full: its zonelist reaches node 1 only after node 0
    dma32_1 = g.alloc.zones[(1, ZoneType.DMA32)]
    for z in g.alloc.iter_zones():  # node 1's boot memory keeps 256 MiB free
        if z.nid == 1 and z is not movable and z.anon:
            g.alloc.free(z, min(z.anon, 65536), "anon")
    assert dma32_1.free - dma32_1.wmark_min >= 32768
    assert g.offline_memory_block(65) == -EINTR


def test_offline_migrates_to_its_own_node_when_no_other_has_memory():
    """do_migrate_range() (6.12.118, 7.3.4): `if (nodes_empty(nmask)) node_set(mtc.nid, nmask)`: node 1 is
    possible but has no memory, so node 0's own boot memory takes the targets."""
    g, movable = _movable_guest(extra_nodes=1)
    n = movable.free - movable.wmark_min
    assert g.alloc.alloc(0, n, Gfp.USER) == n
    anon = sum(z.anon for z in g.alloc.iter_zones())
    assert g.offline_memory_block(33) == 0
    assert sum(z.anon for z in g.alloc.iter_zones()) == anon
    _zones_ok(g)


def test_offline_migrates_to_its_own_node_once_the_other_node_lost_its_memory():
    """offline_pages() (6.12.118 mm/memory_hotplug.c l.2108-2116; __offline_pages() the same in 4.19) clears
    N_MEMORY for a node whose last memory went (node_states_clear_node()) and rebuilds the zonelists when a zone
    empties (`if (!populated_zone(zone)) ... build_all_zonelists(NULL)`). A later offline on node 0 then finds no
    other node with memory and migrates within its own (do_migrate_range(), l.1874-1877), where the model used to
    aim at the emptied node's zones still in its zonelist and give up (-EINTR)."""
    g, movable = _movable_guest(extra_nodes=1)
    assert add_backed(g, 1, 8 * GiB, 128 * MiB) == 0
    node1 = next(b for b in g.blocks.values() if b.nid == 1)
    assert g.online_memory_block(node1.id, "online_movable") == 0
    n = movable.free - movable.wmark_min
    assert g.alloc.alloc(0, n, Gfp.USER) == n  # node 0's Movable blocks hold anon that must move
    assert g.offline_memory_block(node1.id) == 0
    assert g.remove_memory(8 * GiB, 128 * MiB) == 0  # node 1 has no memory now
    assert all(z.nid == 0 for z in g.alloc.zonelist(0, kernel_only=False))
    anon = sum(z.anon for z in g.alloc.iter_zones())
    assert g.offline_memory_block(33) == 0
    assert sum(z.anon for z in g.alloc.iter_zones()) == anon
    assert g.stats.offline_eintr == 0
    _zones_ok(g)


def test_offline_of_a_kernel_zone_block_never_migrates_into_movable():
    """alloc_migration_target() (6.12.118, 7.3.4) adds __GFP_HIGHMEM only for a Movable source: the anon of a
    ZONE_NORMAL block may go to Normal or DMA32, never to ZONE_MOVABLE, even when only Movable has room."""
    g = make_guest("kmalloc", boot=[6 * GiB])  # boot memory in ZONE_NORMAL: no background page pins block 64
    assert add_backed(g, 0, 8 * GiB, 256 * MiB) == 0
    assert g.online_memory_block(64, "online_kernel") == 0
    assert g.online_memory_block(65, "online_movable") == 0
    normal = g.alloc.zones[(0, ZoneType.NORMAL)]
    movable = g.alloc.zones[(0, ZoneType.MOVABLE)]
    dma32 = g.alloc.zones[(0, ZoneType.DMA32)]
    assert g.blocks[64].zone is normal and not g.blocks[64].unmovable
    fill_user(g, 0)  # Movable, Normal and DMA32 full of anon
    g.alloc.free(movable, movable.anon, "anon")  # only Movable has room
    movable_anon = movable.anon
    assert g.offline_memory_block(64) == -EINTR
    g.alloc.free(dma32, 40000, "anon")  # room in a kernel zone: the offline succeeds, into DMA32
    assert g.offline_memory_block(64) == 0
    assert movable.anon == movable_anon
    _zones_ok(g)


# -- alloc_contig_range() (virtio-mem's fake-offline) ------------------------------------------------------------
# __alloc_contig_migrate_range() (mm/page_alloc.c, 6.12.118 and 7.3.4): reclaim_clean_pages_from_list() drops the
# clean page cache it isolated, migrate_pages(..., alloc_migration_target, ...) moves the rest with mtc.nid = the
# zone's node and no nodemask; isolate_freepages_range() takes the free pages with no watermark check; a target
# allocation that fails makes migrate_pages() and alloc_contig_range() return -ENOMEM.


def test_alloc_contig_range_drops_clean_page_cache_and_migrates_anon():
    g, movable = _movable_guest()
    dma32 = g.alloc.zones[(0, ZoneType.DMA32)]
    room = movable.free - movable.wmark_min
    assert g.alloc.alloc(0, room // 2, Gfp.USER) == room // 2
    assert g.alloc.alloc(0, room - room // 2, Gfp.USER, charge="pagecache") == room - room // 2
    block = g.blocks[33]
    n = block.managed
    used = n - movable.free
    cache_share = used * movable.pagecache // (movable.pagecache + movable.anon)
    anon = sum(z.anon for z in g.alloc.iter_zones())
    cache = sum(z.pagecache for z in g.alloc.iter_zones())
    dma32_cache = dma32.pagecache
    assert g.alloc_contig_range(block, block.start_pfn, block.end_pfn) == 0
    assert block.exposed.total == 0
    assert sum(z.anon for z in g.alloc.iter_zones()) == anon  # anon migrated
    assert sum(z.pagecache for z in g.alloc.iter_zones()) == cache - cache_share  # the range's cache dropped
    assert dma32.pagecache == dma32_cache  # ... not copied to the targets' zone
    _zones_ok(g)


def test_alloc_contig_range_takes_free_pages_below_the_min_watermark():
    """A free range in a zone at its min watermark: isolate_freepages_range() checks no watermark."""
    g, movable = _movable_guest()
    fill_user(g, 0)
    g.alloc.free(movable, 500, "anon")
    assert movable.free >= 512 and movable.free - 512 < movable.wmark_min
    block = g.blocks[33]
    assert g.alloc_contig_range(block, block.end_pfn - 512, block.end_pfn) == 0
    assert block.exposed.total == (128 * MiB >> PAGE_SHIFT) - 512
    _zones_ok(g)


def test_alloc_contig_range_enomem_when_no_target_can_be_had():
    g, _ = _movable_guest()
    fill_user(g, 0)  # every zone full of anon, no page cache to reclaim, no swap
    block = g.blocks[33]
    before = [(z.managed, z.free_pmd, z.free_base, z.anon, z.pagecache) for z in g.alloc.iter_zones()]
    assert g.alloc_contig_range(block, block.start_pfn, block.end_pfn) == -ENOMEM
    assert [(z.managed, z.free_pmd, z.free_base, z.anon, z.pagecache) for z in g.alloc.iter_zones()] == before
    assert block.exposed.total == block.managed


def test_alloc_contig_range_migrates_within_the_node_first():
    """mtc.nid = zone_to_nid(cc->zone), no nodemask: unlike offline, the targets are on the zone's node while
    it has room."""
    g, movable = _node1_movable_full()
    node0_free = sum(z.free for z in g.alloc.iter_zones() if z.nid == 0)
    block = g.blocks[65]
    assert g.alloc_contig_range(block, block.start_pfn, block.end_pfn) == 0
    assert sum(z.free for z in g.alloc.iter_zones() if z.nid == 0) == node0_free
    _zones_ok(g)
