"""lowmem_reserve in the allocator's watermark checks: __zone_watermark_ok() (Debian 6.12.118 mm/page_alloc.c:3207,
7.3.4:3608) fails a zone when `free_pages <= min + z->lowmem_reserve[highest_zoneidx]`, so an allocation that falls
back from a higher zone leaves each lower zone its reserve against that zone: managed pages of the zones between
them and the allocation's highest zone, divided by sysctl_lowmem_reserve_ratio = {DMA 256, DMA32 256, Normal 32}
(setup_per_zone_lowmem_reserve())."""

from __future__ import annotations

from kmodel_helpers import add_backed, make_guest, online_all

from balloonsim.kernel.page_alloc import Gfp
from balloonsim.kernel.zone import ZoneType
from balloonsim.units import GiB


def _zones(g):
    return (g.alloc.zones[(0, t)] for t in (ZoneType.MOVABLE, ZoneType.NORMAL, ZoneType.DMA32))


def test_user_pages_leave_normal_its_reserve_against_movable():
    """4 GiB guest plus 8 GiB onlined movable: GFP_HIGHUSER_MOVABLE (highest_zoneidx ZONE_MOVABLE) takes Movable down
    to its min watermark, Normal down to min + Movable/32 (65,536 pages here) and DMA32 down to min +
    (Normal + Movable)/256; nothing to reclaim, so that is all it gets."""
    g = make_guest(boot=[4 * GiB])
    add_backed(g, 0, 8 * GiB, 8 * GiB)
    online_all(g, "online_movable")
    movable, normal, dma32 = _zones(g)
    assert movable.managed // 32 >= 65000
    expected = (
        movable.free
        - movable.wmark_min
        + normal.free
        - (normal.wmark_min + movable.managed // 32)
        + dma32.free
        - (dma32.wmark_min + (normal.managed + movable.managed) // 256)
    )
    assert g.alloc.alloc(0, 10 * expected, Gfp.USER, partial=True) == expected
    assert movable.free == movable.wmark_min
    assert normal.free == normal.wmark_min + movable.managed // 32
    assert dma32.free == dma32.wmark_min + (normal.managed + movable.managed) // 256


def test_kernel_pages_leave_dma32_its_reserve_against_normal_only():
    """GFP_KERNEL (highest_zoneidx ZONE_NORMAL) on the same guest: Normal down to its min watermark (its reserve
    against itself is 0), DMA32 down to min + Normal/256; Movable's pages do not count for a kernel allocation."""
    g = make_guest(boot=[4 * GiB])
    add_backed(g, 0, 8 * GiB, 8 * GiB)
    online_all(g, "online_movable")
    movable, normal, dma32 = _zones(g)
    expected = normal.free - normal.wmark_min + dma32.free - (dma32.wmark_min + normal.managed // 256)
    movable_free = movable.free
    assert g.alloc.alloc(0, 10 * expected, Gfp.KERNEL, partial=True) == expected
    assert normal.free == normal.wmark_min
    assert dma32.free == dma32.wmark_min + normal.managed // 256
    assert movable.free == movable_free


def test_kswapd_balances_normal_only_above_high_plus_its_reserve():
    """pgdat_balanced() uses zone_watermark_ok_safe(zone, order, high_wmark_pages(zone), highest_zoneidx)
    (6.12.118 mm/vmscan.c:6694, 7.3.4:6968): for a user wake-up, Normal above its high watermark but within its
    reserve against Movable does not balance the node."""
    g = make_guest(boot=[4 * GiB])
    add_backed(g, 0, 8 * GiB, 8 * GiB)
    online_all(g, "online_movable")
    movable, normal, dma32 = _zones(g)
    for z, free in ((movable, movable.wmark_min), (dma32, dma32.wmark_min), (normal, normal.wmark_high + 1000)):
        k = z.free - free
        z.take(k)
        z.anon += k
    assert not g.alloc.pgdat_balanced(0, ZoneType.MOVABLE)
    assert g.alloc.pgdat_balanced(0, ZoneType.NORMAL)  # a kernel allocation's wake-up: Normal is enough
