"""`altmap-range`: the 2018 RFC (Oscar Salvador): one altmap for the whole add_memory() range.

The memmap of every section sits at the start of the range, so the first blocks host the struct
pages of the later ones. The vmemmap is refcounted per range ("This has added: ... (refcount: 80)")
and hot-remove frees it backwards, last section first, "because the beginning of memory is used for
the pagetables". A range is removed as a whole: that was the RFC's stated precondition.
"""

from __future__ import annotations

from balloonsim.kernel.errno import EINVAL
from balloonsim.kernel.extents import Extents
from balloonsim.memmap.base import MemmapStrategy, trace_free_sections, unhost
from balloonsim.units import pfn_to_page_addr


class AltmapRange(MemmapStrategy):
    name = "altmap-range"

    def place(self, guest, nid, blocks, hint, mhp_flag, txn) -> int:
        start = blocks[0].start_pfn
        end = blocks[-1].end_pfn
        per_block = guest.memmap_pages_for(guest.block_pages)
        total = per_block * len(blocks)
        if total >= end - start:
            return -EINVAL
        by_id = {b.id: b for b in blocks}
        for k, b in enumerate(blocks):
            s = start + k * per_block
            guest.altmap_memmap(b, s, 0, "altmap-range")  # records kind; region set below
            b.memmap.in_range = Extents.span(s, s + per_block)
            hosts = []
            pfn = s
            while pfn < s + per_block:
                host = by_id[pfn // guest.block_pages]
                seg = min(s + per_block, host.end_pfn)
                host.vmemmap_pfns.add(pfn, seg)
                hosts.append(host.id)
                pfn = seg
            b.memmap.host_blocks = tuple(hosts)
        if guest.trace is not None:
            nsec = (end - start) * guest.sp // (2 << 20)
            va0 = pfn_to_page_addr(start, guest.sp)
            va1 = pfn_to_page_addr(start + total - 1, guest.sp)
            guest.trace.append(f"This has added: {va0:x} - {va1:x} (refcount: {nsec})")
        return 0

    def check_remove(self, guest, blocks) -> int:
        groups = {b.group for b in blocks}
        for gid in groups:
            gs, gn = guest.groups[gid]
            if gs < blocks[0].start_pfn or gs + gn > blocks[-1].end_pfn:
                return -EINVAL  # "you can't remove half of a DIMM"
        return 0

    def release(self, guest, blocks) -> None:
        trace_free_sections(guest, blocks[0].start_pfn, blocks[-1].end_pfn, backwards=True)
        for b in blocks:
            unhost(guest, b)
