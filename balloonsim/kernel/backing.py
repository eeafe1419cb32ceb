"""The hypervisor's view of guest-physical memory: which pfns are backed by host frames.

A balloon driver's populate_physmap (Xen), a Hyper-V hot-add region, a DIMM or a virtio-mem plug backs a
range; decrease_reservation or an unplug takes it back. The guest only learns of it by touching the
memory: writing a struct page or handing a page to the buddy allocator in an unbacked range kills it
(kernel-facts.md section 3, "The other 64MB must not be written (otherwise GP!)").

Backing is kept per memory block. A block that add_memory() has registered holds its own extents
(`MemoryBlock.backed`); backing of a range not added yet (a DIMM backed before the add, Xen populating
the memmap share first) is kept here and handed to the block when the add registers it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from balloonsim.kernel.block import MemoryBlock
from balloonsim.kernel.extents import Extents


class Backing:
    """Backed pfns, per memory block, for the blocks of `blocks` and for ranges not added yet."""

    def __init__(self, blocks: Mapping[int, MemoryBlock], block_pages: int):
        self._blocks = blocks  # the guest's registry of added blocks (read, never changed here)
        self._block_pages = block_pages
        self._pending: dict[int, Extents] = {}  # block id -> backing that predates its add_memory()

    def _segments(self, start_pfn: int, end_pfn: int) -> Iterator[tuple[int, int, int]]:
        """[start, end) cut at memory block boundaries: (block id, start, end) per piece."""
        pfn = start_pfn
        while pfn < end_pfn:
            bid = pfn // self._block_pages
            seg_end = min(end_pfn, (bid + 1) * self._block_pages)
            yield bid, pfn, seg_end
            pfn = seg_end

    def populate(self, start_pfn: int, end_pfn: int) -> int:
        """The hypervisor backs [start, end). Returns the pages newly backed."""
        new = 0
        for bid, s, e in self._segments(start_pfn, end_pfn):
            block = self._blocks.get(bid)
            backed = block.backed if block is not None else self._pending.setdefault(bid, Extents())
            new += backed.add(s, e)
        return new

    def unpopulate(self, start_pfn: int, end_pfn: int) -> int:
        """The hypervisor takes the frames of [start, end) back. Returns the pages no longer backed."""
        gone = 0
        for bid, s, e in self._segments(start_pfn, end_pfn):
            block = self._blocks.get(bid)
            backed = block.backed if block is not None else self._pending.get(bid)
            if backed is not None:
                gone += backed.remove(s, e)
                if block is None and not backed:
                    del self._pending[bid]
        return gone

    def first_missing(self, start_pfn: int, end_pfn: int) -> int | None:
        """The lowest pfn of [start, end) that is not backed, or None: what a write over the range hits first."""
        for bid, s, e in self._segments(start_pfn, end_pfn):
            block = self._blocks.get(bid)
            backed = block.backed if block is not None else self._pending.get(bid, Extents())
            hole = backed.first_missing(s, e)
            if hole is not None:
                return hole
        return None

    def pending(self, block_id: int) -> Extents:
        """Backing of a block that is not added (empty when there is none)."""
        return self._pending.get(block_id, Extents())

    @property
    def pending_blocks(self) -> list[int]:
        """Blocks not added whose range is (partly) backed."""
        return sorted(self._pending)

    def claim(self, block: MemoryBlock) -> None:
        """add_memory() registers `block`: the backing its range already has becomes the block's."""
        block.backed = self._pending.pop(block.id, Extents())

    def unclaim(self, block: MemoryBlock) -> None:
        """A failed add_memory(): the backing stays with the range for a later add."""
        if block.backed:
            self._pending[block.id] = block.backed
