"""Where unmovable kernel allocations land, down to the hot-added memory block, and the kernel's own steady
background of them.

Zone: GFP_KERNEL allocations walk the node's zonelist from the highest kernel zone down, Normal before DMA32
(build_zonerefs_node() lists populated zones from the highest index; gfp_zone() gives ZONE_NORMAL, never
ZONE_MOVABLE). A guest whose boot memory ends below 4 GiB has no ZONE_NORMAL until memory is onlined there
(online_pages() rebuilds the zonelists), and from then on every unmovable allocation starts in it. The page
allocator (balloonsim.kernel.page_alloc) does that walk; this module answers the next question.

Block: inside a zone, allocations take free pages in free-list order. Onlined memory is all MIGRATE_MOVABLE;
since 5.10 __free_pages_core() frees it to the tail of the free lists ("place fresh pages right to the tail,
primarily relevant for memory onlining", 7fef431be9c9), so boot memory's free pages are taken first, then the
oldest onlined block's, then the next one's. Before 5.10 generic_online_page() freed to the head and the
newest onlined block was taken first; but an unmovable allocation first takes free pages of the zone's
MIGRATE_UNMOVABLE pageblocks (boot memory's) and only steals a movable pageblock (__rmqueue_fallback(), from
the head of the largest free list) when there are none of its order: so on 4.19 order-0 allocations stay in
boot memory while it has free pages, and an order-9 one (a 2 MiB vmemmap block) lands in the newest block.
The model keeps no per-page free lists: it assumes the zone's free pages are used in that order, so with F
free pages and hot-added blocks of M_0, M_1, ... managed pages (in onlining order), boot memory is free while
F > sum(M), and otherwise the next page comes from the first block whose running sum of M exceeds sum(M) - F.

Background: a running guest allocates unmovable memory all the time (slab objects on any file access, page
tables and kernel stacks on every fork and exec, socket buffers), from its CPUs' nodes (the model puts CPUs on
the nodes with boot memory). Those allocations take free pages of the zone's MIGRATE_UNMOVABLE pageblocks first;
a zone made of freshly onlined memory has none, so the first one steals a movable pageblock
(__rmqueue_fallback()) where the zone's next page lands, and that one page makes the block's offline_pages()
fail with -EBUSY (has_unmovable_pages() in start_isolate_page_range()). A real Debian 6.1/6.12 guest (2 GiB
boot, so no ZONE_NORMAL until a DIMM is onlined there) could not offline the DIMM's first block after seconds of
ordinary activity, onlined online_kernel or online, while with online_movable it could
(validation/recorded/dimm-*--6.*.json, numa-node1--6.1.json). No rate is in the source, so the model takes the
smallest footprint that explains that: the first steal in a zone without unmovable pageblocks (at the online
that makes such a zone the first choice of a CPU node); further background allocations fill the pageblocks
already stolen (or boot memory's). The hot-add path's own allocations (memmaps, page tables, slab) land where
`landing` says, wherever that is.
"""

from __future__ import annotations

from balloonsim.kernel.page_alloc import KERNEL_ZONEIDX, PageAllocator, Take
from balloonsim.kernel.zone import HotBlock, Zone
from balloonsim.units import PMD_PAGES


