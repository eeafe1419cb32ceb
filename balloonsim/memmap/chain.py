"""A fallback chain such as `altmap,kmalloc`: the cover letter's option (c).

"have the memmap allocation strategy configurable to fallback to the current allocation". Each link
is tried in order; a link that returns an error is undone completely and the next one runs, unless its error
came from the ordinary memmap (the current allocation, already tried) or it is the last: then add_memory()
undoes the add as for that link alone. Only errors the kernel can see fall through: an altmap placed on unbacked
memory does not fail at add time, it crashes the guest later, which is the point of the study.
"""

from __future__ import annotations

from collections.abc import Sequence

from balloonsim.kernel.extents import Extents
from balloonsim.kernel.vmemmap import BlockView, KernelProfile, Vmemmap
from balloonsim.memmap.base import MemmapStrategy, NoParams


class Chain(MemmapStrategy):
    def __init__(self, links: list[MemmapStrategy]):
        self.links = links
        self.name = ",".join(s.name for s in links)
        self.params = NoParams()
        self._ended_by = links[-1]  # the link whose failure ended the last place() (see leaves_failed_sections)

    @property
    def uses_mhp_flag(self) -> bool:  # type: ignore[override]
        return any(link.uses_mhp_flag for link in self.links)

    @property
    def leaves_failed_sections(self) -> bool:  # type: ignore[override]
        """A link that is followed by another is rolled back whole (the fallback is this chain's, not the
        kernel's: Vmemmap.rollback() forgets its failure); the link that ends the chain leaves what it would
        alone: the last one, or one that failed in the ordinary memmap (see place()). add_memory() asks right
        after place()."""
        return self._ended_by.leaves_failed_sections

    def maps_per_block(self, profile: KernelProfile, mhp_flag: bool, block_pages: int, struct_page_size: int) -> bool:
        """As its first link: the direct map is made before any link places a memmap."""
        return self.links[0].maps_per_block(profile, mhp_flag, block_pages, struct_page_size)

    def check(self, profile: KernelProfile) -> None:
        for link in self.links:
            link.check(profile)

    def departures(self, profile: KernelProfile) -> list[str]:
        """The links' own, and the fallback itself where the kernel has none: add_memory() falls back from
        memmap_on_memory to the ordinary memmap only from 6.6 (e3c2bfdd33a3); 5.13-6.5 return -EINVAL."""
        out = [d for link in self.links for d in link.departures(profile)]
        if not out and profile.memmap_on_memory != "none" and not profile.mhp_silent_fallback:
            out.append(f"memmap {self.name}: a fallback after -EINVAL (the kernel falls back itself from 6.6)")
        return out

    def place(self, vm: Vmemmap, nid: int, blocks: Sequence[BlockView], hint: Extents | None, mhp_flag: bool) -> int:
        """Each link in turn until one places the memmap. The chain ends at the first link whose failure was the
        ordinary memmap's (a link that had already fallen back to it, as altmap does without the flag): falling
        back to "the current allocation" would only try it again. Whatever ends the chain is add_memory()'s to
        undo, as when that link runs alone (sections left where the ordinary memmap stopped)."""
        err = 0
        last = len(self.links) - 1
        for k, link in enumerate(self.links):
            mark = vm.savepoint()
            err = link.place(vm, nid, blocks, hint, mhp_flag)
            if not err:
                return 0
            if k == last or vm.ordinary_failed_since(mark):
                self._ended_by = link
                return err
            vm.rollback(mark)
            vm.memmap_fallback(blocks)
        return err

    def __repr__(self) -> str:
        return f"Chain({self.links!r})"
