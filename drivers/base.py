"""What every driver shares: hot-add bookkeeping, finding free physical space, and events.

A driver is a plugin (balloonsim.plugin): its constructor checks what it needs of the guest and claims the
kernel hooks it uses (the online-page callback, the memory notifier); `start()` starts its SimPy process.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from balloonsim.errors import ConfigError
from balloonsim.kernel.errno import errname
from balloonsim.kernel.extents import Extents
from balloonsim.plugin import Plugin, World
from balloonsim.units import PAGE_SHIFT, GiB, align_up

if TYPE_CHECKING:
    import simpy

    from balloonsim.kernel.block import MemoryBlock
    from balloonsim.kernel.guest import Guest
    from balloonsim.kernel.memory_group import MemoryGroup

# a driver's SimPy process (or a step of one) that returns R
Process = Generator["simpy.Event", Any, Any]
OnlinePageCallback = Callable[["Guest", "MemoryBlock", Extents], Extents]


class DriverParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node: int = Field(0, ge=0, description="NUMA node of hot-added memory (memory_add_physaddr_to_nid)")
    memmap_on_memory: bool = Field(True, description="pass MHP_MEMMAP_ON_MEMORY (what the study asks)")


class Driver(Plugin):
    """Base class. Subclasses check and set up in `__init__`, start their process in `start()`."""

    Params: ClassVar[type[BaseModel]] = DriverParams
    p: DriverParams

    def __init__(self, sim: World, params: DriverParams) -> None:
        super().__init__(sim, params)
        self.env = sim.env
        self.guest = sim.guest
        self.rng = sim.rng(f"driver:{self.name}")
        if params.node not in self.guest.possible_nodes:
            raise ConfigError(
                "driver.node",
                f"node {params.node} does not exist "
                f"(the guest has {len(self.guest.possible_nodes)}; add guest.extra_nodes)",
            )

    def claim_online_page_callback(self, cb: OnlinePageCallback) -> None:
        """set_online_page_callback(): one driver at a time replaces generic_online_page (-EINVAL otherwise)."""
        if self.guest.set_online_page_callback(cb):
            raise ConfigError("driver.name", "another driver holds the online-page callback (-EINVAL)")

    def committed_bytes(self) -> int:
        a = self.guest.alloc
        return (a.total("anon") + a.total("kernel")) << PAGE_SHIFT

    @property
    def target_pages(self) -> int:
        return self.sim.target_bytes >> PAGE_SHIFT

    def log(self, kind: str, block: int = -1, detail: str = "") -> None:
        self.sim.events.log(self.env.now, kind, block, detail)

    def hot_add(self, nid: int, start: int, size: int, hint: Extents | None, group: MemoryGroup | None = None) -> int:
        """add_memory() with an event per call; the result is the kernel's return value."""
        ret = self.guest.add_memory(nid, start, size, hint=hint, memmap_on_memory=self.p.memmap_on_memory, group=group)
        first = start >> PAGE_SHIFT
        bid = first // self.guest.block_pages
        self.log("add_memory", bid, f"{start:#x}+{size >> 20}M {errname(ret)}")
        return ret

    def find_free_range(self, size: int, align: int) -> int | None:
        """allocate_resource(): the lowest free, aligned gap above boot memory in the window."""
        g = self.guest
        pos = max(g.boot_end_pfn << PAGE_SHIFT, 4 * GiB)
        pos = align_up(pos, align)
        limit = g.max_pfn << PAGE_SHIFT
        bsize = g.block_size
        while pos + size <= limit:
            first = pos // bsize
            last = (pos + size - 1) // bsize
            busy = [i for i in range(first, last + 1) if i in g.blocks]
            if not busy:
                return pos
            pos = align_up((busy[-1] + 1) * bsize, align)
        return None
