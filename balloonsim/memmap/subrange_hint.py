"""`subrange-hint`: the driver tells add_memory() which part of the new range is backed.

D. Hildenbrand, 2018-11-22: "It *could* work for them if they could know and communicate to
add_memory() which part of a newly added memory block is definitely usable." Never merged. Here each
block's memmap goes at the pageblock-aligned start of the first backed extent of the hint inside the
block that can hold it; when none can, `fallback` decides: the ordinary memmap (`kmalloc`) or
-ENOMEM (`fail`). A failed add is rolled back whole, even when a block's ordinary memmap failed after earlier
sections got theirs: the kernel has no such code, so what it would leave is not known (the kernel's own ordinary
memmap leaves them: Guest._leave_sections()).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from balloonsim.kernel.errno import ENOMEM
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.vmemmap import BlockView, Vmemmap
from balloonsim.memmap.base import MemmapStrategy
from balloonsim.units import PAGEBLOCK_PAGES, align_up


class SubrangeHintParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fallback: Literal["kmalloc", "fail"] = "kmalloc"


class SubrangeHint(MemmapStrategy):
    name = "subrange-hint"
    what_if = "the usable-subrange hint to add_memory() (proposed 2018, never merged)"
    Params = SubrangeHintParams
    params: SubrangeHintParams

    def place(self, vm: Vmemmap, nid: int, blocks: Sequence[BlockView], hint: Extents | None, mhp_flag: bool) -> int:
        nr_aligned = align_up(vm.memmap_pages_per_block, PAGEBLOCK_PAGES)
        for b in blocks:
            base = self._slot(hint, b.start_pfn, b.end_pfn, nr_aligned) if hint is not None else None
            if base is not None:
                err = vm.vmemmap_populate(b, vm.vmem_altmap(base, nr_aligned), nr_pages=nr_aligned)
            elif self.params.fallback == "fail":
                return -ENOMEM
            else:
                vm.memmap_fallback([b])
                err = vm.populate_ordinary([b])
            if err:
                return err
        return 0

    @staticmethod
    def _slot(hint: Extents, start: int, end: int, nr: int) -> int | None:
        for s, e in hint.clip(start, end):
            base = align_up(s, PAGEBLOCK_PAGES)
            if base + nr <= e and base + nr < end:
                return base
        return None
