"""The Xen balloon driver with memory hotplug (drivers/xen/balloon.c, CONFIG_XEN_BALLOON_MEMORY_HOTPLUG).

Sources: kernel-facts.md section 5 ([XEN44] ~4.4, [XEN515] ~5.15+).
- The host writes xenstore memory/target; `credit = target - current_pages`.
- credit > 0 with ballooned pages: increase_reservation() populates at most 512 pages per call
  (frame_list = PAGE_SIZE / sizeof(xen_pfn_t)); XENMEM_populate_physmap may come back short; the
  populated pages go to the buddy allocator (free_reserved_page). rc <= 0 is BP_EAGAIN.
- credit > 0 with an empty balloon: reserve_additional_memory() computes its own credit, target_pages -
  total_pages, where total_pages counts every hot-added section, onlined or not: it returns BP_WAIT ("Already
  hotplugged enough pages? Wait for them to be onlined.") only when that is <= 0, and otherwise hot-adds
  round_up(credit, PAGES_PER_SECTION) more, even while earlier sections are still offline, at the first free
  section-aligned gap (allocate_resource), marks it all INVALID_P2M_ENTRY (unpopulated) and returns BP_WAIT;
  -errno gives "Cannot add additional memory" and BP_ECANCELED.
- xen_online_page() appends every onlined page to the ballooned list (PageOffline) instead of
  freeing it: nothing of the new range is touched until populate_physmap backs it. The list is
  LIFO (balloon_append puts lowmem at the head), so the highest pfns come back first.
- credit < 0: balloon_thread() asks for n_pages = min(-credit, si_mem_available()) (page cache counts; from
  XSA-300, a1078e821b60, 5.3: profile 4.19 asks for -credit);
  decrease_reservation() takes at most a frame_list of them with GFP_BALLOON (__GFP_NORETRY: each page may wake
  kswapd and reclaim once, no retry loop, no OOM) and hands the frames back to the host; BP_EAGAIN when a page
  cannot be had, or when si_mem_available() capped the round below totalreserve_pages. balloon_append() marks
  them PageOffline with their reference held and xen_memory_notifier() acts on MEM_ONLINE only, so
  offline_pages() -> scan_movable_pages() fails -EBUSY on a block holding one (6.12.118, 7.3.4): each pins its
  block.
- update_schedule(): BP_EAGAIN doubles the delay (1 s start, 32 s cap) and cancels after
  max_retry_count = 4 failures (RETRY_UNLIMITED before XSA-300: profile 4.19).
- Wakeups: 5.15+ kthread: when the credit changes, or after 1 s in BP_WAIT (so the pages of a block onlined
  meanwhile are populated at the next whole second of the wait), schedule_delay in BP_EAGAIN, 3600 s in
  BP_ECANCELED (a failed hot-add is tried again each hour); 4.x workqueue: on a target write or MEM_ONLINE,
  and after schedule_delay in BP_EAGAIN.
`populate_memmap_first` is the design the 2018 review asked about: populate the memmap's share of
the new segment before add_memory() and pass it as the usable subrange hint.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from balloonsim.drivers.base import Driver, DriverParams, Process
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.meminfo import mem_available
from balloonsim.kernel.page_alloc import Gfp, Take, Transaction
from balloonsim.plugin import World
from balloonsim.types import Duration
from balloonsim.units import PAGE_SHIFT, PAGES_PER_SECTION, SECTION_SIZE, align_up

if TYPE_CHECKING:
    from balloonsim.kernel.block import MemoryBlock
    from balloonsim.kernel.guest import Guest

BP_DONE, BP_WAIT, BP_EAGAIN, BP_ECANCELED = "BP_DONE", "BP_WAIT", "BP_EAGAIN", "BP_ECANCELED"
BP_WAIT_POLL_S = 1.0  # balloon_thread(): timeout = HZ in BP_WAIT
ECANCELED_RETRY_S = 3600.0  # balloon_thread(): timeout = 3600 * HZ in BP_DONE and BP_ECANCELED


class XenParams(DriverParams):
    batch_pages: int = Field(512, ge=1, description="frame_list size: pages per populate_physmap hypercall")
    hypercall_time: Duration = Field(0.002, description="time one batch takes (hypercall + p2m updates)")
    populate_memmap_first: bool = False
    max_retry_count: int | None = Field(None, ge=1, description="default: the kernel profile's (4, or unlimited)")
    max_schedule_delay: Duration = 32.0
    memory_hotplug: bool = Field(
        True,
        description="CONFIG_XEN_BALLOON_MEMORY_HOTPLUG: hot-add address space when the target needs more pages than "
        "the balloon holds",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        """The key was `hotplug_unpopulated` until 2026-12-03: the kernel's name of another thing (the sysctl
        xen.balloon.hotplug_unpopulated, default 0, read only by alloc_xenballooned_pages())."""
        if isinstance(data, dict) and "hotplug_unpopulated" in data:
            raise ValueError(
                "hotplug_unpopulated is now memory_hotplug (CONFIG_XEN_BALLOON_MEMORY_HOTPLUG); the kernel's "
                "hotplug_unpopulated is a sysctl for alloc_xenballooned_pages(), which the model does not have"
            )
        return data


class XenBalloon(Driver):
    Params = XenParams
    name = "xen"
    p: XenParams
    kernel_passes_mhp_flag = False  # add_memory_resource(nid, res, MHP_MERGE_RESOURCE)

    def what_if(self, strategy: object) -> list[str]:
        out = super().what_if(strategy)
        if self.p.populate_memmap_first:
            out.append("driver xen populates the memmap's share before add_memory() (proposed 2018, never merged)")
        return out

    def __init__(self, sim: World, params: XenParams) -> None:
        super().__init__(sim, params)
        g = self.guest
        self.current_pages = g.boot_present  # get_num_physpages() at init
        # watch_target() (drivers/xen/xen-balloon.c, 4.13+): an HVM/PVH guest's first target read takes
        # target_diff = static_max - target_pages, target_pages being current_pages then, and subtracts it from
        # every target the toolstack writes: the host counts the domain's memory, the guest its RAM pages, and
        # the e820 holes (640 KiB-1 MiB) are the difference. The toolstack's static-max is the boot memory here.
        self.target_diff = (sum(self.sim.scenario.guest.boot) >> PAGE_SHIFT) - g.boot_present
        self.hotplugged_pages = 0  # added address space not yet in the balloon list
        self.balloon: list[list] = []  # stack: ["block", block_id, Extents] | ["anon", pages, list[Take]]
        self.schedule_delay = 1.0
        self.retry_count = 1
        self.max_retry = self.p.max_retry_count or g.profile.xen_max_retry
        self.stats = {
            "xen_populate_batches": 0,
            "xen_populate_short": 0,
            "xen_hotplug_segments": 0,
            "xen_cancelled": 0,
            "xen_decrease_pages": 0,
        }
        self.online_event = self.env.event()
        # without memory hotplug, the last failed round's target_pages (= current_pages), for the target it cut
        self._cut: tuple[int, int] | None = None
        self.claim_online_page_callback(self.xen_online_page)
        g.notifiers.append(self._memory_notify)

    def start(self) -> None:
        self.env.process(self.balloon_thread())

    # -- callbacks from the kernel model ---------------------------------------------------------
    def xen_online_page(self, guest: Guest, block: MemoryBlock, span: Extents) -> Extents:
        """Every onlined page without a frame goes onto the ballooned list (xen_online_page() ->
        balloon_append(), 6.12.118 drivers/xen/balloon.c l.340-353): the list holds only unpopulated pfns, which
        increase_reservation() populates (l.395-421). In the kernel nothing of a hot-added segment is populated
        before its online, so that is every page. Only the what-if `populate_memmap_first` populates a share
        first: where the memmap does not go there (kmalloc), those pages are ordinary backed memory and reach the
        buddy allocator; listing them too had them populated a second time."""
        backed = Extents()
        for s, e in span:
            for bs, be in block.backed.clip(s, e):
                backed.add(bs, be)
        unpopulated = span.copy()
        for s, e in backed:
            unpopulated.remove(s, e)
        pages = unpopulated.total
        self.hotplugged_pages -= pages
        if pages:
            self.balloon.append(["block", block.id, unpopulated])
            self.log("fake_offline", block.id, f"{pages} pages to the balloon list")
        return backed

    def _memory_notify(self, event: str, block: MemoryBlock) -> None:
        if event == "MEM_ONLINE" and not self.online_event.triggered:
            self.online_event.succeed()

    # -- the worker ------------------------------------------------------------------------------
    @property
    def target_pages(self) -> int:
        """balloon_set_new_target(new_target - target_diff), or what the round without memory hotplug cut it to,
        until the host writes a new target."""
        if self._cut is not None:
            if self._cut[0] == self.sim.target_bytes:
                return self._cut[1]
            self._cut = None
        return (self.sim.target_bytes >> PAGE_SHIFT) - self.target_diff

    @property
    def balloon_pages(self) -> int:
        return sum(e[2].total if e[0] == "block" else e[1] for e in self.balloon)

    def balloon_thread(self) -> Process:
        env = self.env
        while True:
            credit = self.target_pages - self.current_pages
            state = BP_DONE
            if credit > 0:
                if self.balloon:  # balloon_is_inflated()
                    state = self.increase_reservation(min(credit, self.p.batch_pages))
                    yield env.timeout(self.p.hypercall_time)
                elif self.p.memory_hotplug:
                    state = self.reserve_additional_memory()
                else:  # !CONFIG_XEN_BALLOON_MEMORY_HOTPLUG: target_pages = current_pages + target_unpopulated,
                    self._cut = (self.sim.target_bytes, self.current_pages)  # BP_ECANCELED (6.12.118 l.367-373):
                    state = BP_ECANCELED  # no credit is left, so no hourly round retries until the next target
            elif credit < 0:
                state = self.decrease_reservation(-credit)
                yield env.timeout(self.p.hypercall_time)
            state = self.update_schedule(state)
            credit = self.target_pages - self.current_pages
            if state == BP_DONE and credit:
                continue
            yield from self.wait(state)

    def wait(self, state: str) -> Process:
        """Until the thread's next round. The 5.15+ kthread (balloon_thread()) sleeps in
        wait_event_freezable_timeout() until balloon_thread_cond() (the credit, target_pages - current_pages,
        differs from what it was) or a timeout by state: schedule_delay s in BP_EAGAIN, 1 s in BP_WAIT, 3600 s in
        BP_DONE and BP_ECANCELED. MEM_ONLINE's wake_up() changes no credit, so it does not end the sleep. The
        4.x workqueue runs on a target write or MEM_ONLINE (schedule_delayed_work(&balloon_worker, 0)), except
        in BP_EAGAIN: its delayed work is pending then, and queueing a pending work does nothing."""
        env = self.env
        target = self.sim.target_event
        if self.guest.profile.xen_kthread:
            if state == BP_EAGAIN:
                yield env.any_of([env.timeout(self.schedule_delay), target])
            elif state == BP_WAIT:
                yield from self._wait_polling(target)
            elif state == BP_ECANCELED:
                yield env.any_of([env.timeout(ECANCELED_RETRY_S), target])
            else:  # BP_DONE with no credit: its hourly rounds find none either
                yield target
        elif state == BP_EAGAIN:
            yield env.timeout(self.schedule_delay)
        else:
            yield env.any_of([target, self.online_event])
            if self.online_event.triggered:
                self.online_event = env.event()

    def _wait_polling(self, target) -> Process:
        """The kthread's BP_WAIT: a round every second from when it went to sleep. A round finds something to do
        only once a block was onlined (its pages fill the balloon list) or the target changed (which wakes the
        thread at once), so the rounds between are skipped: the thread wakes at the first round after the
        onlining (one second on when the add itself onlined the block), or at the target's change."""
        env = self.env
        start = env.now
        if not self.online_event.triggered:
            yield env.any_of([target, self.online_event])
            if target.triggered:
                return
        self.online_event = env.event()
        rounds = max(1, math.ceil((env.now - start) / BP_WAIT_POLL_S))
        yield env.any_of([env.timeout(max(0.0, start + rounds * BP_WAIT_POLL_S - env.now)), target])

    def update_schedule(self, state: str) -> str:
        if state == BP_DONE:
            self.schedule_delay = 1.0
            self.retry_count = 1
            return BP_DONE
        if state in (BP_WAIT, BP_ECANCELED):
            if state == BP_ECANCELED:
                self.stats["xen_cancelled"] += 1
            return state
        self.retry_count += 1
        if self.max_retry is not None and self.retry_count > self.max_retry:
            self.schedule_delay = 1.0
            self.retry_count = 1
            self.stats["xen_cancelled"] += 1
            self.log("balloon", -1, "BP_ECANCELED after retries")
            return BP_ECANCELED
        self.schedule_delay = min(self.schedule_delay * 2, self.p.max_schedule_delay)
        return BP_EAGAIN

    # -- growing ---------------------------------------------------------------------------------
    @property
    def total_pages(self) -> int:
        """balloon_stats.total_pages: populated pages, the ballooned list and hot-added pages not onlined yet."""
        return self.current_pages + self.balloon_pages + self.hotplugged_pages

    def reserve_additional_memory(self) -> str:
        g = self.guest
        credit = self.target_pages - self.total_pages
        if credit <= 0:
            return BP_WAIT  # "Already hotplugged enough pages?  Wait for them to be onlined."
        nr = align_up(credit, PAGES_PER_SECTION)  # round_up(credit, PAGES_PER_SECTION)
        size = nr << PAGE_SHIFT
        start = self.find_free_range(size, SECTION_SIZE)
        self.log("hotadd_request", -1, f"credit {credit} pages -> {size >> 20}M")
        if start is None:
            self.log("add_memory", -1, "no free physical range")
            return BP_ECANCELED
        first = start >> PAGE_SHIFT
        hint = Extents()  # nothing of the new segment is populated (INVALID_P2M_ENTRY)
        memmap_pages = 0
        if self.p.populate_memmap_first:
            share, memmap_pages = self._populate_memmap_share(first, nr)
            if share is None:
                return BP_EAGAIN
            hint = share
        ret = self.hot_add(self.p.node, start, size, hint)
        if ret:
            self.log("balloon", -1, f"Cannot add additional memory ({ret})")
            if memmap_pages:
                g.backing.unpopulate(first, first + nr)
                self.sim.host.release(memmap_pages)
                self.current_pages -= memmap_pages
            return BP_ECANCELED
        self.stats["xen_hotplug_segments"] += 1
        self.hotplugged_pages += nr - memmap_pages
        return BP_WAIT

    def _populate_memmap_share(self, first: int, nr: int) -> tuple[Extents | None, int]:
        """Back the first memmap-sized part of every block of the new segment before the add."""
        g = self.guest
        per_block = g.memmap_pages_for(g.block_pages)
        per_block = align_up(per_block, 512)
        hint = Extents()
        total = 0
        for bstart in range(first, first + nr, g.block_pages):
            got = self.sim.host.populate(per_block)
            if got < per_block:
                self.sim.host.release(got)
                for s, e in hint:
                    g.backing.unpopulate(s, e)
                self.sim.host.release(total)
                self.current_pages -= total
                self.stats["xen_populate_short"] += 1
                return None, 0
            g.backing.populate(bstart, bstart + per_block)
            hint.add(bstart, bstart + per_block)
            total += per_block
            self.current_pages += per_block
        self.log("populate", first // g.block_pages, f"{total} memmap pages before add_memory")
        return hint, total

    def increase_reservation(self, nr: int) -> str:
        """Populate up to `nr` ballooned pages, highest (most recently appended) first. The hypercall asks for no
        more frames than the list holds (frame_list is filled from it: 6.12.118 drivers/xen/balloon.c l.392-404)."""
        nr = min(nr, self.balloon_pages)
        got = self.sim.host.populate(nr)
        self.stats["xen_populate_batches"] += 1
        if got <= 0:
            self.stats["xen_populate_short"] += 1
            return BP_EAGAIN
        if got < nr:
            self.stats["xen_populate_short"] += 1
        left = got
        g = self.guest
        while left and self.balloon:
            top = self.balloon[-1]
            if top[0] == "block":
                block = g.blocks[top[1]]
                ext: Extents = top[2]
                for s, e in reversed(list(ext)):
                    k = min(left, e - s)
                    g.backing.populate(e - k, e)
                    g.generic_online_page(block, e - k, e)
                    ext.remove(e - k, e)
                    left -= k
                    if not left:
                        break
                if not ext:
                    self.balloon.pop()
                self.log("populate", block.id, f"{got - left} pages")
            else:
                k = min(left, top[1])
                self._unballoon_anon(top, k)
                left -= k
                if not top[1]:
                    self.balloon.pop()
        used = got - left
        if left:
            self.sim.host.release(left)
        self.current_pages += used
        return BP_DONE

    def _unballoon_anon(self, entry: list, k: int) -> None:
        """balloon_retrieve() of pages ballooned out of ordinary memory: back to the allocator, and no longer
        pinning the blocks they came from. Within one decrease_reservation() batch the first allocated comes back
        first: it list_add()s each page to a local list, then balloon_append()s them from its head (the last
        allocated) to the ballooned list's head, which increase_reservation() takes from (6.12.118
        drivers/xen/balloon.c); across batches the newest comes back first (the caller's stack)."""
        entry[1] -= k
        takes: list[Take] = entry[2]
        while k:
            take = takes[0]
            m = min(take.pages, k)
            self.guest.alloc.release(take, m)
            k -= m
            if not take.pages:
                takes.pop(0)

    # -- shrinking -------------------------------------------------------------------------------
    def decrease_reservation(self, want: int) -> str:
        """balloon_thread()'s credit < 0 branch (drivers/xen/balloon.c, 6.12.118 and 7.3.4): `want` is -credit.
        Before XSA-300 (a1078e821b60, 5.3; profile 4.19) balloon_process() called decrease_reservation(-credit)."""
        a = self.guest.alloc
        capped = self.guest.profile.xen_balloon_capped
        n_pages = min(want, mem_available(a)) if capped else want  # min(-credit, si_mem_available())
        nr = min(n_pages, self.p.batch_pages)  # decrease_reservation(): at most ARRAY_SIZE(frame_list)
        if nr <= 0:
            return BP_EAGAIN
        txn = Transaction()
        got = a.alloc(self.p.node, nr, Gfp.BALLOON, txn, partial=True)
        if got <= 0:
            return BP_EAGAIN
        self.balloon.append(["anon", got, txn.takes])
        self.sim.host.release(got)
        self.current_pages -= got
        self.stats["xen_decrease_pages"] += got
        if got < nr or (n_pages != want and n_pages < a.totalreserve):
            return BP_EAGAIN
        return BP_DONE

    def committed_bytes(self) -> int:
        return super().committed_bytes()

    def metrics(self) -> dict[str, Any]:
        return {**self.stats, "xen_balloon_pages_end": self.balloon_pages, "xen_current_pages_end": self.current_pages}
