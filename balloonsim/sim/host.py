"""The host's side of the guest's memory: how much it can still back, and the balloon target."""

from __future__ import annotations


class HostMemory:
    """Pages the host can still give this guest. populate_physmap / a hot-add range can come back
    short when it runs out, as XENMEM_populate_physmap does on an overcommitted host."""

    def __init__(self, pages: int):
        self.free_pages = pages
        self.populated = 0
        self.short = 0  # requests that got less than asked

    def populate(self, pages: int) -> int:
        got = min(pages, self.free_pages)
        self.free_pages -= got
        self.populated += got
        if got < pages:
            self.short += 1
        return got

    def release(self, pages: int) -> None:
        self.free_pages += pages
        self.populated -= pages
