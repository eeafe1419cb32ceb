"""Memory blocks (/sys/devices/system/memory/memoryN) and where each one's memmap lives."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from balloonsim.kernel.extents import Extents
from balloonsim.kernel.memory_group import MemoryGroup
from balloonsim.kernel.zone import Zone, ZoneType

if TYPE_CHECKING:
    from balloonsim.kernel.page_alloc import Take


class BlockState(StrEnum):
    OFFLINE = "offline"
    ONLINE = "online"


@dataclass(eq=False, slots=True)
class VmemAltmap:
    """struct vmem_altmap (include/linux/memremap.h): pfns of hot-added memory set aside for struct pages.

    [base_pfn, base_pfn + free) is reserved when the altmap is made. altmap_alloc_block_buf() hands out
    pages from base_pfn + alloc and vmem_altmap_free() gives them back (alloc -= nr). `refcount` counts the
    sections whose memmap was carved here. With `refcounted` (the 2018 RFC: vmem_altmap::flush_alloc_pfns =
    mark_vmemmap_pages) each of those sections holds a reference on the first vmemmap page, and hot-remove
    defers vmemmap_free() until the last reference goes, then frees backwards, "because the beginning of
    memory is used for the pagetables".
    """

    base_pfn: int
    free: int
    refcounted: bool = False
    alloc: int = 0
    refcount: int = 0
    freed: bool = False  # kfree(altmap): the range that held it was removed (or its add undone)

    @property
    def end_pfn(self) -> int:
        """First pfn past the reserved pages."""
        return self.base_pfn + self.free


@dataclass(slots=True)
class Memmap:
    """Where the struct pages of one memory block live (its sections' vmemmap backing)."""

    pages: int  # struct-page pages describing the block (nr_pages * 64 / 4096)
    altmap: VmemAltmap | None = None  # None: the ordinary memmap, from online memory
    # ordinary memmap: the pieces taken from online memory (zone, pages, 2 MiB or not, the hot-added block they
    # landed in), so hot-remove gives each back where it came from (a tuple: an altmap's memmap has none)
    pieces: tuple[Take, ...] = ()
    remote_pages: int = 0  # ordinary memmap pages not on the block's node
    pte_pages: int = 0  # page-table pages for base-page (4 KiB) vmemmap fallback
    base_fallback_sections: int = 0
    in_range: Extents = field(default_factory=Extents)  # pfns of hot-added memory holding the memmap
    host_blocks: tuple[int, ...] = ()  # blocks whose pfns are in `in_range`

    @property
    def kind(self) -> str:
        """ "kmalloc" (vmemmap_populate() without an altmap) or "altmap" (carved from hot-added memory)."""
        return "kmalloc" if self.altmap is None else "altmap"

    @property
    def kmalloc_pages(self) -> int:
        return sum(t.pages for t in self.pieces)

    @property
    def landed_in(self) -> set[int]:
        """Hot-added blocks holding pieces of this ordinary memmap (unmovable there)."""
        return {t.block.id for t in self.pieces if t.block is not None}


class MemoryBlock:
    """One memory block: the unit of onlining, offlining and removal."""

    __slots__ = (
        "id",
        "start_pfn",
        "nr_pages",
        "nid",
        "state",
        "zone",
        "backed",
        "exposed",
        "vmemmap_pfns",
        "memmap",
        "unmovable",
        "group",
        "withheld_offlinable",
        "online_type",
        "altmaps",
        "memory_group",
    )

    def __init__(
        self,
        block_id: int,
        start_pfn: int,
        nr_pages: int,
        nid: int,
        group: int,
        memory_group: MemoryGroup | None = None,
    ):
        self.id = block_id
        self.start_pfn = start_pfn
        self.nr_pages = nr_pages
        self.nid = nid
        self.state = BlockState.OFFLINE
        self.zone: Zone | None = None
        self.backed = Extents()  # populated by the hypervisor (absolute pfns)
        self.exposed = Extents()  # given to the buddy allocator (managed)
        self.vmemmap_pfns = Extents()  # pfns of this block that hold memmap (own or others')
        self.memmap: Memmap | None = None
        self.unmovable = 0  # pinning pages that landed here: memmaps, page tables, slab, the background, balloons
        self.group = group  # the add_memory() call that added it
        self.withheld_offlinable = False  # virtio-mem lets its fake-offline pages go on offline
        self.online_type: str | None = None
        self.altmaps: tuple[VmemAltmap, ...] = ()  # altmaps reserving pfns of this block (mem->altmap)
        self.memory_group = memory_group  # the driver's memory group (a DIMM, a virtio-mem device), 5.15+

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.nr_pages

    @property
    def online_span(self) -> Extents:
        """Pages that online_pages() hands to the callback: the block minus vmemmap pages."""
        return self.vmemmap_pfns.complement(self.start_pfn, self.end_pfn)

    @property
    def managed(self) -> int:
        return self.exposed.total

    @property
    def withheld(self) -> int:
        """Present but not handed to the buddy allocator: fake-offline (PageOffline) pages."""
        if self.state is not BlockState.ONLINE:
            return 0
        return self.nr_pages - self.vmemmap_pfns.total - self.exposed.total

    @property
    def unbacked(self) -> int:
        return self.nr_pages - self.backed.total

    @property
    def online_zone(self) -> Zone:
        """The zone an online block's pages are in; an offline block has none."""
        if self.zone is None:
            raise ValueError(f"memory{self.id} is not online")
        return self.zone

    @property
    def reonline_type(self) -> str | None:
        """The type offline_and_remove_memory() puts this block back online with if the removal fails: sensed
        from its zone, not the type it was onlined with (try_offline_memory_block(), mm/memory_hotplug.c,
        5.8-7.3): a block onlined with "online" comes back in the zone it was in, whatever the policy would
        pick now. None when offline."""
        if self.zone is None:
            return None
        return "online_movable" if self.zone.type is ZoneType.MOVABLE else "online_kernel"

    @property
    def is_kernel_zone(self) -> bool:
        return self.zone is not None and self.zone.type is not ZoneType.MOVABLE

    def __repr__(self) -> str:
        return (
            f"MemoryBlock(memory{self.id} node{self.nid} {self.state.value} "
            f"zone={self.zone.type.value if self.zone else None} backed={self.backed.total} "
            f"exposed={self.exposed.total} vmemmap={self.vmemmap_pfns.total})"
        )
