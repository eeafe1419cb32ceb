"""The vmemmap of hot-added memory: where each section's struct pages come from (mm/sparse-vmemmap.c).

A memmap strategy (balloonsim.memmap) decides where the memmap of the blocks one add_memory() adds should
go; a `Vmemmap` is what it gets to do it, and the only thing besides read-only geometry:
- `vmemmap_populate(block)`: the ordinary memmap, as every kernel does without an altmap: per section a
  2 MiB block from online memory (vmemmap_alloc_block, node first), 4 KiB pages plus a PTE table when no
  2 MiB block is left (vmemmap_populate_basepages), -ENOMEM when even those fail (kernel-facts.md section 2).
- `vmem_altmap(base_pfn, free)` then `vmemmap_populate(block, altmap)`: the memmap carved from hot-added
  pfns (altmap_alloc_block_buf), which the guest must have backed before it writes them (section 3).
- `memmap_fallback(blocks)`: the caller asked for the altmap and got the ordinary memmap (counted).
- `savepoint()`/`rollback()`: undo a placement that failed half-way, so another can be tried.
The guest side (`SparseVmemmap`) keeps the books: the trace of vmemmap_populate/vmemmap_free, the counters,
and at hot-remove vmemmap_free() in the order try_remove_memory() walks the sections (section 3).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple, Protocol

from balloonsim.kernel.block import Memmap, MemoryBlock, VmemAltmap
from balloonsim.kernel.errno import EEXIST, EINVAL, ENOMEM
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.page_alloc import Gfp, PageAllocator, Take, Transaction
from balloonsim.kernel.profiles import KernelProfile
from balloonsim.kernel.stats import GuestStats
from balloonsim.units import (
    PAGE_SIZE,
    PAGEBLOCK_PAGES,
    PAGES_PER_SECTION,
    PMD_PAGES,
    PMD_SIZE,
    align_up,
    div_round_up,
    pfn_to_page_addr,
)

__all__ = [
    "BlockView",
    "KernelProfile",
    "MemmapPlacement",
    "OrdinaryMemmap",
    "FailedSection",
    "LeftSections",
    "Savepoint",
    "SparseVmemmap",
    "Vmemmap",
    "VmemAltmap",
    "acpi_memmap_on_memory_flag",
    "memmap_on_memory_pages",
    "mhp_supports_memmap_on_memory",
]


def memmap_on_memory_pages(block_pages: int, struct_page_size: int, force: bool) -> tuple[int, int, bool]:
    """memory_block_memmap_on_memory_pages() and its checks: (memmap pages per block, wasted pages, the block
    qualifies: vmemmap_size page aligned, the memmap pageblock aligned and not the whole block, and x86's
    arch_supports_memmap_on_memory(): the vmemmap spans whole PMDs)."""
    vmemmap_size = block_pages * struct_page_size
    nr = div_round_up(vmemmap_size, PAGE_SIZE)
    aligned = align_up(nr, PAGEBLOCK_PAGES) if force else nr
    supports = (
        vmemmap_size % PAGE_SIZE == 0
        and aligned % PAGEBLOCK_PAGES == 0
        and aligned != block_pages
        and vmemmap_size % PMD_SIZE == 0  # arch_supports_memmap_on_memory() default
    )
    return aligned, aligned - nr, supports


def mhp_supports_memmap_on_memory(profile: KernelProfile, nr_pages: int, block_pages: int, sp: int) -> bool:
    """mhp_supports_memmap_on_memory(size) with memory_hotplug.memmap_on_memory=Y: absent before 5.13; 5.13-6.7
    also require the range to be exactly one memory block (`size == memory_block_size_bytes()`); 6.8 splits a
    larger range per block (6b8f0798b85a), so any whole number of blocks qualifies."""
    if profile.memmap_on_memory == "none":
        return False
    ok = memmap_on_memory_pages(block_pages, sp, force=False)[2]
    return ok and (nr_pages == block_pages or profile.memmap_on_memory == "per-block")


def acpi_memmap_on_memory_flag(profile: KernelProfile, nr_pages: int, block_pages: int, sp: int) -> bool:
    """acpi_memory_enable_device() (drivers/acpi/acpi_memhotplug.c): does the ACPI DIMM driver pass
    MHP_MEMMAP_ON_MEMORY for a DIMM of `nr_pages`? Never before 5.13; 5.13-6.5 only
    `if (mhp_supports_memmap_on_memory(info->length))` (4a3e5de9c4ec), so a DIMM of more than one block gets
    the ordinary memmap and never -EINVAL; from 6.6 always, add_memory() deciding (e3c2bfdd33a3)."""
    if profile.acpi_memmap_flag == "always":
        return True
    if profile.acpi_memmap_flag == "if-supported":
        return mhp_supports_memmap_on_memory(profile, nr_pages, block_pages, sp)
    return False


class Savepoint(NamedTuple):
    log: int  # entries of the undo log
    takes: int  # allocations of the add's transaction


class FailedSection(NamedTuple):
    """Where the ordinary memmap stopped: the section whose sparse_add_section() failed, and the savepoint
    before it (what comes before it is the memmap of the sections __add_pages() had added)."""

    pfn: int
    mark: Savepoint


class LeftSections(NamedTuple):
    """What a failed add leaves behind: [start, end) with a memmap the kernel keeps, and its pages."""

    start: int
    end: int
    pieces: list[Take]


class BlockView(Protocol):
    """A memory block as a strategy sees it: where it is, nothing it could change."""

    @property
    def id(self) -> int: ...
    @property
    def nid(self) -> int: ...
    @property
    def start_pfn(self) -> int: ...
    @property
    def nr_pages(self) -> int: ...
    @property
    def end_pfn(self) -> int: ...


class MemmapPlacement(Protocol):
    """What add_memory() asks of a memmap strategy: place the memmap of every block it adds, 0 or -errno.

    Optional, read with getattr: `leaves_failed_sections` (see Guest._leave_sections()) and
    `maps_per_block(profile, mhp_flag, block_pages, struct_page_size)`, true when the add goes block by block
    (6.8+ create_altmaps_and_memory_blocks()), so that the direct map is made per memory block."""

    def place(
        self, vm: Vmemmap, nid: int, blocks: Sequence[BlockView], hint: Extents | None, mhp_flag: bool
    ) -> int: ...


class OrdinaryMemmap:
    """The kernel's own default: vmemmap_populate() without an altmap for every block."""

    name = "kmalloc"
    leaves_failed_sections = True  # __add_pages() section by section, no fallback: see Vmemmap.populate_ordinary()

    def place(self, vm: Vmemmap, nid: int, blocks: Sequence[BlockView], hint: Extents | None, mhp_flag: bool) -> int:
        return vm.populate_ordinary(blocks)


