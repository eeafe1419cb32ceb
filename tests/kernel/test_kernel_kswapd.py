"""The allocator's fast path and kswapd's wake-up and stop rules (mm/page_alloc.c, mm/vmscan.c; the same in Debian's
6.12.118 and 7.3.4 sources):

- get_page_from_freelist() walks every zone of the zonelist against its low watermark (ALLOC_WMARK_LOW) before
  __alloc_pages_slowpath() wakes kswapd (wake_all_kswapds()) and goes down to the min watermark;
- wakeup_kswapd() leaves kswapd asleep while pgdat_balanced() finds one eligible zone above its high watermark;
- balance_pgdat() reclaims until pgdat_balanced() holds, i.e. until one zone is balanced, not every zone, in
  passes that grow from 1/4096 of the LRU (its priority loop), so it stops soon after the high watermark.
"""

from __future__ import annotations

from kmodel_helpers import make_guest

from balloonsim.kernel import Guest
from balloonsim.kernel.page_alloc import USER_ZONEIDX, Gfp
from balloonsim.kernel.zone import Zone, ZoneType
from balloonsim.units import GiB


def _set_free(z: Zone, free: int) -> None:
    """Move pages between the zone's free lists and its anon counter until it has `free` free pages."""
    if free < z.free:
        k = z.free - free
        z.take(k)
        z.anon += k
    else:
        k = free - z.free
        z.anon -= k
        z.give(k, contiguous=False)


def _guest() -> tuple[Guest, Zone, Zone]:
    """4 GiB guest: the user zonelist is Normal (above 4 GiB) then DMA32; 1 GiB of page cache to reclaim."""
    g = make_guest(boot=[4 * GiB], page_cache=1 * GiB)
    normal, dma32 = g.alloc.zonelist(0, kernel_only=False)
    assert (normal.type, dma32.type) == (ZoneType.NORMAL, ZoneType.DMA32)
    return g, normal, dma32


def test_an_allocation_takes_a_zone_above_low_before_draining_the_first_to_min():
    """get_page_from_freelist() (6.12.118 mm/page_alloc.c:3420, 7.3.4:3810) checks each zone of the zonelist at
    ALLOC_WMARK_LOW and takes the first that passes: Normal at its low watermark gives nothing while DMA32 has room
    above low, and no kswapd is woken."""
    g, normal, dma32 = _guest()
    _set_free(normal, normal.wmark_low)
    woken = []
    g.alloc.on_pressure = lambda: woken.append(1)
    before = dma32.free
    assert g.alloc.alloc(0, 256, Gfp.USER) == 256
    assert normal.free == normal.wmark_low
    assert dma32.free == before - 256
    assert woken == [] and g.alloc.kswapd_highest_zoneidx == {} and g.alloc.stats.reclaimed_pages == 0


def test_kswapd_sleeps_while_another_zone_of_the_node_is_balanced():
    """wakeup_kswapd() (6.12.118 mm/vmscan.c:7285, 7.3.4:7578) does not wake kswapd while pgdat_balanced()
    (6.12.118:6694, 7.3.4:6968) finds any managed zone up to the highest zone above its high watermark: Normal at its
    min watermark with DMA32 untouched reclaims nothing, swaps nothing and is no pressure."""
    g, normal, dma32 = _guest()
    g.alloc.swap.slots = 1 << 18  # swap would be usable
    _set_free(normal, normal.wmark_min)
    assert dma32.free > dma32.wmark_high
    woken = []
    g.alloc.on_pressure = lambda: woken.append(1)
    zl = g.alloc.zonelist(0, kernel_only=False)
    g.alloc.wake_all_kswapds(zl, ZoneType.MOVABLE)
    g.alloc.kswapd()  # what the workload's tick runs
    assert g.alloc.kswapd_highest_zoneidx == {}
    assert g.alloc.stats.reclaimed_pages == 0 and g.alloc.swap.pswpout == 0 and woken == []


