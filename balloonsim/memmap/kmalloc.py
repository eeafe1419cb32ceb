"""`kmalloc`: the ordinary memmap, from memory that is already online (vmemmap_alloc_block).

Node-local first, then other nodes by distance (recorded as remote pages); a 2 MiB page per section,
4 KiB base pages when no free 2 MiB block is left; -ENOMEM only when even base pages fail. It is what
every kernel does when memmap_on_memory is off, and what Xen, Hyper-V and virtio-mem get. A failure in a later
section leaves the earlier sections added, as __add_pages() does (6.12.118, 7.3.4; Guest._leave_sections()).
"""

from __future__ import annotations

from collections.abc import Sequence

from balloonsim.kernel.extents import Extents
from balloonsim.kernel.vmemmap import BlockView, Vmemmap
from balloonsim.memmap.base import MemmapStrategy


class Kmalloc(MemmapStrategy):
    name = "kmalloc"
    what_if = ""
    leaves_failed_sections = True  # __add_pages() keeps the sections before the one that failed

    def place(self, vm: Vmemmap, nid: int, blocks: Sequence[BlockView], hint: Extents | None, mhp_flag: bool) -> int:
        return vm.populate_ordinary(blocks)
