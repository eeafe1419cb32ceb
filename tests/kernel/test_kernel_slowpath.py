"""The kernel's own small allocations on the hot-add path go through __alloc_pages_slowpath() (mm/page_alloc.c,
5.x-6.18): direct reclaim while it makes progress, the OOM killer only when it cannot (GFP_KERNEL, order <= 3:
__alloc_pages_may_oom()), never for __GFP_RETRY_MAYFAIL (the vmemmap: "The OOM killer will not help higher order
allocs" and RETRY_MAYFAIL "will not directly trigger the OOM killer")."""

from __future__ import annotations

from balloonsim.kernel import Guest, GuestConfig
from balloonsim.kernel.page_alloc import Gfp, Transaction
from balloonsim.kernel.swap import SwapDevice
from balloonsim.units import GiB, MiB


def _full(swap: int) -> Guest:
    guest = Guest(GuestConfig(boot=[1 * GiB], swap=swap))
    a = guest.alloc
    a.alloc(0, a.total("free"), Gfp.USER, partial=True)  # anon up to the min watermarks
    return guest


def _counting_oom(guest: Guest, frees: int):
    """An OOM killer that frees `frees` anon pages per kill and counts its calls."""
    calls = []

    def oom() -> bool:
        calls.append(1)
        z = next(z for z in guest.alloc.iter_zones() if z.anon >= frees)
        guest.alloc.free(z, frees, "anon")
        return True

    return oom, calls


def test_gfp_kernel_swaps_before_it_kills():
    """With free swap slots reclaim makes progress: the slab page comes from swapping anon out, no kill."""
    guest = _full(256 * MiB)
    oom, calls = _counting_oom(guest, 1024)
    got = guest.alloc.alloc_slowpath(0, 4, Gfp.KERNEL, Transaction(), oom=oom)
    assert got == 4 and calls == [] and guest.alloc.swap.pswpout > 0


def test_gfp_kernel_without_swap_kills_and_retries():
    """Nothing reclaimable (no swap, no page cache): should_reclaim_retry() gives up, the OOM killer runs and the
    allocation succeeds on the memory it freed."""
    guest = _full(0)
    oom, calls = _counting_oom(guest, 1024)
    got = guest.alloc.alloc_slowpath(0, 4, Gfp.KERNEL, Transaction(), oom=oom)
    assert got == 4 and len(calls) == 1


def test_retry_mayfail_never_kills():
    guest = _full(0)
    oom, calls = _counting_oom(guest, 1024)
    assert guest.alloc.alloc_slowpath(0, 513, Gfp.VMEMMAP, Transaction(), oom=oom) == 0
    assert calls == []


def test_a_writer_that_waits_is_not_held_back_by_the_device_budget():
    """reclaim_throttle(): the hot-add path sleeps until its pages are written, so a busy device delays it but
    does not make it fail; the device's budget goes negative and later writers wait for it."""
    guest = _full(256 * MiB)
    swap: SwapDevice = guest.alloc.swap
    swap.clock = lambda: 0.0
    swap._budget = 0.0  # the device is busy right now
    oom, calls = _counting_oom(guest, 1024)
    assert guest.alloc.alloc_slowpath(0, 4, Gfp.KERNEL, Transaction(), oom=oom) == 4
    assert calls == [] and swap.budget < 0
    assert swap.writable(10) == 0  # a workload's reclaim now waits for the device
