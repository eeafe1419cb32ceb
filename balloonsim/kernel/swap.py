"""The swap device: its slots, its speed, and the counters /proc/vmstat shows (pswpin, pswpout).

Reclaim writes an anonymous page to a free slot (pswpout) and its owner's page table keeps a swap entry
(MM_SWAPENTS). A fault on that entry reads the page back (pswpin) and, because the faulting task writes its
memory, frees the slot: do_swap_page() drops the swap cache copy when should_try_to_free_swap() holds, which is
the case for a write fault on an exclusive page and whenever swap is more than half full (mm/memory.c, 5.17-6.18).
A task that exits frees its slots without reading them (swap_free from zap_pte_range). So at any time
pswpout = pswpin + used + freed.

Speed is that of a virtual disk: a synchronous 4 KiB read costs the device latency plus its transfer at the
device bandwidth; writes are batched (SWAP_CLUSTER_MAX pages per pageout pass) and cost only their transfer.
Reads and writes share the bandwidth: the device keeps a budget of transfers (a token bucket refilled at the
bandwidth, holding at most one tick of it) and reclaim cannot write a page it has no budget for: the pages
would still be under writeback, not free, so the allocator waits (reclaim_throttle()) instead of getting them.
Without a clock (the kernel model alone) the device is never the bottleneck.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from balloonsim.units import PAGE_SIZE

SWAP_CLUSTER_MAX = 32  # include/linux/swap.h: pages per reclaim batch


@dataclass
class SwapDevice:
    """One swap area (swapon). `slots` is total_swap_pages; 0 means no swap, as on a typical cloud image."""

    slots: int = 0
    bandwidth: float = 125 * 2**20  # bytes per second
    latency: float = 100e-6  # seconds per synchronous read (queue depth 1)
    used: int = 0  # slots holding a page: total_swap_pages - get_nr_swap_pages()
    pswpout: int = 0  # /proc/vmstat pswpout: pages written
    pswpin: int = 0  # /proc/vmstat pswpin: pages read back
    freed: int = 0  # slots freed without a read: their owner exited
    clock: Callable[[], float] | None = field(default=None, repr=False)  # seconds; None: no bandwidth limit
    burst: float = 1.0  # seconds of transfers the device takes at once (the simulation's tick)
    _budget: float = 0.0  # transfers the device can still take at time _budget_t
    _budget_t: float = 0.0

    def __post_init__(self) -> None:
        self._budget = self.burst / self.page_time

    @property
    def budget(self) -> float:
        """Pages the device can transfer now without falling behind its bandwidth."""
        if self.clock is None:
            return float("inf")
        now = self.clock()
        if now > self._budget_t:
            self._budget = min(self.burst / self.page_time, self._budget + (now - self._budget_t) / self.page_time)
            self._budget_t = now
        return self._budget

    @property
    def free(self) -> int:
        """get_nr_swap_pages(): reclaim may write anon pages only while this is positive."""
        return self.slots - self.used

    @property
    def page_time(self) -> float:
        """Seconds the device needs to transfer one page."""
        return PAGE_SIZE / self.bandwidth

    @property
    def read_time(self) -> float:
        """Seconds one synchronous swap-in of a page waits on an idle device."""
        return self.latency + self.page_time

    def writable(self, pages: int, wait: bool = False) -> int:
        """How many of `pages` can be swapped out now: free slots and the device's budget allow. A writer that
        `wait`s for its writeback is bounded by the free slots only; its transfer still spends the budget, so
        later writers wait for the device to catch up."""
        n = min(pages, self.free)
        if self.clock is not None and not wait:
            n = min(n, int(self.budget))
        return max(0, n)

    def write(self, pages: int) -> None:
        """`pages` anon pages go to free slots (writable() said they may)."""
        self._spend(pages)
        self.used += pages
        self.pswpout += pages

    def read(self, pages: int) -> None:
        """`pages` were read back by faults and their slots freed."""
        self._spend(pages)
        self.used -= pages
        self.pswpin += pages

    def _spend(self, pages: int) -> None:
        if self.clock is not None:
            self._budget = self.budget - pages

    def release(self, pages: int) -> None:
        """An exiting task's swap entries: the slots are freed unread."""
        self.used -= pages
        self.freed += pages
