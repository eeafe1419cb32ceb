"""Evacuating a range that leaves its zone: what offline_pages() and alloc_contig_range() do with its pages.

Both isolate the range, take its free pages (no watermark check) and move what is in use with
migrate_pages(..., alloc_migration_target, ...) (mm/memory_hotplug.c do_migrate_range(), mm/page_alloc.c
__alloc_contig_migrate_range(); 6.12.118 and 7.3.4). Each target is a __folio_alloc() with __GFP_MOVABLE |
__GFP_RETRY_MAYFAIL: direct reclaim anywhere in its zonelist, never the OOM killer. alloc_migration_target()
(mm/migrate.c) adds __GFP_HIGHMEM for a ZONE_MOVABLE source, so a Movable page may move to Movable, Normal or
DMA32, a kernel-zone page only to Normal or DMA32 (gfp_zone(): __GFP_MOVABLE without __GFP_HIGHMEM is Normal).
The two callers differ, and `evacuate()` takes the differences as arguments:
- nodes: do_migrate_range() clears the range's node from node_states[N_MEMORY] (node_clear(mtc.nid, nmask))
  unless no other node has memory; alloc_contig_range() passes no nodemask: the zone's node first;
- page cache: __alloc_contig_migrate_range() first drops the clean file folios it isolated
  (reclaim_clean_pages_from_list()); do_migrate_range() migrates page cache like anon.
The gfp base differs too (offline: GFP_USER in 6.12, GFP_KERNEL in 7.3; alloc_contig_range(): GFP_KERNEL); both
allow the same zones, and cpuset hardwalls are not modelled.

The model has no page positions: the range holds as many of the zone's free pages as it can, taken first so that
no target lands inside it; the rest is in use, anon and page cache in the zone's proportions (all page cache is
clean in the model). What cannot be anon or page cache is unmovable: the range cannot be emptied.
"""

from __future__ import annotations

from balloonsim.kernel.errno import EBUSY, ENOMEM
from balloonsim.kernel.page_alloc import KERNEL_ZONEIDX, USER_ZONEIDX, PageAllocator
from balloonsim.kernel.zone import Zone, ZoneType

_RECLAIM_ROUNDS = 64  # a bound on direct-reclaim rounds for the targets (each must make progress)


def migration_zonelist(alloc: PageAllocator, zone: Zone, other_nodes: bool) -> list[Zone]:
    """The zones alloc_migration_target() may use for a page of `zone`, nearest first: up to Movable for a
    Movable source, up to Normal otherwise; without the source's node when `other_nodes` (do_migrate_range())
    and another node has memory (node_states[N_MEMORY]: any populated zone)."""
    zl = alloc.zonelist(zone.nid, kernel_only=not zone.movable)
    if other_nodes and any(z.nid != zone.nid for z in alloc.zonelist(zone.nid, kernel_only=False)):
        zl = [z for z in zl if z.nid != zone.nid]
    return [z for z in zl if z.present]


def _alloc_targets(
    alloc: PageAllocator, zl: list[Zone], nid: int, pieces: list[tuple[int, str]], movable: bool
) -> bool:
    """All of `pieces` ((pages, counter)) from `zl`, or nothing, as __folio_alloc() would place them one by one:
    above each zone's low watermark first, then (kswapd woken) down to its min, each plus the zone's
    lowmem_reserve for the target's highest zone; direct reclaim over the whole zonelist while it makes progress
    (__GFP_RETRY_MAYFAIL: no OOM kill)."""
    need = sum(n for n, _ in pieces)
    if not need:
        return True
    highest = USER_ZONEIDX if movable else KERNEL_ZONEIDX
    if PageAllocator._room(zl, highest)[1] < need:  # noqa: SLF001 - the allocator's own watermark arithmetic
        alloc.wake_all_kswapds(zl, ZoneType.MOVABLE if movable else ZoneType.NORMAL)
        alloc.kswapd()
    for _ in range(_RECLAIM_ROUNDS):
        avail = PageAllocator._room(zl, highest)[0]  # noqa: SLF001
        if avail >= need:
            break
        alloc.stats.direct_reclaim += 1
        if not alloc.reclaim(zl, need - avail, wait_writeback=True):
            break
    if PageAllocator._room(zl, highest)[0] < need:  # noqa: SLF001
        alloc.stats.failures += 1
        return False
    left = [n for n, _ in pieces]
    for low in (True, False):  # the allocator's own walk: above the low watermarks first, then down to min
        for i, (_, kind) in enumerate(pieces):
            if left[i]:
                left[i] -= alloc._take_above(zl, left[i], low, highest, kind, nid, None)  # noqa: SLF001
    return True


def evacuate(alloc: PageAllocator, zone: Zone, n: int, *, other_nodes: bool, drop_clean_cache: bool) -> int:
    """Empty n pages of `zone` so that they can leave it: their free pages are taken, their in-use pages
    migrated (or, with `drop_clean_cache`, their page cache dropped). The zone's counters no longer hold the n
    pages; the caller lowers `managed`. Returns -EBUSY when more is in use than anon and page cache (unmovable
    pages), -ENOMEM when no migration target could be had (migrate_pages()), the zone then unchanged; else 0.
    Migrated pages stay where they landed: a caller that gives the range back (fake-online, an offline rolled
    back) hands it back free, as the kernel does."""
    free = min(n, max(0, zone.free))
    used = n - free
    movable = zone.anon + zone.pagecache
    if used > movable:
        return -EBUSY
    pagecache = used * zone.pagecache // movable if used else 0
    anon = used - pagecache
    dropped = pagecache if drop_clean_cache else 0
    pagecache -= dropped
    split = zone.take(free)  # isolated: the targets lie outside the range
    alloc.changed()
    zone.anon -= anon
    zone.pagecache -= pagecache + dropped
    pieces = [(anon, "anon"), (pagecache, "pagecache")]
    landed: list[tuple[Zone, int]] = []  # where the anon pages went, for their owners' page tables
    faulting, alloc.anon_charged = alloc.anon_charged, lambda z, k: landed.append((z, k))
    try:
        ok = _alloc_targets(alloc, migration_zonelist(alloc, zone, other_nodes), zone.nid, pieces, zone.movable)
    finally:
        alloc.anon_charged = faulting
    if not ok:
        zone.anon += anon
        zone.pagecache += pagecache + dropped
        zone.untake(free, split)
        return -ENOMEM
    if landed and alloc.rmap_move is not None:
        alloc.rmap_move(zone, landed)
    return 0
