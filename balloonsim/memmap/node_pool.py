"""`node-pool`: the cover letter's option (b), never implemented in the kernel.

"enhance altmap allocation strategy and reuse low memory sections to host memmaps of other sections
on the same NUMA node". The first block added on a node reserves a pool of `pool_size` bytes at its
start (its own memmap first); later blocks on that node take a memmap slot from the pool, so they
keep no memmap of their own and can hold gigantic pages. When the pool is full, the next block
hosts a new pool. A pool's host block cannot be removed while it holds another block's memmap; a slot
whose block is removed is free again, and a pool goes with its host. A failed add (an altmap that does not
fit, -EEXIST over sections a failed add left) is rolled back whole: the kernel has no such code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from balloonsim.kernel.errno import EINVAL
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.vmemmap import BlockView, VmemAltmap, Vmemmap
from balloonsim.memmap.base import MemmapStrategy
from balloonsim.units import PAGE_SHIFT, parse_size


class NodePoolParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pool_size: int = 32 << 20  # memmaps of 16 blocks of 128 MiB

    @field_validator("pool_size", mode="before")
    @classmethod
    def _size(cls, v: str | int | float) -> int:
        return parse_size(v)


@dataclass
class Pool:
    host: int  # block id
    slots: list[VmemAltmap]  # one altmap per memmap slot, lowest pfn first, all in the host block

    @property
    def freed(self) -> bool:
        return self.slots[0].freed  # the pool went with its host

    def free_slot(self) -> VmemAltmap | None:
        """The lowest slot no block's memmap holds (a removed block's slot is free again)."""
        return next((a for a in self.slots if a.alloc == 0), None)


class NodePool(MemmapStrategy):
    name = "node-pool"
    what_if = "a per-node pool of memmaps, the cover letter's option (b) (never implemented)"
    Params = NodePoolParams
    params: NodePoolParams

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.pools: dict[int, list[Pool]] = {}  # node -> its pools, oldest first

    def place(self, vm: Vmemmap, nid: int, blocks: Sequence[BlockView], hint: Extents | None, mhp_flag: bool) -> int:
        nr = vm.memmap_pages_per_block
        slots = (self.params.pool_size >> PAGE_SHIFT) // nr
        if slots < 1 or slots * nr >= vm.block_pages:
            return -EINVAL
        pools = self.pools[nid] = [p for p in self.pools.get(nid, []) if not p.freed]
        for b in blocks:
            slot = next((s for p in pools if (s := p.free_slot()) is not None), None)
            if slot is None:  # a new pool at the start of this block: the whole pool is reserved
                pool = Pool(b.id, [vm.vmem_altmap(b.start_pfn + k * nr, nr) for k in range(slots)])
                pools.append(pool)
                slot = pool.slots[0]
            err = vm.vmemmap_populate(b, slot)
            if err:
                return err
        return 0
