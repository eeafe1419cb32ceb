"""What add_memory() takes from online memory whatever the memmap strategy.

- Direct map: x86 arch_add_memory() -> init_memory_mapping() -> split_mem_range(): a PUD table per new
  512 GiB, and a 1 GiB page (direct_gbpages, the default when the CPU has pdpe1gb) only for a whole aligned
  GiB inside the range mapped; the rest of the range, and every GiB without gbpages, gets 2 MiB pages from a
  PMD table (4 KiB) per new GiB. At boot the same (adjust_range_page_size_mask()); after boot no range is
  widened, so hot-adding a 128 MiB block into a new GiB takes a PMD table whatever direct_gbpages says
  (6.12.118, 7.3.4). Tables come from alloc_low_pages() -> __get_free_pages(GFP_ATOMIC) after boot, i.e.
  online memory, charged to the add's node. A 1 GiB mapping is forgotten once none of its sections is
  mapped; the kernel keeps it until the whole GiB goes in one removal, and splits it (a PMD table) when a
  part is added again (not modelled). 6.8+ memmap_on_memory calls arch_add_memory() per memory block
  (create_altmaps_and_memory_blocks()): an aligned 1 GiB DIMM is then mapped 128 MiB at a time, with 2 MiB
  pages from a PMD table, never a 1 GiB page (Guest._add_memory() maps block by block when the strategy says
  so: MemmapStrategy.maps_per_block()).
- vmemmap page tables: vmemmap_alloc_block_zero(PAGE_SIZE, node), never the altmap (kernel-facts.md
  section 1): one PMD table per 1 GiB of vmemmap (= 64 GiB of memory), one PUD table per 512 GiB of
  vmemmap, and one PTE table per 2 MiB mapped with base pages (charged by the kmalloc path).
  remove_pagetable() frees a table once nothing maps through it: tables are refcounted by region.
- Per-block and per-section metadata, kzalloc'ed: struct memory_block with its struct device
  (kmalloc-1k slab; sizeof is ~900 B on a 6.x defconfig: an estimate, see the note), mem_section_usage
  per section (subsection bitmap 8 B + 4 pageblock bits x 64 = 40 B -> kmalloc-64), a mem_section root
  (4 KiB, 256 sections) per new 32 GiB with SPARSEMEM_EXTREME (never freed), and the "System RAM"
  resource plus its firmware-map entry per add_memory() call (~256 B).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from balloonsim.units import PAGES_PER_SECTION, PUD_PAGES, GiB

TableKey = tuple[str, int]  # (the table's level and kind, the region it maps)

_PUD_TABLES = frozenset({"direct_pud", "vmemmap_pud"})
MEMORY_BLOCK_BYTES = 1024
SECTION_USAGE_BYTES = 64
SECTION_ROOT_SECTIONS = 256
SECTION_ROOT_BYTES = 4096
RESOURCE_BYTES = 256


@dataclass
class PageTables:
    """Page-table pages by the region each maps; a count per region says when a table can go."""

    direct_gbpages: bool
    direct_pmd: Counter = field(default_factory=Counter)  # 1 GiB phys region mapped by 2 MiB pages -> sections
    # 512 GiB phys region -> sections mapped (1 for an empty table a removal kept: unmap_sections(keep_pud))
    direct_pud: Counter = field(default_factory=Counter)
    direct_gb: Counter = field(default_factory=Counter)  # 1 GiB phys region mapped by a 1 GiB page -> sections
    vmemmap_pmd: Counter = field(default_factory=Counter)  # 64 GiB phys region (1 GiB of VA) -> sections
    vmemmap_pud: Counter = field(default_factory=Counter)  # 32 TiB phys region (512 GiB of VA) -> the same
    section_roots: set[int] = field(default_factory=set)

    def map_sections(self, start_pfn: int, nr_pages: int, struct_page_size: int) -> list[TableKey]:
        """Account mapping [start, start+nr) in the direct map and vmemmap; returns the tables it creates."""
        new: list[TableKey] = []
        whole = self._whole_gibs(start_pfn, nr_pages)
        for sec_pfn in range(start_pfn, start_pfn + nr_pages, PAGES_PER_SECTION):
            gib = sec_pfn // PUD_PAGES
            if gib in whole or self.direct_gb[gib]:
                self.direct_gb[gib] += 1
            new += self._ref(self._regions(sec_pfn, struct_page_size), +1)
        return new

    def unmap_sections(
        self, start_pfn: int, nr_pages: int, struct_page_size: int, keep_pud: bool = False
    ) -> list[TableKey]:
        """Returns the tables that became empty and were freed. `keep_pud`: remove_pagetable() with 4-level paging,
        whose remove_p4d_table() frees an empty PUD table only `if (pgtable_l5_enabled())` (arch/x86/mm/init_64.c,
        6.12.118 l.1240-1246), for the direct map and the vmemmap alike. The emptied table keeps a count of 1, so
        that the next hot-add of its region finds it instead of allocating another."""
        freed: list[TableKey] = []
        for sec_pfn in range(start_pfn, start_pfn + nr_pages, PAGES_PER_SECTION):
            regions = self._regions(sec_pfn, struct_page_size)
            if keep_pud:
                regions = [r for r in regions if not (r[0] in _PUD_TABLES and r[1][r[2]] == 1)]
            freed += self._ref(regions, -1)
            gib = sec_pfn // PUD_PAGES
            if self.direct_gb[gib]:
                self.direct_gb[gib] -= 1
                if not self.direct_gb[gib]:
                    del self.direct_gb[gib]
        return freed

    def unmap_vmemmap(self, start_pfn: int, nr_pages: int, struct_page_size: int) -> list[TableKey]:
        """Drop only the vmemmap's share of [start, start+nr), keeping the direct map: a failed arch_add_memory()
        frees the vmemmap of the section that failed (section_activate() -> section_deactivate()) and never
        populated the later ones, while init_memory_mapping()'s direct map stays. Returns the tables freed."""
        freed: list[TableKey] = []
        for sec_pfn in range(start_pfn, start_pfn + nr_pages, PAGES_PER_SECTION):
            vmemmap = [r for r in self._regions(sec_pfn, struct_page_size) if r[0].startswith("vmemmap")]
            freed += self._ref(vmemmap, -1)
        return freed

    def _whole_gibs(self, start_pfn: int, nr_pages: int) -> set[int]:
        """The aligned GiBs split_mem_range() maps with 1 GiB pages: those wholly inside the range."""
        if not self.direct_gbpages:
            return set()
        first = -(-start_pfn // PUD_PAGES)
        return set(range(first, (start_pfn + nr_pages) // PUD_PAGES))

    def new_section_roots(self, start_pfn: int, nr_pages: int) -> set[int]:
        """The mem_section roots [start, start+nr) needs that do not exist yet; they exist from now on."""
        first = start_pfn // PAGES_PER_SECTION // SECTION_ROOT_SECTIONS
        last = (start_pfn + nr_pages - 1) // PAGES_PER_SECTION // SECTION_ROOT_SECTIONS
        new = {r for r in range(first, last + 1)} - self.section_roots
        self.section_roots |= new
        return new

    def _regions(self, pfn: int, struct_page_size: int) -> list[tuple[str, Counter, int]]:
        va_off = pfn * struct_page_size  # offset into the vmemmap
        out = [
            ("vmemmap_pmd", self.vmemmap_pmd, va_off // GiB),
            ("vmemmap_pud", self.vmemmap_pud, va_off // (512 * GiB)),
        ]
        out.append(("direct_pud", self.direct_pud, pfn // (512 * PUD_PAGES)))
        if not self.direct_gb[pfn // PUD_PAGES]:  # (map_sections counts a 1 GiB page's sections first)
            out.append(("direct_pmd", self.direct_pmd, pfn // PUD_PAGES))
        return out

    @staticmethod
    def _ref(regions: list[tuple[str, Counter, int]], delta: int) -> list[TableKey]:
        changed: list[TableKey] = []
        for name, counter, key in regions:
            before = counter[key]
            counter[key] = before + delta
            if delta > 0 and before == 0:
                changed.append((name, key))
            elif delta < 0 and counter[key] == 0:
                del counter[key]
                changed.append((name, key))
        return changed

    def mark_boot(self, start_pfn: int, nr_pages: int, struct_page_size: int) -> None:
        """Boot memory's tables exist before any hot-add (memblock-allocated, never freed)."""
        self.map_sections(start_pfn, nr_pages, struct_page_size)
        self.new_section_roots(start_pfn, nr_pages)


def metadata_bytes(nr_blocks: int, nr_sections: int, new_roots: int) -> int:
    """All the kzalloc'd metadata of an added range."""
    return section_metadata_bytes(nr_sections, new_roots) + block_device_bytes(nr_blocks)


def section_metadata_bytes(nr_sections: int, new_roots: int) -> int:
    """What add_memory_resource() allocates before the memmap: the resource (register_memory_resource()), then
    per section its mem_section root if new (sparse_index_init()) and its usage map (section_activate())."""
    return RESOURCE_BYTES + new_roots * SECTION_ROOT_BYTES + nr_sections * SECTION_USAGE_BYTES


def block_device_bytes(nr_blocks: int) -> int:
    """What it allocates after arch_add_memory() succeeded: create_memory_block_devices() -> add_memory_block()
    kzalloc()s one struct memory_block per block."""
    return nr_blocks * MEMORY_BLOCK_BYTES
