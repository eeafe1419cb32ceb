"""`subrange-hint`: the driver tells add_memory() which part of the new range is backed.

D. Hildenbrand, 2018-11-22: "It *could* work for them if they could know and communicate to
add_memory() which part of a newly added memory block is definitely usable." Never merged. Here each
block's memmap goes at the pageblock-aligned start of the first backed extent of the hint inside the
block that can hold it; when none can, `fallback` decides: the ordinary memmap (`kmalloc`) or
-ENOMEM (`fail`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from balloonsim.kernel.errno import ENOMEM
from balloonsim.memmap.base import MemmapStrategy
from balloonsim.units import PAGEBLOCK_PAGES


class SubrangeHintParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fallback: Literal["kmalloc", "fail"] = "kmalloc"


class SubrangeHint(MemmapStrategy):
    name = "subrange-hint"
    Params = SubrangeHintParams

    def place(self, guest, nid, blocks, hint, mhp_flag, txn) -> int:
        nr = guest.memmap_pages_for(guest.block_pages)
        nr_aligned = -(-nr // PAGEBLOCK_PAGES) * PAGEBLOCK_PAGES
        for b in blocks:
            base = self._slot(hint, b.start_pfn, b.end_pfn, nr_aligned) if hint is not None else None
            if base is not None:
                guest.altmap_memmap(b, base, nr_aligned, "subrange-hint")
                continue
            if self.params.fallback == "fail":
                return -ENOMEM
            guest.stats.memmap_fallbacks += 1
            err = guest.kmalloc_memmap(nid, b, txn)
            if err:
                return err
        return 0

    @staticmethod
    def _slot(hint, start: int, end: int, nr: int) -> int | None:
        for s, e in hint.clip(start, end):
            base = -(-s // PAGEBLOCK_PAGES) * PAGEBLOCK_PAGES
            if base + nr <= e and base + nr < end:
                return base
        return None
