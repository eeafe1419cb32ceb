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
the nodes with boot memory; a node without CPUs gets the background only by zonelist fallback). The first
unmovable page that lands in a fresh MIGRATE_MOVABLE pageblock steals the pageblock (__rmqueue_fallback()),
and one such page makes the block's offline_pages() fail with -EBUSY (has_unmovable_pages() in
start_isolate_page_range()). No rate is in the source; the model takes the limit: whenever a hot-added block
becomes where a CPU node's next unmovable allocation lands (the first zone of the node's zonelist above its
low watermark, and in it the block the free-list order gives: it is onlined into a zone with no free boot
memory left, or allocations use up what came before it), the background puts one page there. A real Debian
6.1/6.12 guest (2 GiB boot, a DIMM onlined online_kernel) could not offline the DIMM's first block after
seconds of ordinary activity (validation/recorded/dimm-*-kernel--6.*.json); with online_movable it could.
"""

from __future__ import annotations

from balloonsim.kernel.page_alloc import PageAllocator, Take
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
        alloc.watch_hit = self.refresh

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
            return next((b for b in reversed(hot) if b.managed), None)
        used = zone.hot_managed - free  # pages of the hot-added blocks already in use, oldest block first
        seen = 0
        for b in hot:
            seen += b.managed
            if seen > used:
                return b
        return None  # nothing free in the zone: the allocation falls back to the next zone

    # -- the zone's hot-added blocks -------------------------------------------------------------------------
    # The guest tells: a block entering or leaving a kernel zone (online_pages()/offline_pages()), and pages of
    # such a block joining or leaving the buddy allocator; it then calls refresh() once the zone is settled.
    @staticmethod
    def enter(zone: Zone, block: HotBlock) -> None:
        zone.hot.append(block)
        zone.hot_managed += block.managed

    @staticmethod
    def leave(zone: Zone, block: HotBlock) -> int:
        """The block's range is isolated (start_isolate_page_range()): nothing lands there any more. Returns
        its place in the zone's order, for undo_isolate_page_range()."""
        at = zone.hot.index(block)
        del zone.hot[at]
        zone.hot_managed -= block.managed
        return at

    @staticmethod
    def back(zone: Zone, block: HotBlock, at: int) -> None:
        """undo_isolate_page_range(): the offline failed, the block is where it was."""
        zone.hot.insert(at, block)
        zone.hot_managed += block.managed

    @staticmethod
    def exposed(zone: Zone, n: int) -> None:
        zone.hot_managed += n

    # -- the background --------------------------------------------------------------------------------------
    def refresh(self, zone: Zone) -> None:
        """The background allocates where the zone's next unmovable page lands; then the next free level at
        which that moves into a block that holds no unmovable page yet."""
        zone.kernel_watch = -1  # before allocating: the page below must not call back here
        block = self.landing(zone, 1) if self._first_choice(zone) else None
        if block is not None and not block.unmovable and zone.free:
            split = zone.take(1)
            block.unmovable += 1
            self.alloc._charge(zone, 1, "kernel")  # noqa: SLF001 - the allocator's own bookkeeping of a take
            self.background.append(Take(zone, 1, False, "kernel", split, block))
        zone.kernel_watch = self._next_watch(zone) if self.to_tail else self._next_watch_head(zone)

    def _first_choice(self, zone: Zone) -> bool:
        """Is `zone` where a CPU node's GFP_KERNEL allocations go first (the fast path: the first zone of its
        zonelist with free pages above the low watermark)?"""
        for nid in self.cpu_nodes:
            for z in self.alloc.zonelist(nid, kernel_only=True):
                if z.free - z.wmark_low >= 1:
                    if z is zone:
                        return True
                    break
        return False

    @staticmethod
    def _next_watch_head(zone: Zone) -> int:
        """Before 5.10: the newest block with free pages is reached when boot memory's free pages are gone."""
        newest = next((b for b in reversed(zone.hot) if b.managed), None)
        if newest is None or newest.unmovable or zone.free <= zone.hot_managed:
            return -1
        return zone.hot_managed

    @staticmethod
    def _next_watch(zone: Zone) -> int:
        """The free level at which the landing point reaches the first block after it with no unmovable page:
        block i is reached when free <= the managed pages of blocks i, i+1, ... (the boot part and the blocks
        before it used up)."""
        free = zone.free
        suffix = zone.hot_managed
        watch = -1
        for b in zone.hot:  # suffix = managed pages of this block and the ones after it
            if suffix < free and b.managed and not b.unmovable:
                watch = suffix
                break
            suffix -= b.managed
        return watch
