"""`kmalloc`: the ordinary memmap, from memory that is already online (vmemmap_alloc_block).

Node-local first, then other nodes by distance (recorded as remote pages); a 2 MiB page per section,
4 KiB base pages when no free 2 MiB block is left; -ENOMEM only when even base pages fail. It is what
every kernel does when memmap_on_memory is off, and what Xen, Hyper-V and virtio-mem get.
"""

from __future__ import annotations

from balloonsim.memmap.base import MemmapStrategy


class Kmalloc(MemmapStrategy):
    name = "kmalloc"

    def place(self, guest, nid, blocks, hint, mhp_flag, txn) -> int:
        for b in blocks:
            err = guest.kmalloc_memmap(nid, b, txn)
            if err:
                return err
        return 0
