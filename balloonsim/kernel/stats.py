"""The guest kernel's counters that the simulation turns into metrics (shared by the guest and its vmemmap)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GuestStats:
    """Counters the simulation turns into metrics."""

    add_calls: int = 0
    add_ok: int = 0
    add_errors: dict[int, int] = field(default_factory=dict)
    base_page_fallbacks: int = 0  # sections whose vmemmap fell back to 4 KiB pages
    memmap_fallbacks: int = 0  # altmap requested but the ordinary memmap was used
    altmap_waste_pages: int = 0  # force mode: pageblock rounding of the memmap
    memmap_kmalloc_pages: int = 0  # currently allocated via the kmalloc path
    memmap_remote_pages: int = 0
    memmap_in_range_pages: int = 0
    memmap_leaked_pages: int = 0  # freed memmap the kernel never gave back (6.18: pagetable_free() of a PMD block)
    # memmap of sections a failed add_memory() left behind (__add_pages() stopped at a later section), never freed
    memmap_stale_pages: int = 0
    pagetable_pages: int = 0
    metadata_bytes: int = 0
    offline_ebusy: int = 0
    offline_eintr: int = 0  # offline_pages() kept retrying the migration until the caller gave up
