"""`altmap`: memmap_on_memory as merged (memory_hotplug.memmap_on_memory=Y), with each kernel profile's rules.

- 4.19, 5.12: the feature does not exist (a08a2ae34613 reached Linus in 5.13); the ordinary memmap is used
  (counted as a fallback).
- 5.13-6.5 (profile 6.1, "single-block"): only when the add_memory() range is exactly one memory block and
  vmemmap_size is PMD aligned and the rest pageblock aligned (mhp_supports_memmap_on_memory(size)); a caller
  that passes MHP_MEMMAP_ON_MEMORY for any other range gets -EINVAL from add_memory_resource(). The ACPI DIMM
  driver never does: it passes the flag only when the check holds (4a3e5de9c4ec).
- 6.6-6.7 (profile 6.6): the same check, but add_memory_resource() falls back silently to the ordinary memmap
  (e3c2bfdd33a3), and `mode = "force"` exists (2d1f649c7c08).
- 6.8+ ("per-block"): one vmem_altmap per memory block (create_altmaps_and_memory_blocks(), 6b8f0798b85a).
- `mode = "force"` (6.6+): memory_block_memmap_on_memory_pages() rounds the memmap up to whole pageblocks and
  the remainder is wasted ("Memory hotplug will waste %ld pages in each memory block").
The memmap sits in the first pages of each block: they must be backed when the memmap is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from balloonsim.errors import ConfigError
from balloonsim.kernel.errno import EINVAL
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.vmemmap import BlockView, KernelProfile, Vmemmap, memmap_on_memory_pages
from balloonsim.memmap.base import MemmapStrategy


class AltmapParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["Y", "force"] = "Y"


class Altmap(MemmapStrategy):
    name = "altmap"
    what_if = ""  # memory_hotplug.memmap_on_memory=Y; whether the driver passes the flag is the driver's part
    uses_mhp_flag = True
    # its ordinary memmap (no flag, no feature, or 6.6+'s silent fallback, all decided before arch_add_memory())
    # is the kernel's __add_pages() without an altmap; the altmap itself never fails half-way here
    leaves_failed_sections = True
    Params = AltmapParams
    params: AltmapParams

    def check(self, profile: KernelProfile) -> None:
        """`mode = "force"` only where memory_hotplug.memmap_on_memory takes it (6.6+, 2d1f649c7c08). Before, the
        parameter is a bool (6.1.192 mm/memory_hotplug.c l.49-50, module_param(..., bool)): kstrtobool() reads
        "force" as false by its 'f' (lib/kstrtox.c), so the kernel would run with memmap_on_memory off, not forced."""
        if self.params.mode == "force" and not profile.memmap_force:
            why = (
                "there is no memory_hotplug.memmap_on_memory"
                if profile.memmap_on_memory == "none"
                else "memory_hotplug.memmap_on_memory is a bool: 'force' parses as false and turns it off"
            )
            raise ConfigError("memmap.mode", f"'force' needs a kernel of 6.6 or later; in {profile.name} {why}")

    def maps_per_block(self, profile: KernelProfile, mhp_flag: bool, block_pages: int, struct_page_size: int) -> bool:
        """6.8+ with the flag, on blocks that qualify: add_memory_resource() -> create_altmaps_and_memory_blocks()
        calls arch_add_memory() once per memory block (6b8f0798b85a)."""
        supports = self._geometry(profile, block_pages, struct_page_size)[2]
        return profile.memmap_on_memory == "per-block" and mhp_flag and supports

    def _geometry(self, profile: KernelProfile, block_pages: int, struct_page_size: int) -> tuple[int, int, bool]:
        force = self.params.mode == "force" and profile.memmap_force
        return memmap_on_memory_pages(block_pages, struct_page_size, force)

    def place(self, vm: Vmemmap, nid: int, blocks: Sequence[BlockView], hint: Extents | None, mhp_flag: bool) -> int:
        rule = vm.profile.memmap_on_memory
        nr, waste, supports = self._geometry(vm.profile, vm.block_pages, vm.struct_page_size)
        if rule == "none" or not mhp_flag:
            return self._ordinary(vm, blocks)
        if not supports or (rule == "single-block" and len(blocks) != 1):
            # 6.6+ fall back to the ordinary memmap; 5.12-6.5 refuse the add
            return self._ordinary(vm, blocks) if vm.profile.mhp_silent_fallback else -EINVAL
        for b in blocks:  # create_altmaps_and_memory_blocks(): one altmap per block, at its start
            altmap = vm.vmem_altmap(b.start_pfn, nr, waste=waste)
            err = vm.vmemmap_populate(b, altmap, nr_pages=nr)
            if err:
                return err
        return 0

    @staticmethod
    def _ordinary(vm: Vmemmap, blocks: Sequence[BlockView]) -> int:
        vm.memmap_fallback(blocks)
        return vm.populate_ordinary(blocks)
