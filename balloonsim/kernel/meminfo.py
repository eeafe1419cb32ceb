"""What /proc/meminfo, /proc/vmstat and /proc/zoneinfo would show, computed from the counters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from balloonsim.kernel.block import BlockState, MemoryBlock
from balloonsim.kernel.page_alloc import PageAllocator
from balloonsim.kernel.profiles import KernelProfile
from balloonsim.kernel.stats import GuestStats
from balloonsim.units import PAGE_SIZE


@dataclass(frozen=True)
class Meminfo:
    """Pages unless the name says kB. `*_kb` fields are what /proc/meminfo prints."""

    MemTotal_kb: int
    MemFree_kb: int
    MemAvailable_kb: int
    Cached_kb: int
    AnonPages_kb: int
    present_pages: int  # zoneinfo "present", all nodes
    managed_pages: int  # zoneinfo "managed" (= MemTotal)
    free_pages: int
    kernel_pages: int  # unmovable kernel allocations: kmalloc-path memmap, page tables, slab
    memmap_kmalloc_pages: int  # hot-added memmap in online memory
    memmap_in_range_pages: int  # hot-added memmap inside hot-added memory (vmemmap self-hosted)
    vmemmap_pages: int  # pages of hot-added blocks reserved for vmemmap (incl. pool/force waste)
    nr_memmap_pages: int | None  # /proc/vmstat nr_memmap_pages (6.11+), else None
    nr_memmap_boot_pages: int | None
    withheld_pages: int  # fake-offline: present, online, not handed to the buddy allocator
    ballooned_pages: int  # taken out of the buddy allocator by a balloon (not managed any more)
    blocks_added: int
    blocks_online: int
    free_pmd_blocks: int  # free 2 MiB pageblocks

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class MemorySource(Protocol):
    """What /proc/meminfo reads: the zones' counters, the memory blocks and the kernel's own counters
    (a Guest; a protocol so that this module needs nothing from guest.py)."""

    @property
    def alloc(self) -> PageAllocator: ...
    @property
    def blocks(self) -> Mapping[int, MemoryBlock]: ...
    @property
    def stats(self) -> GuestStats: ...
    @property
    def profile(self) -> KernelProfile: ...
    @property
    def boot_memmap_pages(self) -> int: ...


def si_mem_available(free: int, totalreserve: int, pagecache: int, wmark_low: int) -> int:
    """si_mem_available() (mm/show_mem.c; mm/page_alloc.c before 6.2): free pages above totalreserve_pages (high
    watermarks plus lowmem reserves), plus the page cache minus the smaller of half of it and the low watermarks
    (the model has no reclaimable slab)."""
    return max(0, free - totalreserve + pagecache - min(pagecache // 2, wmark_low))


def vm_memory_committed(alloc: PageAllocator) -> int:
    """vm_memory_committed() (mm/util.c, 6.12.118 and 7.3.4 as read): Committed_AS, the vm_committed_as counter that
    only vm_acct_memory() moves (private writable and anonymous mappings, shmem), in pages. The model's tasks map
    their whole size when they start (a worker's malloc()) and commit it there, touched or not, resident or on
    swap (PageAllocator.vm_acct_memory()); kernel allocations (memmap, slab, page tables), page cache and a
    balloon's pages are never in it."""
    return alloc.committed_as


def mem_available(alloc: PageAllocator) -> int:
    """MemAvailable, in pages, straight from the zones."""
    free = pagecache = wlow = 0
    for z in alloc.iter_zones():
        free += z.free
        pagecache += z.pagecache
        wlow += z.wmark_low
    return si_mem_available(free, alloc.totalreserve, pagecache, wlow)


def read_meminfo(guest: MemorySource, ballooned_pages: int = 0) -> Meminfo:
    a = guest.alloc
    managed = free = present = pagecache = anon = kernel = free_pmd = wlow = 0
    for z in a.iter_zones():
        managed += z.managed
        free += z.free
        present += z.present
        pagecache += z.pagecache
        anon += z.anon
        kernel += z.kernel
        free_pmd += z.free_pmd
        wlow += z.wmark_low
    withheld = vmemmap = online = 0
    for b in guest.blocks.values():
        vmemmap += b.vmemmap_pfns.total
        if b.state is BlockState.ONLINE:
            online += 1
            withheld += b.withheld
    available = si_mem_available(free, guest.alloc.totalreserve, pagecache, wlow)
    kb = PAGE_SIZE // 1024
    memmap_kmalloc = guest.stats.memmap_kmalloc_pages
    memmap_in_range = guest.stats.memmap_in_range_pages
    vmstat = guest.profile.vmstat_nr_memmap
    return Meminfo(
        MemTotal_kb=managed * kb,
        MemFree_kb=free * kb,
        MemAvailable_kb=available * kb,
        Cached_kb=pagecache * kb,
        AnonPages_kb=anon * kb,
        present_pages=present,
        managed_pages=managed,
        free_pages=free,
        kernel_pages=kernel,
        memmap_kmalloc_pages=memmap_kmalloc,
        memmap_in_range_pages=memmap_in_range,
        vmemmap_pages=vmemmap,
        # memmap_pages_add() counts every section populate_section_memmap() populated; a failed add's kept sections
        # stay counted, only the failing one's section_deactivate() takes its share back (6.12.118
        # mm/sparse-vmemmap.c l.567-586)
        nr_memmap_pages=memmap_kmalloc + memmap_in_range + guest.stats.memmap_stale_pages if vmstat else None,
        nr_memmap_boot_pages=guest.boot_memmap_pages if vmstat else None,
        withheld_pages=withheld,
        ballooned_pages=ballooned_pages,
        blocks_added=len(guest.blocks),
        blocks_online=online,
        free_pmd_blocks=free_pmd,
    )
