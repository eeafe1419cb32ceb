"""What a memmap strategy is: where add_memory() puts the struct pages of the blocks it adds."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

from balloonsim.kernel.extents import Extents
from balloonsim.kernel.page_alloc import Transaction
from balloonsim.units import PAGES_PER_SECTION, pfn_to_page_addr

if TYPE_CHECKING:
    from balloonsim.kernel.block import MemoryBlock
    from balloonsim.kernel.guest import Guest


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemmapStrategy:
    """One placement policy. Subclasses implement `place`; removal frees what placement took.

    `place` sets `block.memmap` for every block of one add_memory() call and returns 0 or a negative
    errno; everything it allocated through `txn` is rolled back by the caller on failure.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, **params):
        self.params = self.Params(**params)

    def place(
        self, guest: Guest, nid: int, blocks: list[MemoryBlock], hint: Extents | None, mhp_flag: bool, txn: Transaction
    ) -> int:
        raise NotImplementedError

    def check_remove(self, guest: Guest, blocks: list[MemoryBlock]) -> int:
        return 0

    def release(self, guest: Guest, blocks: list[MemoryBlock]) -> None:
        """Hot-remove, block by block in ascending order (remove_memory_blocks_and_altmaps)."""
        for b in blocks:
            trace_free_sections(guest, b.start_pfn, b.end_pfn, backwards=False)
            unhost(guest, b)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


def trace_free_sections(guest: Guest, start_pfn: int, end_pfn: int, backwards: bool) -> None:
    if guest.trace is None:
        return
    secs = list(range(start_pfn, end_pfn, PAGES_PER_SECTION))
    for sec in reversed(secs) if backwards else secs:
        va0 = pfn_to_page_addr(sec, guest.sp)
        va1 = pfn_to_page_addr(sec + PAGES_PER_SECTION, guest.sp)
        guest.trace.append(f"vmemmap_free: start/end: {va0:x} - {va1:x}")


def unhost(guest: Guest, block: MemoryBlock) -> None:
    """The pages that held this block's memmap in hot-added memory are vmemmap no longer."""
    m = block.memmap
    if m is None:
        return
    for s, e in m.in_range:
        pfn = s
        while pfn < e:
            host = guest.block_of_pfn(pfn)
            if host is None:  # a block of a failed add_memory() (a chain link's undo): not registered
                pfn = min(e, (pfn // guest.block_pages + 1) * guest.block_pages)
                continue
            seg = min(e, host.end_pfn)
            host.vmemmap_pfns.remove(pfn, seg)
            pfn = seg
