"""`wholly-backed`: the memmap in the added range (altmap) only when the driver says all of it is backed,
else from online memory (kmalloc): never a memmap on memory the host may not have populated."""

from __future__ import annotations

from balloonsim.memmap.altmap import Altmap
from balloonsim.memmap.base import MemmapStrategy
from balloonsim.memmap.kmalloc import Kmalloc


class WhollyBacked(MemmapStrategy):
    name = "wholly-backed"

    def __init__(self, **params):
        super().__init__(**params)
        self.altmap, self.kmalloc = Altmap(), Kmalloc()

    def place(self, vm, nid, blocks, hint, mhp_flag) -> int:
        whole = hint is not None and hint.covers(blocks[0].start_pfn, blocks[-1].end_pfn)
        return (self.altmap if whole else self.kmalloc).place(vm, nid, blocks, hint, mhp_flag)
