"""A fallback chain such as `altmap,kmalloc`: the cover letter's option (c).

"have the memmap allocation strategy configurable to fallback to the current allocation". Each link
is tried in order with its own transaction; a link that returns an error is undone completely and
the next one runs. Only errors the kernel can see fall through: an altmap placed on unbacked memory
does not fail at add time, it crashes the guest later, which is the point of the study.
"""

from __future__ import annotations

from balloonsim.kernel.extents import Extents
from balloonsim.kernel.page_alloc import Transaction
from balloonsim.memmap.base import MemmapStrategy, unhost


class Chain(MemmapStrategy):
    def __init__(self, links: list[MemmapStrategy]):
        self.links = links
        self.name = ",".join(s.name for s in links)
        self.params = None
        self._owners: dict[int, MemmapStrategy] = {}  # block id -> the link that placed its memmap

    def place(self, guest, nid, blocks, hint, mhp_flag, txn) -> int:
        err = 0
        for k, link in enumerate(self.links):
            sub = Transaction()
            err = link.place(guest, nid, blocks, hint, mhp_flag, sub)
            if not err:
                txn.takes.extend(sub.takes)
                for b in blocks:
                    self._owners[b.id] = link
                return 0
            guest.alloc.rollback(sub)
            for b in blocks:
                if b.memmap is not None:
                    unhost(guest, b)
                b.memmap = None
                b.vmemmap_pfns = Extents()
            if k + 1 < len(self.links):
                guest.stats.memmap_fallbacks += len(blocks)
        return err

    def check_remove(self, guest, blocks) -> int:
        for link in {self._owners[b.id] for b in blocks}:
            err = link.check_remove(guest, [b for b in blocks if self._owners[b.id] is link])
            if err:
                return err
        return 0

    def release(self, guest, blocks) -> None:
        by_link: dict[int, tuple[MemmapStrategy, list]] = {}
        for b in blocks:
            link = self._owners.pop(b.id)
            by_link.setdefault(id(link), (link, []))[1].append(b)
        for link, bs in by_link.values():
            link.release(guest, bs)

    def __repr__(self) -> str:
        return f"Chain({self.links!r})"