class SparseVmemmap:
    """The guest's vmemmap of hot-added memory: one per guest, a `Vmemmap` per add_memory() call."""

    def __init__(
        self,
        alloc: PageAllocator,
        stats: GuestStats,
        profile: KernelProfile,
        block_pages: int,
        struct_page_size: int,
        trace: list[str] | None,
    ):
        self.alloc = alloc
        self.stats = stats
        self.profile = profile
        self.block_pages = block_pages
        self.sp = struct_page_size
        self.trace = trace
        self.leaked: list[Take] = []  # memmap pages removal never freed (vmemmap_pmd_free_leaks)
        # sections a failed add_memory() left with their usage map and memmap (Guest.stale_sections): a later
        # add of them gets -EEXIST from fill_subsection_map()
        self.stale_sections = Extents()

    def memmap_pages(self, nr_pages: int) -> int:
        """Pages of struct page describing nr_pages (PFN_UP(nr * sizeof(struct page)))."""
        return div_round_up(nr_pages * self.sp, PAGE_SIZE)

    def _trace(self, line: str) -> None:
        if self.trace is not None:
            self.trace.append(line)

    # ------------------------------------------------------------------------------ hot-add ---
    def hotadd(self, blocks: Sequence[MemoryBlock], txn: Transaction) -> Vmemmap:
        """The vmemmap API for one add_memory() call of `blocks`; its allocations go into `txn`."""
        return Vmemmap(self, blocks, txn)

    def commit(self, vm: Vmemmap) -> None:
        """The add succeeded. The RFC's mark_vmemmap_pages() reported what each new refcounted altmap holds:
        the struct pages of its vmemmap pages and the sections sharing them ("This has added: ...")."""
        for altmap in vm._created:
            if altmap.refcounted and self.trace is not None:
                va0 = pfn_to_page_addr(altmap.base_pfn, self.sp)
                va1 = pfn_to_page_addr(altmap.base_pfn + altmap.alloc - 1, self.sp)
                self.trace.append(f"This has added: {va0:x} - {va1:x} (refcount: {altmap.refcount})")
        vm._closed = True

    def abort(self, vm: Vmemmap, leave_sections: bool = False) -> LeftSections | None:
        """The add failed: everything the strategy did is undone (counters stay, as the kernel's would), except,
        with `leave_sections`, the memmap of the sections before the one the ordinary memmap failed in:
        add_memory_resource() does not call arch_remove_memory() after a failed arch_add_memory(), and
        __add_pages() stopped at the failing section, which section_activate() cleaned up itself (6.12.118,
        7.3.4). Those sections' pages leave the add's transaction and are returned; None when nothing stays."""
        failed = vm._failed if leave_sections else None
        first = min(b.start_pfn for b in vm._blocks.values())
        if failed is None or failed.pfn == first:
            vm.rollback(vm._start)
            vm._closed = True
            return None
        vm.rollback(failed.mark)
        takes = vm._txn.takes
        pieces = takes[vm._start.takes : failed.mark.takes]
        del takes[vm._start.takes :]
        vm._closed = True
        return LeftSections(first, failed.pfn, pieces)

    # --------------------------------------------------------------------------- hot-remove ---
    def check_remove(self, blocks: Sequence[MemoryBlock]) -> int:
        """A refcounted altmap goes as a whole: "you can't remove half of a DIMM" (the RFC's precondition):
        the sections removed must hold every reference."""
        refs: dict[int, tuple[VmemAltmap, int]] = {}
        for b in blocks:
            altmap = b.memmap.altmap if b.memmap is not None else None
            if altmap is not None and altmap.refcounted:
                _, n = refs.get(id(altmap), (altmap, 0))
                refs[id(altmap)] = (altmap, n + b.nr_pages // PAGES_PER_SECTION)
        return -EINVAL if any(altmap.refcount != n for altmap, n in refs.values()) else 0

    def vmemmap_free(self, blocks: Sequence[MemoryBlock]) -> None:
        """section_deactivate() -> vmemmap_free() for every section of `blocks`, ascending as
        try_remove_memory() walks them; a refcounted altmap's frees wait for its last section and then
        run backwards. The ordinary memmap's pages go back to the buddy allocator (free_pagetable()), but for
        the 2 MiB blocks only their first page where the release leaks the rest (vmemmap_pmd_free_leaks); an
        altmap's pages leave with the range (vmem_altmap_free() frees nothing)."""
        tracing = self.trace is not None
        deferred: dict[int, list[int]] = {}  # id(altmap) -> sections waiting for its last reference
        for b in blocks:
            m = b.memmap
            if m is None:
                continue
            altmap = m.altmap
            sections = range(b.start_pfn, b.end_pfn, PAGES_PER_SECTION)
            if altmap is not None:
                altmap.alloc -= m.in_range.total  # vmem_altmap_free()
                altmap.refcount -= len(sections)
            if altmap is not None and altmap.refcounted:
                waiting = deferred.setdefault(id(altmap), [])
                if tracing:
                    waiting.extend(sections)
                if altmap.refcount == 0:
                    for sec in reversed(waiting):
                        self._trace_free(sec)
            elif tracing:
                for sec in sections:
                    self._trace_free(sec)
            for take in m.pieces:  # free_pagetable(): back to the zone, and the block, each piece came from
                if take.pmd and self.profile.vmemmap_pmd_free_leaks:
                    # remove_pmd_table() -> free_hugepage_table() -> free_pagetable() -> pagetable_free():
                    # __free_pages(page, compound_order(page)) of a non-compound order-9 block frees its first page
                    self.alloc.release(take, 1)
                    self.leaked.append(take)
                    self.stats.memmap_leaked_pages += take.pages
                else:
                    self.alloc.release(take)
            m.pieces = ()  # the PTE tables of base-page fallbacks were pieces too
        for b in blocks:
            for altmap in b.altmaps:
                altmap.freed = True  # kfree(altmap): its pfns left with the range

    def _trace_free(self, sec: int) -> None:
        va0 = pfn_to_page_addr(sec, self.sp)
        va1 = pfn_to_page_addr(sec + PAGES_PER_SECTION, self.sp)
        self._trace(f"vmemmap_free: start/end: {va0:x} - {va1:x}")


class Vmemmap:
    """The vmemmap API of one add_memory() call: what a memmap strategy can do, and all it can do.

    Read-only geometry: `block_pages`, `struct_page_size`, `memmap_pages_per_block`, `profile` (the
    kernel's rules). `blocks` handed to a strategy are the blocks being added; only they can get a memmap,
    and an altmap can only reserve their pfns.
    """

    def __init__(self, sparse: SparseVmemmap, blocks: Sequence[MemoryBlock], txn: Transaction):
        self._sparse = sparse
        self._blocks = {b.id: b for b in blocks}
        self._txn = txn
        self._start = Savepoint(0, len(txn.takes))  # everything this call did comes after it
        # what to undo, in order: an altmap this call made, or (block given a memmap, its altmap's alloc before)
        self._log: list[VmemAltmap | tuple[MemoryBlock, int]] = []
        self._created: list[VmemAltmap] = []  # altmaps made by this call, for the guest's books
        self._failed: FailedSection | None = None  # where the ordinary memmap last failed
        self._closed = False

    # -- geometry ---------------------------------------------------------------------------------
    @property
    def block_pages(self) -> int:
        return self._sparse.block_pages

    @property
    def struct_page_size(self) -> int:
        return self._sparse.sp

    @property
    def profile(self) -> KernelProfile:
        return self._sparse.profile

    @property
    def memmap_pages_per_block(self) -> int:
        return self._sparse.memmap_pages(self._sparse.block_pages)

    def memmap_pages(self, nr_pages: int) -> int:
        """Pages of struct page describing nr_pages."""
        return self._sparse.memmap_pages(nr_pages)

    # -- the ordinary memmap ----------------------------------------------------------------------
    def populate_ordinary(self, blocks: Sequence[BlockView]) -> int:
        """vmemmap_populate() without an altmap for each block in turn; the first error stops it, as
        __add_pages() stops at the first section whose sparse_add_section() fails. The sections before it keep
        their memmap in the kernel; add_memory() keeps them when the strategy says so (`leaves_failed_sections`,
        SparseVmemmap.abort())."""
        for b in blocks:
            err = self.vmemmap_populate(b)
            if err:
                return err
        return 0

    def memmap_fallback(self, blocks: Sequence[BlockView]) -> None:
        """MHP_MEMMAP_ON_MEMORY (or another altmap) was asked for these blocks and will not be used."""
        self._check_open()
        self._sparse.stats.memmap_fallbacks += len(blocks)

    # -- altmaps ----------------------------------------------------------------------------------
    def vmem_altmap(self, base_pfn: int, free: int, *, refcounted: bool = False, waste: int = 0) -> VmemAltmap:
        """Set aside [base_pfn, base_pfn + free) of the blocks being added for struct pages (the pages are
        present but never handed to the buddy allocator). `waste`: pages of it that will hold no struct
        page (memmap_on_memory=force rounding, "Memory hotplug will waste %ld pages in each memory block")."""
        self._check_open()
        if free <= 0:
            raise ValueError(f"an altmap needs pages, not {free}")
        end = base_pfn + free
        pieces = []
        for bid, s, e in self._ids(base_pfn, end):
            block = self._blocks.get(bid)
            if block is None:
                raise ValueError(f"altmap [{base_pfn:#x}, {end:#x}) reaches beyond the blocks being added")
            if block.vmemmap_pfns and block.vmemmap_pfns.count(s, e):
                raise ValueError(f"altmap [{base_pfn:#x}, {end:#x}) overlaps another altmap")
            pieces.append((block, s, e))
        altmap = VmemAltmap(base_pfn, free, refcounted)
        for block, s, e in pieces:
            block.vmemmap_pfns.add(s, e)
            block.altmaps += (altmap,)
        self._created.append(altmap)
        self._log.append(altmap)
        self._sparse.stats.altmap_waste_pages += waste
        return altmap

    # -- vmemmap_populate -------------------------------------------------------------------------
    def vmemmap_populate(self, block: BlockView, altmap: VmemAltmap | None = None, nr_pages: int | None = None) -> int:
        """Map the struct pages of every section of `block`: 0 or -ENOMEM.

        Without an altmap they come from online memory. With one, `nr_pages` (default: the block's memmap)
        are carved from it at its next free page (altmap_alloc_block_buf()); -ENOMEM when they do not fit.
        """
        self._check_open()
        mb = self._blocks.get(block.id)
        if mb is None:
            raise ValueError(f"memory{block.id} is not being added")
        if mb.memmap is not None:
            raise ValueError(f"memory{block.id} already has a memmap")
        if altmap is None:
            return self._populate_ordinary(mb)
        if self._sparse.stale_sections.count(mb.start_pfn, mb.end_pfn):
            return -EEXIST  # fill_subsection_map(); the model undoes the sections of the block before it
        if altmap.freed:
            raise ValueError("the altmap was freed with its range")
        start = altmap.base_pfn + altmap.alloc
        end = start + (self.memmap_pages(mb.nr_pages) if nr_pages is None else nr_pages)
        if end > altmap.end_pfn:
            return -ENOMEM  # altmap_alloc_block_buf(): "fails if the result would exceed free"
        self._take(mb, altmap, start, end)
        return 0

    def _take(self, mb: MemoryBlock, altmap: VmemAltmap, start: int, end: int) -> None:
        sp = self._sparse.sp
        bp = self._sparse.block_pages
        if (end - 1) // bp == start // bp:
            hosts: tuple[int, ...] = (start // bp,)
        else:
            hosts = tuple(bid for bid, _, _ in self._ids(start, end))
        mb.memmap = Memmap(
            pages=self.memmap_pages(mb.nr_pages), altmap=altmap, in_range=Extents.span(start, end), host_blocks=hosts
        )
        self._log.append((mb, altmap.alloc))
        altmap.alloc = end - altmap.base_pfn
        altmap.refcount += mb.nr_pages // PAGES_PER_SECTION
        if self._sparse.trace is not None and not altmap.refcounted:
            step = PMD_PAGES * PAGE_SIZE // sp  # pfns whose struct pages fill one 2 MiB vmemmap page
            for sec in range(mb.start_pfn, mb.end_pfn, step):
                va0 = pfn_to_page_addr(sec, sp)
                va1 = pfn_to_page_addr(sec + step, sp)
                self._sparse.trace.append(
                    f"vmemmap_populate: start/end: {va0:x} - {va1:x} PMD altmap pfn "
                    f"{start + (sec - mb.start_pfn) * sp // PAGE_SIZE:#x}"
                )

    def _populate_ordinary(self, block: MemoryBlock) -> int:
        """vmemmap_populate() without an altmap: a 2 MiB block per section from online memory, the block's
        node first; 4 KiB base pages plus a PTE table when no 2 MiB block is left; -ENOMEM when even base
        pages fail. Never OOM-kills (__GFP_RETRY_MAYFAIL)."""
        sparse = self._sparse
        nid = block.nid
        per_section = sparse.memmap_pages(PAGES_PER_SECTION)
        m = Memmap(pages=sparse.memmap_pages(block.nr_pages))
        pieces: list[Take] = []
        txn = self._txn
        for sec in range(block.start_pfn, block.end_pfn, PAGES_PER_SECTION):
            here = Savepoint(len(self._log), len(txn.takes))
            if sparse.stale_sections.count(sec, sec + PAGES_PER_SECTION):
                # section_activate() -> fill_subsection_map(): a failed add left this section's map set
                self._failed = FailedSection(sec, here)
                return -EEXIST
            va0 = pfn_to_page_addr(sec, sparse.sp)
            va1 = pfn_to_page_addr(sec + PAGES_PER_SECTION, sparse.sp)
            if per_section == PMD_PAGES:
                zone = sparse.alloc.alloc_pmd(nid, Gfp.VMEMMAP, txn)
                if zone is not None:
                    pieces.append(txn.takes[-1])
                    if zone.nid != nid:
                        m.remote_pages += PMD_PAGES
                    sparse._trace(f"vmemmap_populate: start/end: {va0:x} - {va1:x} PMD node {zone.nid}")
                    continue
            # vmemmap_populate_basepages(): per-page allocations plus the PTE table
            need = per_section + 1
            before = len(txn.takes)
            got = sparse.alloc.alloc_slowpath(nid, need, Gfp.VMEMMAP, txn)  # __GFP_RETRY_MAYFAIL: no OOM kill
            if got < need:
                self._failed = FailedSection(sec, here)
                return -ENOMEM
            for t in txn.takes[before:]:
                pieces.append(t)
                if t.zone.nid != nid:
                    m.remote_pages += t.pages
            m.pte_pages += 1
            m.base_fallback_sections += 1
            sparse.stats.base_page_fallbacks += 1
            sparse._trace(f"vmemmap_populate: start/end: {va0:x} - {va1:x} base pages node {nid}")
        m.pieces = tuple(pieces)
        block.memmap = m
        self._log.append((block, 0))
        return 0

    # -- undo -------------------------------------------------------------------------------------
    def savepoint(self) -> Savepoint:
        """A mark to come back to with rollback()."""
        self._check_open()
        return Savepoint(len(self._log), len(self._txn.takes))

    def ordinary_failed_since(self, mark: Savepoint) -> bool:
        """The ordinary memmap was tried after `mark` and failed (-ENOMEM, or -EEXIST over a left section)."""
        return self._failed is not None and self._failed.mark.takes >= mark.takes

    def rollback(self, mark: Savepoint) -> None:
        """Undo what was done since `mark`: memmaps, altmaps and the pages they took. Counters stay."""
        self._check_open()
        while len(self._log) > mark.log:
            entry = self._log.pop()
            if isinstance(entry, VmemAltmap):
                for bid, s, e in self._ids(entry.base_pfn, entry.end_pfn):
                    block = self._blocks[bid]
                    block.vmemmap_pfns.remove(s, e)
                    block.altmaps = tuple(a for a in block.altmaps if a is not entry)
                self._created.remove(entry)
                entry.freed = True  # whoever kept it (a node pool) sees it is gone
                continue
            block, alloc_before = entry
            m, block.memmap = block.memmap, None
            if m is not None and m.altmap is not None:
                m.altmap.alloc = alloc_before
                m.altmap.refcount -= block.nr_pages // PAGES_PER_SECTION
        if self._failed is not None and self._failed.mark.takes >= mark.takes:
            self._failed = None  # what it failed after is undone too (a chain's next link runs)
        takes = self._txn.takes
        sub = Transaction(takes[mark.takes :])
        del takes[mark.takes :]
        self._sparse.alloc.rollback(sub)

    # -- helpers ----------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this add_memory() call is over")

    def _ids(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """[start, end) cut at memory block boundaries: (block id, start, end) per piece."""
        bp = self._sparse.block_pages
        pfn = start
        while pfn < end:
            bid = pfn // bp
            seg = min(end, (bid + 1) * bp)
            yield bid, pfn, seg
            pfn = seg
