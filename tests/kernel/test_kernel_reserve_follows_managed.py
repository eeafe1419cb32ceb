"""adjust_managed_page_count() and the lowmem reserves: from 6.13 ("mm: page_alloc: fix missed updates of
lowmem_reserve in adjust_managed_page_count", 9726891fe753; Debian 7.3.4 mm/page_alloc.c:6449) it calls
setup_per_zone_lowmem_reserve(), which ends in calculate_totalreserve_pages(); 6.12.118 (mm/page_alloc.c:5938)
only moves managed_pages and totalram_pages. So a balloon's pages (hv_balloon alloc_balloon_pages(), Xen's
balloon_append()) and pages a driver fake-onlines later (hv_page_online_one() -> generic_online_page() ->
__free_pages_core(MEMINIT_HOTPLUG)) move ZONE_DMA32's reserve against Normal and MemAvailable at once from 6.13;
before, both keep the values of the last online/offline (init_per_zone_wmark_min()) until the next one."""

from __future__ import annotations

import pytest
from kmodel_helpers import add_backed, make_guest, online_all

from balloonsim.kernel.meminfo import mem_available
from balloonsim.kernel.page_alloc import KERNEL_ZONEIDX, Gfp
from balloonsim.kernel.zone import ZoneType
from balloonsim.units import GiB, MiB

BALLOON = 512 * MiB >> 12  # pages


def _guest(kernel: str):
    """4 GiB at boot (DMA32 below 4 GiB, Normal above) plus 4 GiB onlined to ZONE_NORMAL."""
    g = make_guest(boot=[4 * GiB], kernel=kernel)
    add_backed(g, 0, 8 * GiB, 4 * GiB)
    online_all(g, "online_kernel")
    return g


def _dma32_reserve(g) -> int:
    return g.alloc.zones[(0, ZoneType.DMA32)].lowmem_reserve[KERNEL_ZONEIDX]


def _expected_reserve(g) -> int:
    """setup_per_zone_lowmem_reserve() for DMA32 against Normal, from today's managed pages."""
    return g.alloc.zones[(0, ZoneType.NORMAL)].managed // 256


@pytest.mark.parametrize(("kernel", "follows"), [("6.12", False), ("6.18", True)])
def test_balloon_pages_move_the_reserve_and_memavailable_from_613(kernel, follows):
    g = _guest(kernel)
    reserve0, total0 = _dma32_reserve(g), g.alloc.totalreserve
    assert reserve0 == _expected_reserve(g)  # onlining ran init_per_zone_wmark_min() in both releases
    assert g.alloc.alloc(0, BALLOON, Gfp.BALLOON) == BALLOON  # a balloon takes 512 MiB, from Normal
    assert g.alloc.zones[(0, ZoneType.NORMAL)].managed < g.alloc.zones[(0, ZoneType.NORMAL)].present
    if follows:
        assert _dma32_reserve(g) == _expected_reserve(g) == reserve0 - BALLOON // 256
        assert g.alloc.totalreserve == g.alloc._totalreserve() < total0  # noqa: SLF001
    else:
        assert _dma32_reserve(g) == reserve0 != _expected_reserve(g)
        assert g.alloc.totalreserve == total0
    g.alloc.free(g.alloc.zones[(0, ZoneType.NORMAL)], BALLOON, "balloon")  # the balloon deflates
    assert _dma32_reserve(g) == reserve0 and g.alloc.totalreserve == total0


def test_memavailable_counts_the_reserve_a_balloon_gave_back_only_from_613():
    """The same balloon on both releases: MemAvailable (si_mem_available(): free - totalreserve_pages + ...) is
    higher on 6.18 by exactly the reserve the smaller Normal zone no longer asks of DMA32."""
    old, new = _guest("6.12"), _guest("6.18")
    for g in (old, new):
        assert g.alloc.alloc(0, BALLOON, Gfp.BALLOON) == BALLOON
    assert mem_available(new.alloc) - mem_available(old.alloc) == old.alloc.totalreserve - new.alloc.totalreserve > 0


@pytest.mark.parametrize(("kernel", "follows"), [("6.12", False), ("6.18", True)])
def test_pages_a_driver_onlines_later_move_the_reserve_from_613(kernel, follows):
    """A block onlined with most of its pages kept out (as hv_online_page() keeps a region's unbacked pages),
    whose pages the driver hands to the buddy allocator later (generic_online_page())."""
    g = make_guest(boot=[4 * GiB], kernel=kernel)
    add_backed(g, 0, 8 * GiB, 1 * GiB)
    block = g.blocks[min(g.blocks)]
    half = block.start_pfn + block.nr_pages // 2
    g.online_page_callback = lambda _g, _b, span: [(s, min(e, half)) for s, e in span if s < half]
    assert g.online_memory_block(block.id, "online_kernel") == 0
    reserve0, total0 = _dma32_reserve(g), g.alloc.totalreserve
    assert g.generic_online_page(block, half, block.end_pfn) == block.end_pfn - half
    if follows:
        assert _dma32_reserve(g) == _expected_reserve(g) > reserve0
        assert g.alloc.totalreserve > total0
    else:
        assert (_dma32_reserve(g), g.alloc.totalreserve) == (reserve0, total0)
        assert _expected_reserve(g) > reserve0