class UnmovablePlacement:
    """The guest's answer to where unmovable pages land in each zone, and the background that pins blocks."""

    def __init__(self, alloc: PageAllocator, online_to_tail: bool, cpu_nodes: set[int]):
        self.alloc = alloc
        self.to_tail = online_to_tail
        self.cpu_nodes = sorted(cpu_nodes)  # where the kernel's own allocations start
        self.background: list[Take] = []  # the background's pages, one per block it pinned
        alloc.landing = self.landing
        alloc.landings = self.landings
        alloc.pmd_landings = self.pmd_landings

    @property
    def background_pages(self) -> int:
        return sum(t.pages for t in self.background)

    # -- where the next unmovable pages of a zone come from ----------------------------------------------------
    def landing(self, zone: Zone, pages: int) -> HotBlock | None:
        """The hot-added block of `zone` that the next unmovable allocation of `pages` lands in; None: boot memory."""
        hot = zone.hot
        if not hot:
            return None
        free = zone.free
        boot_free = free - zone.hot_managed
        if self.to_tail or pages < PMD_PAGES:  # boot memory first (tail), or its unmovable pageblocks (head)
            if boot_free >= pages:
                return None
        if not self.to_tail:  # head of the free lists: the newest onlined block that has free pages
            return hot.last_with_pages()
        used = zone.hot_managed - free  # pages of the hot-added blocks already in use, oldest block first
        return hot.first_above(used)  # None: nothing free in the zone, the allocation falls back to the next zone

    def landings(self, zone: Zone, pages: int) -> list[tuple[HotBlock | None, int]]:
        """landing() page by page for `pages` base pages taken one after another: the blocks they land in, with
        the pages each gets (None: boot memory). A balloon takes GiBs this way, and every block that gets one of
        its pages is pinned. Before 5.10 the model knows no order inside the hot-added blocks: boot memory's free
        pages first, then landing()'s answer, the newest block, for the rest."""
        hot = zone.hot
        out: list[tuple[HotBlock | None, int]] = []
        boot_free = zone.free - zone.hot_managed
        if boot_free > 0:
            n = min(pages, boot_free)
            out.append((None, n))
            pages -= n
        if not pages:
            return out
        if not self.to_tail:
            out.append((hot.last_with_pages(), pages))
            return out
        used = max(0, zone.hot_managed - zone.free)  # pages of the hot-added blocks in use, oldest block first
        while pages:
            block = hot.first_above(used)
            if block is None:  # nothing of the zone free, as the model counts it
                out.append((None, pages))
                break
            n = min(pages, hot.through(block) - used)
            out.append((block, n))
            used += n
            pages -= n
        return out

    def pmd_landings(self, zone: Zone, units: int) -> list[tuple[HotBlock | None, int]]:
        """landing(zone, PMD_PAGES) for `units` order-9 blocks taken one after another, as runs: the block each run
        lands in (None: boot memory, or nothing free) and its number of units. A unit lands where its first page
        would, so with F free pages the j-th lands by F - j * PMD_PAGES."""
        hot = zone.hot
        if not hot:
            return [(None, units)]
        if not self.to_tail:  # the newest block with pages, whatever was taken before
            return [(hot.last_with_pages(), units)]
        out: list[tuple[HotBlock | None, int]] = []
        boot = (zone.free - zone.hot_managed) // PMD_PAGES  # units boot memory's free pages still answer
        if boot > 0:
            n = min(units, boot)
            out.append((None, n))
            units -= n
        used = zone.hot_managed - zone.free + (boot * PMD_PAGES if boot > 0 else 0)
        while units:
            block = hot.first_above(used)
            if block is None:
                out.append((None, units))
                break
            n = min(units, -(-(hot.through(block) - used) // PMD_PAGES))  # units starting inside the block
            out.append((block, n))
            used += n * PMD_PAGES
            units -= n
        return out

    # -- the zone's hot-added blocks -------------------------------------------------------------------------
    # The guest tells: a block entering or leaving a kernel zone (online_pages()/offline_pages()), and pages of
    # such a block joining or leaving the buddy allocator; it then calls refresh() once the zone is settled.
    @staticmethod
    def enter(zone: Zone, block: HotBlock) -> None:
        managed = block.managed
        zone.hot.append(block, managed)
        zone.hot_managed += managed

    @staticmethod
    def leave(zone: Zone, block: HotBlock) -> int:
        """The block's range is isolated (start_isolate_page_range()): nothing lands there any more. Returns
        its place in the zone's order, for undo_isolate_page_range()."""
        zone.hot_managed -= zone.hot.pages(block)
        return zone.hot.remove(block)

    @staticmethod
    def back(zone: Zone, block: HotBlock, at: int) -> None:
        """undo_isolate_page_range(): the offline failed, the block is where it was."""
        managed = block.managed
        zone.hot.restore(block, at, managed)
        zone.hot_managed += managed

    @staticmethod
    def exposed(zone: Zone, block: HotBlock, n: int) -> None:
        """`n` pages of `block` joined (or, negative, left) the buddy allocator."""
        zone.hot.add(block, n)
        zone.hot_managed += n

    # -- the background --------------------------------------------------------------------------------------
    def refresh(self, zone: Zone) -> None:
        """The kernel's first unmovable allocation in a zone without MIGRATE_UNMOVABLE pageblocks (no boot memory,
        no hot-added block holding unmovable pages) steals a pageblock where the zone's next page lands, if a CPU
        node's allocations start in this zone. Later ones fill the pageblocks already stolen (rate-free)."""
        if zone.boot_present or not self._first_choice(zone) or any(b.unmovable for b in zone.hot):
            return
        block = self.landing(zone, 1)
        if block is not None and zone.free:
            split = zone.take(1)
            block.unmovable += 1
            self.alloc._charge(zone, 1, "kernel")  # noqa: SLF001 - the allocator's own bookkeeping of a take
            self.background.append(Take(zone, 1, False, "kernel", split, block))

    def _first_choice(self, zone: Zone) -> bool:
        """Is `zone` where a CPU node's GFP_KERNEL allocations go first (the fast path: the first zone of its
        zonelist with free pages above the low watermark and its lowmem_reserve for ZONE_NORMAL)?"""
        for nid in self.cpu_nodes:
            for z in self.alloc.zonelist(nid, kernel_only=True):
                if z.free - z.wmark_low - z.lowmem_reserve[KERNEL_ZONEIDX] >= 1:
                    if z is zone:
                        return True
                    break
        return False
