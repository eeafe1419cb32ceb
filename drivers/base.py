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
from balloonsim.kernel.meminfo import vm_memory_committed
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
    memmap_on_memory: bool | None = Field(
        None,
        description="MHP_MEMMAP_ON_MEMORY to add_memory(). Default: an ACPI DIMM passes what"
        " acpi_memory_enable_device() passes in the guest's release; a balloon driver (whose kernel code never"
        " passes it) passes it, so that a memmap_on_memory strategy applies: a what-if, labelled in `what_if`",
    )


class Driver(Plugin):
    """Base class. Subclasses check and set up in `__init__`, start their process in `start()`."""

    Params: ClassVar[type[BaseModel]] = DriverParams
    p: DriverParams
    # what this driver's kernel code passes as MHP_MEMMAP_ON_MEMORY: False for Xen, Hyper-V and virtio-mem (no
    # release passes it: kernel-facts.md section 3); None for a driver with no kernel counterpart
    kernel_passes_mhp_flag: ClassVar[bool | None] = None

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
        """What the guest reports as committed to a host that asks (the hyperv-buffer controller):
        vm_memory_committed(), Committed_AS, which holds no kernel allocation. hv_balloon reports more."""
        return vm_memory_committed(self.guest.alloc) << PAGE_SHIFT

    @property
    def target_pages(self) -> int:
        return self.sim.target_bytes >> PAGE_SHIFT

    def log(self, kind: str, block: int = -1, detail: str = "") -> None:
        self.sim.events.log(self.env.now, kind, block, detail)

    def mhp_flag(self, nr_pages: int) -> bool:
        """The MHP_MEMMAP_ON_MEMORY this driver passes for an add of `nr_pages`."""
        return True if self.p.memmap_on_memory is None else self.p.memmap_on_memory

    def what_if(self, strategy: object) -> list[str]:
        """What this driver does that its kernel code never does, with this memmap strategy (empty: nothing)."""
        if (
            getattr(strategy, "uses_mhp_flag", False)
            and self.kernel_passes_mhp_flag is False
            and self.mhp_flag(self.guest.block_pages)
        ):
            return [f"driver {self.name} passes MHP_MEMMAP_ON_MEMORY (no release of its kernel code does)"]
        return []

    def hot_add(self, nid: int, start: int, size: int, hint: Extents | None, group: MemoryGroup | None = None) -> int:
        """add_memory() with an event per call; the result is the kernel's return value."""
        flag = self.mhp_flag(size >> PAGE_SHIFT)
        ret = self.guest.add_memory(nid, start, size, hint=hint, memmap_on_memory=flag, group=group)
        first = start >> PAGE_SHIFT
        bid = first // self.guest.block_pages
        self.log("add_memory", bid, f"{start:#x}+{size >> 20}M {errname(ret)}")
        return ret

    def find_free_range(self, size: int, align: int, above: int = 0) -> int | None:
        """allocate_resource(): the lowest free, aligned gap above boot memory (and `above`) in the window."""
        return find_free_range(self.guest, size, align, above)


def find_free_range(guest: Guest, size: int, align: int, above: int = 0) -> int | None:
    """allocate_resource() for a hot-add of `size` bytes: the lowest free, `align`-aligned gap above boot memory
    (and 4 GiB, and `above`) in the guest's hot-pluggable window, None when there is none.

    The search starts at the guest's first free block (Guest.first_free_block()): every block below it is added,
    so no gap starts lower, and a guest grown one block at a time is not rescanned from the bottom on every add."""
    pos = align_up(max(guest.boot_end_pfn << PAGE_SHIFT, 4 * GiB, above), align)
    limit = guest.max_pfn << PAGE_SHIFT
    bsize = guest.block_size
    pos = align_up(max(pos, guest.first_free_block(pos // bsize) * bsize), align)
    while pos + size <= limit:
        first = pos // bsize
        last = (pos + size - 1) // bsize
        busy = [i for i in range(first, last + 1) if i in guest.blocks]
        if not busy:
            return pos
        pos = align_up((busy[-1] + 1) * bsize, align)
    return None
