"""`altmap-range`: the 2018 RFC (Oscar Salvador): one altmap for the whole add_memory() range.

The memmap of every section sits at the start of the range, so the first blocks host the struct
pages of the later ones. The altmap is refcounted by the sections sharing it ("This has added: ...
(refcount: 80)") and hot-remove frees it backwards, last section first, "because the beginning of memory
is used for the pagetables"; the range goes as a whole, the RFC's stated precondition. All of that is the
kernel model's refcounted vmem_altmap (RFC PATCH 3/4, mark_vmemmap_pages(), 2018-11-16). A failed add is
rolled back whole: the RFC's __add_pages() failure path is not modelled.
"""

from __future__ import annotations

from collections.abc import Sequence

from balloonsim.kernel.errno import EINVAL
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.vmemmap import BlockView, Vmemmap
from balloonsim.memmap.base import MemmapStrategy


class AltmapRange(MemmapStrategy):
    name = "altmap-range"
    what_if = "one altmap per add_memory() range, the 2018 RFC (never merged)"

    def place(self, vm: Vmemmap, nid: int, blocks: Sequence[BlockView], hint: Extents | None, mhp_flag: bool) -> int:
        start = blocks[0].start_pfn
        end = blocks[-1].end_pfn
        total = vm.memmap_pages_per_block * len(blocks)
        if total >= end - start:
            return -EINVAL
        altmap = vm.vmem_altmap(start, total, refcounted=True)  # __add_pages(): one altmap for the range
        for b in blocks:  # each block's memmap follows the previous one's (altmap_alloc_block_buf)
            err = vm.vmemmap_populate(b, altmap)
            if err:
                return err
        return 0
