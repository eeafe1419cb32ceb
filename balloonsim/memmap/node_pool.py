"""`node-pool`: the cover letter's option (b), never implemented in the kernel.

"enhance altmap allocation strategy and reuse low memory sections to host memmaps of other sections
on the same NUMA node". The first block added on a node reserves a pool of `pool_size` bytes at its
start (its own memmap first); later blocks on that node take a memmap slot from the pool, so they
keep no memmap of their own and can hold gigantic pages. When the pool is full, the next block
hosts a new pool. A pool's host block cannot be removed while it holds another block's memmap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, field_validator

from balloonsim.kernel.errno import EINVAL
from balloonsim.kernel.extents import Extents
from balloonsim.memmap.base import MemmapStrategy, trace_free_sections
from balloonsim.units import PAGE_SHIFT, parse_size


class NodePoolParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pool_size: int = 32 << 20  # memmaps of 16 blocks of 128 MiB

    @field_validator("pool_size", mode="before")
    @classmethod
    def _size(cls, v):
        return parse_size(v)


@dataclass
class Pool:
    host: int  # block id
    free_slots: list[int] = field(default_factory=list)  # pfns of free memmap slots, lowest first


class NodePool(MemmapStrategy):
    name = "node-pool"
    Params = NodePoolParams

    def __init__(self, **params):
        super().__init__(**params)
        self.pools: dict[int, list[Pool]] = {}

    def place(self, guest, nid, blocks, hint, mhp_flag, txn) -> int:
        nr = guest.memmap_pages_for(guest.block_pages)
        slots = (self.params.pool_size >> PAGE_SHIFT) // nr
        if slots < 1 or slots * nr >= guest.block_pages:
            return -EINVAL
        by_id = {b.id: b for b in blocks}
        created: list[Pool] = []
        for b in blocks:
            pool = next((p for p in self.pools.get(nid, []) + created if p.free_slots), None)
            if pool is None:
                pool = Pool(host=b.id, free_slots=[b.start_pfn + k * nr for k in range(slots)])
                b.vmemmap_pfns.add(b.start_pfn, b.start_pfn + slots * nr)  # the whole pool is reserved
                created.append(pool)
            slot = pool.free_slots.pop(0)
            host = by_id.get(pool.host) or guest.blocks[pool.host]
            guest.altmap_memmap(b, slot, 0, "node-pool")
            b.memmap.in_range = Extents.span(slot, slot + nr)
            b.memmap.host_blocks = (host.id,)
        self.pools.setdefault(nid, []).extend(created)
        return 0

    def release(self, guest, blocks) -> None:
        """Slots of removed blocks go back to pools that stay; pools hosted by removed blocks go."""
        removing = {b.id for b in blocks}
        for b in blocks:
            trace_free_sections(guest, b.start_pfn, b.end_pfn, backwards=False)
            host_id = b.memmap.host_blocks[0]
            if host_id in removing:
                continue
            pool = next(p for p in self.pools[b.nid] if p.host == host_id)
            pool.free_slots.append(next(iter(b.memmap.in_range))[0])
            pool.free_slots.sort()
        for nid, pools in self.pools.items():
            self.pools[nid] = [p for p in pools if p.host not in removing]
