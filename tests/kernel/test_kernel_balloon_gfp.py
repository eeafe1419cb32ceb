"""What a balloon's allocation may do: GFP_HIGHUSER|__GFP_NORETRY|__GFP_NOMEMALLOC|__GFP_NOWARN (hv_balloon's
alloc_balloon_pages(), Xen's GFP_BALLOON). GFP_HIGHUSER has __GFP_RECLAIM, so __alloc_pages_slowpath() (Debian
6.12.118 mm/page_alloc.c:4289, 7.3.4:4786) wakes kswapd and runs direct reclaim (and, for an order-9 unit, direct
compaction); __GFP_NORETRY ends it there ("Do not loop if specifically requested"): no retry loop, no OOM killer."""

from __future__ import annotations

from kmodel_helpers import make_guest

from balloonsim.kernel.page_alloc import Gfp
from balloonsim.units import PMD_PAGES, GiB, MiB

PAGES_2G = 2 * GiB // 4096


def test_a_balloon_reclaims_page_cache_once_but_never_kills():
    """4 GiB guest with 3 GiB of page cache: 2 GiB of balloon pages come from reclaiming the cache, in one round of
    direct reclaim (the model's allocation of n pages stands for n order-0 allocations, each reclaiming once)."""
    g = make_guest(boot=[4 * GiB], page_cache=3 * GiB)
    a = g.alloc
    cache = a.total("pagecache")
    before = a.stats.direct_reclaim
    assert a.alloc(0, PAGES_2G, Gfp.BALLOON, partial=True) == PAGES_2G
    assert a.total("pagecache") <= cache - GiB // 4096
    assert a.stats.direct_reclaim == before + 1


def test_a_balloon_with_nothing_to_reclaim_gets_what_is_free_and_gives_up():
    """Nothing reclaimable (anon, no swap): the balloon takes the free pages above the min watermarks
    (__GFP_NOMEMALLOC: no reserves below min) and stops after its one reclaim round; nobody is killed."""
    g = make_guest(boot=[2 * GiB])
    a = g.alloc
    zl = a.zonelist(0, kernel_only=True)
    a.alloc(0, a.total("free") - 4 * PMD_PAGES, Gfp.USER, partial=True)
    room = sum(max(0, z.free - z.wmark_min) for z in zl)
    before = a.stats.direct_reclaim
    assert a.alloc(0, room + 1000, Gfp.BALLOON, partial=True) == room
    assert a.stats.direct_reclaim == before + 1
    assert all(z.free == z.wmark_min for z in zl if z.free > 0)


def _fragmented(g, cache: int = 0):
    """No free pageblock left: every zone's free memory in fragments among anon pages."""
    for z in g.alloc.iter_zones():
        if z.free_pmd:
            z.free_base += z.free_pmd * PMD_PAGES
            z.free_pmd = 0


def test_a_2m_balloon_unit_compacts_fragmented_free_memory():
    """An order-9 __GFP_NORETRY allocation tries direct compaction first (costly order), which succeeds while a
    zone is compaction_suitable() (free >= low + compact_gap(9)) with its fragments among movable pages."""
    g = make_guest(boot=[2 * GiB])
    a = g.alloc
    a.alloc(0, 512 * MiB // 4096, Gfp.USER)
    _fragmented(g)
    got = a.alloc_pmds(0, 2, Gfp.BALLOON)
    assert sum(k for _, k in got) == 2
    assert a.stats.compact_success == 2


def test_a_2m_balloon_unit_gives_up_when_compaction_is_skipped():
    """COMPACT_SKIPPED (no zone with free >= low + compact_gap(9)): __GFP_NORETRY costly allocations "fail
    immediately", before any direct reclaim, though page cache could be reclaimed (6.12.118 mm/page_alloc.c:4418;
    7.3.4's `compact_first` drops this early exit, a release after every profile of the model)."""
    g = make_guest(boot=[2 * GiB], page_cache=1 * GiB)
    a = g.alloc
    zl = a.zonelist(0, kernel_only=True)
    for z in zl:  # each zone just under low + 1024 free, all of it in fragments
        k = z.free - (z.wmark_low + 2 * PMD_PAGES - 1)
        z.take(k)
        z.anon += k
    _fragmented(g)
    before = (a.stats.direct_reclaim, a.total("pagecache"))
    assert a.alloc_pmds(0, 1, Gfp.BALLOON) == []
    assert (a.stats.direct_reclaim, a.total("pagecache")) == before
