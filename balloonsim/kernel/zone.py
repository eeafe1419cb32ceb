"""Zones and their counters: what /proc/zoneinfo would show, kept as integers (pages).

Free memory is split into whole free pageblocks (`free_pmd`, 2 MiB each, what an order-9
vmemmap_alloc_block() needs) and fragmented base pages (`free_base`). That split is the whole
fragmentation model: base-page allocations eat fragments first, bulk frees return whole
pageblocks, page-cache reclaim returns fragments.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from balloonsim.kernel.online_order import OnlineOrder
from balloonsim.units import PMD_PAGES, div_round_up


class HotBlock(Protocol):
    """What a zone (and an allocation that landed in it) knows of a hot-added memory block online there: a
    balloonsim.kernel.block.MemoryBlock, seen without importing it."""

    unmovable: int  # unmovable kernel pages that landed in it

    @property
    def id(self) -> int: ...

    @property
    def managed(self) -> int: ...


class ZoneType(StrEnum):
    DMA = "DMA"  # the first 16 MiB (MAX_DMA_PFN), CONFIG_ZONE_DMA as every distribution kernel has it
    DMA32 = "DMA32"
    NORMAL = "Normal"
    MOVABLE = "Movable"

    @property
    def is_kernel(self) -> bool:
        """Kernel zones can hold unmovable allocations (memmap, page tables, slab)."""
        return self is not ZoneType.MOVABLE


class Zone:
    __slots__ = (
        "nid",
        "type",
        "movable",
        "present",
        "managed",
        "free_pmd",
        "free_base",
        "pagecache",
        "anon",
        "kernel",
        "wmark_min",
        "wmark_low",
        "wmark_high",
        "lowmem_reserve",
        "span_start",
        "span_end",
        "boot_present",
        "hot",
        "hot_managed",
    )

    def __init__(self, nid: int, ztype: ZoneType):
        self.nid = nid
        self.type = ztype
        self.movable = ztype is ZoneType.MOVABLE  # ZONE_MOVABLE (a zone's type never changes)
        self.present = 0  # pages present (spanned and not holes), incl. self-hosted vmemmap
        self.boot_present = 0  # of which boot memory's (present_early_pages)
        self.managed = 0  # pages handed to the buddy allocator (MemTotal)
        self.free_pmd = 0  # free, naturally aligned 2 MiB pageblocks
        self.free_base = 0  # free pages not forming a whole free pageblock
        self.pagecache = 0  # reclaimable
        self.anon = 0  # workload memory (movable)
        self.kernel = 0  # unmovable kernel allocations (memmap via kmalloc path, page tables, slab)
        self.wmark_min = 0
        self.wmark_low = 0
        self.wmark_high = 0
        # lowmem_reserve[j]: free pages an allocation whose highest zone has index j leaves here on top of the
        # watermark (setup_per_zone_lowmem_reserve(); indexes DMA, DMA32, Normal, Movable)
        self.lowmem_reserve = [0, 0, 0, 0]
        self.span_start: int | None = None
        self.span_end: int | None = None
        # hot-added blocks online in this zone, in onlining order, and their pages in the buddy allocator:
        # where an unmovable allocation lands inside the zone (balloonsim.kernel.unmovable)
        self.hot: OnlineOrder[HotBlock] = OnlineOrder()
        self.hot_managed = 0

    @property
    def free(self) -> int:
        return self.free_pmd * PMD_PAGES + self.free_base

    @property
    def used(self) -> int:
        return self.pagecache + self.anon + self.kernel

    def take(self, n: int) -> int:
        """Remove n free base pages: fragments first, then split pageblocks. Returns pageblocks split."""
        free_base = self.free_base
        if n <= free_base:  # the fragments are enough (the common case: no pageblock is split)
            self.free_base = free_base - n
            return 0
        rest = n - free_base
        split = div_round_up(rest, PMD_PAGES)
        self.free_pmd -= split
        self.free_base = split * PMD_PAGES - rest
        return split

    def untake(self, n: int, split: int) -> None:
        """Undo the latest take(n) that split `split` pageblocks: its fragments merge back."""
        if self.free_base + n - split * PMD_PAGES >= 0:
            self.free_pmd += split
            self.free_base += n - split * PMD_PAGES
        else:  # the leftover fragments were used meanwhile
            self.give(n, contiguous=False)

    def give(self, n: int, contiguous: bool) -> None:
        """Return n pages to the free lists; contiguous runs merge back into pageblocks."""
        if contiguous:
            self.free_pmd += n // PMD_PAGES
            free_base = self.free_base + n % PMD_PAGES
        else:
            free_base = self.free_base + n
        # The buddy allocator merges freed fragments; a zone whose fragments exceed what fits in its
        # free pageblocks still ends up with some whole blocks. One block per 4 (free_base // 2048) is
        # the model's coalescing rate for scattered frees.
        if free_base >= 4 * PMD_PAGES:
            merged = free_base // (4 * PMD_PAGES)
            self.free_pmd += merged
            free_base -= merged * PMD_PAGES
        self.free_base = free_base

    def extend_span(self, start: int, end: int) -> None:
        self.span_start = start if self.span_start is None else min(self.span_start, start)
        self.span_end = end if self.span_end is None else max(self.span_end, end)

    def shrink_span(self, start: int, end: int, online: list[tuple[int, int]]) -> None:
        """shrink_zone_span() (mm/memory_hotplug.c; called from offline_pages() -> remove_pfn_range_from_zone()
        since 5.5, d33695b16a9f "mm/memory_hotplug: shrink zones when offlining memory"): [start, end) left the
        zone. If it was the zone's first range, the zone now starts at its first online pfn after `end`
        (find_smallest_section_pfn()); else if it was the last, the zone ends after its last online pfn before
        `start` (find_biggest_section_pfn()); a range in the middle changes nothing. With nothing online left
        the zone spans nothing (zone_start_pfn = 0, spanned_pages = 0). `online`: the zone's ranges still online.
        """
        if self.span_start is None or self.span_end is None:
            return
        if self.span_start == start:
            after = [s for s, e in online if s >= end and s < self.span_end]
            self.span_start = min(after) if after else None
        elif self.span_end == end:
            before = [e for s, e in online if e <= start and e > self.span_start]
            self.span_end = max(before) if before else None
        if self.span_start is None or self.span_end is None:
            self.span_start = self.span_end = None

    def intersects(self, start: int, end: int) -> bool:
        """zone_intersects(): the range overlaps the zone's span."""
        if self.span_start is None or self.span_end is None or self.present == 0:
            return False
        return start < self.span_end and end > self.span_start

    def __repr__(self) -> str:
        return f"Zone(node{self.nid} {self.type.value} present={self.present} managed={self.managed} free={self.free})"
