"""What a memmap strategy is: where add_memory() puts the struct pages of the blocks it adds.

A strategy sees the kernel only through `balloonsim.kernel.vmemmap.Vmemmap`: it populates each block's
vmemmap, from online memory or from an altmap it carves in the range being added, and the kernel model
keeps the books (accounting, the trace, hot-remove). It never sees the guest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from balloonsim.kernel.extents import Extents
from balloonsim.kernel.vmemmap import BlockView, KernelProfile, Vmemmap


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemmapStrategy:
    """One placement policy: `place` gives every block of one add_memory() call a memmap.

    It returns 0 or a negative errno; on an error add_memory() undoes everything it did through `vm`.
    `nid` is the node of the add, `hint` the pfns the driver says are backed (None: no hint), `mhp_flag` the
    caller's MHP_MEMMAP_ON_MEMORY.
    """

    name: str = ""  # the registry name (a chain names itself after its links)
    Params: ClassVar[type[BaseModel]] = NoParams
    # How far it is from the kernel: "" for what a kernel does (the ordinary memmap, memmap_on_memory as
    # merged), else why it is a what-if; None (a plugin's strategy): not a kernel strategy.
    what_if: ClassVar[str | None] = None
    # Whether the caller's MHP_MEMMAP_ON_MEMORY decides anything (memmap_on_memory as merged does)
    uses_mhp_flag: ClassVar[bool] = False
    # Whether an ordinary memmap that fails in a later section leaves the sections before it added, as the
    # kernel's __add_pages() does (Guest._leave_sections()): only for a placement the kernel itself makes section
    # by section with no fallback after it; a what-if the kernel has no code for is rolled back whole
    leaves_failed_sections: ClassVar[bool] = False

    def __init__(self, **params: Any):
        self.params = self.Params(**params)

    def place(self, vm: Vmemmap, nid: int, blocks: Sequence[BlockView], hint: Extents | None, mhp_flag: bool) -> int:
        raise NotImplementedError

    def maps_per_block(self, profile: KernelProfile, mhp_flag: bool, block_pages: int, struct_page_size: int) -> bool:
        """Whether add_memory() goes block by block (6.8+ create_altmaps_and_memory_blocks(): arch_add_memory(),
        and so init_memory_mapping()'s direct map, per memory block) rather than once for the whole range."""
        return False

    def check(self, profile: KernelProfile) -> None:
        """Refuse a setting the kernel of `profile` cannot have (a ConfigError naming the key); nothing to refuse
        by default. Called when a guest is built for it, before anything runs."""

    def departures(self, profile: KernelProfile) -> list[str]:
        """What about this placement no kernel of `profile` does (empty: the kernel's own)."""
        if self.what_if is None:
            return [f"memmap {self.name}: not a kernel strategy"]
        return [f"memmap {self.name}: {self.what_if}"] if self.what_if else []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"