def test_kswapd_is_not_woken_while_every_zone_is_between_low_and_high():
    """Only the slow path wakes kswapd: zones between their low and high watermarks serve allocations from the
    fast path, and a kswapd nobody woke reclaims nothing (balance_pgdat() runs only after wakeup_kswapd())."""
    g, normal, dma32 = _guest()
    # (a user allocation leaves DMA32 its lowmem_reserve[ZONE_MOVABLE] on top of the watermark: Normal // 256)
    _set_free(normal, normal.wmark_low + normal.lowmem_reserve[USER_ZONEIDX] + 1)
    _set_free(dma32, dma32.wmark_low + dma32.lowmem_reserve[USER_ZONEIDX] + 100)
    assert dma32.free < dma32.wmark_high + dma32.lowmem_reserve[USER_ZONEIDX]
    assert g.alloc.alloc(0, 50, Gfp.USER) == 50
    g.alloc.kswapd()
    assert g.alloc.stats.reclaimed_pages == 0 and g.alloc.kswapd_highest_zoneidx == {}


def test_kswapd_stops_when_one_zone_reaches_high():
    """An allocation that finds no zone above low wakes kswapd (__alloc_pages_slowpath(), wake_all_kswapds());
    balance_pgdat() (6.12.118 mm/vmscan.c:6867) stops at the first pgdat_balanced(): one zone above its high
    watermark plus its lowmem_reserve for the wake-up's highest zone. Normal, which holds nothing reclaimable here,
    stays below its low watermark."""
    g, normal, dma32 = _guest()
    dma32.pagecache += normal.pagecache  # all the page cache in DMA32: Normal's pages are anon
    normal.anon += normal.pagecache
    normal.pagecache = 0
    _set_free(normal, normal.wmark_min + 10)
    _set_free(dma32, dma32.wmark_min + 10)
    woken = []
    g.alloc.on_pressure = lambda: woken.append(1)
    assert g.alloc.alloc(0, 1, Gfp.USER) == 1
    assert woken == [1]
    reserve = dma32.lowmem_reserve[USER_ZONEIDX]
    assert dma32.free > dma32.wmark_high + reserve
    assert normal.free < normal.wmark_low
    assert g.alloc.pgdat_balanced(0, ZoneType.MOVABLE)
    assert g.alloc.kswapd_highest_zoneidx == {}  # balanced: back to sleep
    # balance_pgdat()'s priority loop: each kswapd_shrink_node() pass scans the LRU's size >> priority, from
    # DEF_PRIORITY (1/4096) up, about twice the last, and pgdat_balanced() is checked before each: kswapd stops
    # less than what it needed above the high watermark, not a whole nr_to_reclaim (the high watermarks' sum) on
    needed = dma32.wmark_high + reserve + 1 - (dma32.wmark_min + 10 - 1)
    step = sum(max(z.wmark_high, 32) for z in g.alloc.iter_zones() if z.managed)
    reclaimed = g.alloc.stats.reclaimed_pages
    assert needed <= reclaimed < 2 * needed and reclaimed < step, (needed, reclaimed, step)


def test_a_kswapd_run_tells_the_owners_of_its_swapped_pages_once_per_zone():
    """kswapd's run is many small passes (its priority loop); the owners of the anon pages it sends to swap learn of
    them once per zone when it is done (the rmap callback), all of them: the reverse map the workload keeps must
    match the zones' counters. A run that finds nothing it can reclaim (swap full) stops at once, balanced or not."""
    g, normal, dma32 = _guest()
    for z in (normal, dma32):  # anon only: the page cache becomes anon, so kswapd must swap
        z.anon += z.pagecache
        z.pagecache = 0
    g.alloc.swap.slots = 1 << 20
    calls: list[tuple[ZoneType, int]] = []
    g.alloc.rmap = lambda z, n: calls.append((z.type, n))
    _set_free(normal, normal.wmark_min + 10)
    _set_free(dma32, dma32.wmark_min + 10)
    assert g.alloc.alloc(0, 1, Gfp.USER) == 1
    assert g.alloc.pgdat_balanced(0, ZoneType.MOVABLE)
    assert calls and len(calls) == len({zt for zt, _ in calls})  # one call per zone
    assert sum(n for _, n in calls) == g.alloc.stats.pswpout_kswapd == g.alloc.swap.used > 0
    # swap full: nothing reclaimable, the run ends unbalanced without touching anything
    g.alloc.swap.slots = g.alloc.swap.used
    _set_free(dma32, dma32.wmark_min + 10)
    _set_free(normal, normal.wmark_min + 10)
    before = (len(calls), g.alloc.stats.reclaimed_pages)
    assert g.alloc.balance_pgdat(0, ZoneType.MOVABLE) is False
    assert (len(calls), g.alloc.stats.reclaimed_pages) == before
