"""Hyper-V dynamic memory: the host side and the guest's hv_balloon (drivers/hv/hv_balloon.c).

Sources: kernel-facts.md section 6 ([NX] 6.19-rc5, [HV419] 4.15-4.19).
Guest side:
- The hot-add chunk: HA_CHUNK = 128 MiB before 6.10; memory_block_size_bytes() from 8852ebf1948d (6.10).
  With a fixed 128 MiB chunk and larger memory blocks every add_memory() fails -EINVAL
  (check_hotplug_memory_range()), which is transient: the host retries, forever.
- DM_MEM_HOT_ADD_REQUEST (hot_add_req()): with no region given, rg_start = ALIGN_DOWN(pg_start, chunk) and
  rg_sz = ALIGN(pfn_cnt, chunk), measured from the rounded-down start, so a request that starts into its
  chunk gets a region ending before the request does. process_hot_add() goes to an existing region if
  pg_start lies in [start_pfn, end_pfn) (pfn_covered(): a gap if the request skips pages, end_pfn grows by
  whole chunks for what reaches past it), else creates {start = ha_end = rg_start, covered_start =
  covered_end = pg_start, end = rg_start + rg_sz}. handle_pg_range(): pages inside the already-added part
  advance covered_end_pfn and are onlined at once if their block is online (hv_bring_pgs_online); the
  rest is hot-added one chunk at a time (hv_mem_hot_add): ha_end_pfn += chunk, covered_end_pfn +=
  min(remaining, chunk) (from pg_start, so it can run past ha_end_pfn), add_memory(), then wait up to 5 s
  for MEM_ONLINE or MEM_CANCEL_ONLINE and go on regardless.
- add_memory() failure rolls back ha_end_pfn/covered_end_pfn and stops; -EEXIST disables hot-add.
  The response's page_count is the growth of covered_end_pfn; result 0 (nothing added) is
  transient and the host retries later.
- hv_online_page(): only pages in [covered_start, covered_end) and in no gap reach the buddy
  allocator; the rest stay fake-offline until a later request covers them (the first pages of a region's
  first chunk never are). Pages outside every region go to generic_online_page from 6.14 (1da602ec36a3),
  uncounted in num_pages_onlined, and are not onlined before. MEM_OFFLINE takes the backed pages of the range
  inside each region's [start_pfn, end_pfn) off num_pages_onlined (hv_page_offline_check()).
- Balloon up: GFP_HIGHUSER|__GFP_NORETRY (one reclaim, for 2 MiB also compaction, round per allocation, no
  retry, no OOM) in 2 MiB units, falling back to 4 KiB when a 2 MiB round
  gets nothing, leaving si_mem_available() at least compute_balloon_floor(); balloon down frees the pages
  back. Ballooned pages leave MemTotal (adjust_managed_page_count()) from 5.11 (d1df458cbfdb); before, they
  stay managed and look allocated. They are __SetPageOffline() with their reference held and
  hv_memory_notifier() ignores MEM_GOING_OFFLINE, so offline_pages() -> scan_movable_pages() fails -EBUSY
  ("unmovable page") on a block holding one (6.12.118, 7.3.4): each pins the block it landed in until freed.
- post_status every second after the first 45 (pressure_report_delay): the kernel's num_committed
  (get_pages_committed()) is vm_memory_committed + num_pages_ballooned + (added - onlined) + floor, "the host
  expects the pressure information to include the ballooned out pages". The model reports it without
  num_pages_ballooned: its host (HyperVBuffer, then host() here) sets target = report x (1 + buffer) and
  compares the target with what the guest has after the balloon (guest_pages()), so ballooned pages in the
  report would raise the target by what was just ballooned and undo it. How the real host uses the
  ballooned pages in the report is not in the source (kernel-facts.md section 11, "Not modelled").
Host side (the part of Hyper-V the guest answers to): compares the controller's target with what the
guest has, unballoons first, then sends hot-add requests of `request_granularity`-rounded page
counts; the first page of a new region sits `request_offset` into its chunk, so the backed part of a
chunk need not be at its start. The host continues where the guest's coverage stopped (where the real host
puts the next request is UNVERIFIED). A transient failure (page_count 0, result 0) is retried after
`host_retry`; after an answer for fewer pages than asked (the guest's add_memory() failed in a later chunk),
the host sends no more hot-add requests: struct dm_hot_add_response's comment says "the host should assume
all further hot add requests will fail" (drivers/hv/hv_balloon.c, every release read), and QEMU's hv-balloon
host (hv_balloon_handle_hot_add_response()) does so. `after_partial = "continue"` keeps asking.
`pass_hint` lets hv_mem_hot_add() pass the covered range to add_memory() (the review's design).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from balloonsim.drivers.base import Driver, DriverParams, Process
from balloonsim.kernel.block import BlockState
from balloonsim.kernel.errno import EEXIST
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.meminfo import mem_available, vm_memory_committed
from balloonsim.kernel.page_alloc import Gfp, Take, Transaction
from balloonsim.plugin import World
from balloonsim.types import Duration, Size
from balloonsim.units import PAGE_SHIFT, PMD_PAGES, MiB, align_down, align_up

if TYPE_CHECKING:
    from balloonsim.kernel.block import MemoryBlock
    from balloonsim.kernel.guest import Guest


HA_CHUNK = 32 * 1024  # pages: "We hot add in multiples of 128M chunks" (before 8852ebf1948d, 6.10)


class HvParams(DriverParams):
    request_granularity: Size = Field(2 * MiB, description="host hot-add requests are multiples of this")
    request_offset: Size = Field(0, description="offset of a new region's first backed page in its chunk")
    min_request: Size = Field(32 * MiB, description="the host ignores smaller shortfalls")
    max_request: Size = Field(1 << 30, description="largest single hot-add request")
    ol_wait: Duration = Field(5.0, description="wait_for_completion_timeout(&ol_waitevent, 5*HZ)")
    host_retry: Duration = Field(10.0, description="host's delay before retrying a transient failure")
    after_partial: Literal["stop", "continue"] = Field(
        "stop",
        description="after a hot-add answered for fewer pages than asked: 'stop' hot-adding, as the DM protocol says "
        "the host should, or 'continue' (balloonsim before 2026-12-03)",
    )
    balloon: bool = True
    pass_hint: bool = True


def compute_balloon_floor(totalram_pages: int) -> int:
    """hv_balloon.c compute_balloon_floor(), in pages."""
    mb = 256  # pages per MiB
    n = totalram_pages
    if n < 128 * mb:
        return 8 * mb + n // 2
    if n < 512 * mb:
        return 40 * mb + n // 4
    if n < 2048 * mb:
        return 104 * mb + n // 8
    if n < 8192 * mb:
        return 232 * mb + n // 16
    return 488 * mb + n // 32


@dataclass
class HotaddState:
    """struct hv_hotadd_state."""

    start_pfn: int
    end_pfn: int
    ha_end_pfn: int
    covered_start_pfn: int
    covered_end_pfn: int
    gaps: Extents = field(default_factory=Extents)

    def backed(self, start: int, end: int) -> Extents:
        """has_pfn_is_backed() over [start, end)."""
        ext = Extents.span(max(start, self.covered_start_pfn), min(end, self.covered_end_pfn))
        for s, e in self.gaps.clip(start, end):
            ext.remove(s, e)
        return ext


class HvBalloon(Driver):
    Params = HvParams
    name = "hyperv"
    p: HvParams
    kernel_passes_mhp_flag = False  # add_memory(nid, PFN_PHYS(start_pfn), HA_BYTES_IN_CHUNK, MHP_MERGE_RESOURCE)

    def __init__(self, sim: World, params: HvParams) -> None:
        super().__init__(sim, params)
        g = self.guest
        # ha_pages_in_chunk = memory_block_size_bytes() / PAGE_SIZE from 6.10; HA_CHUNK before
        self.chunk = g.block_pages if g.profile.hv_chunk_is_block else HA_CHUNK
        self.regions: list[HotaddState] = []
        self.do_hot_add = True
        # the host's own: no more hot-add requests after a partial answer (HvParams.after_partial)
        self.host_gave_up = False
        self.num_pages_added = 0
        self.num_pages_onlined = 0
        # the pieces ballooned, each with the block it landed in (PageOffline with a reference: the block cannot
        # be offlined while it holds one, scan_movable_pages() -EBUSY)
        self.ballooned: list[Take] = []
        # adjust_managed_page_count() on ballooning from 5.11 (d1df458cbfdb); before, the pages stay managed
        self.balloon_kind = "balloon" if g.profile.hv_balloon_adjusts_managed else "balloon_managed"
        self.num_pages_ballooned = 0
        self._startup_pages = sum(sim.scenario.guest.boot) >> PAGE_SHIFT  # what the host assigned at start-up
        self.stats = {
            "hv_hotadd_requests": 0,
            "hv_hotadd_transient": 0,
            "hv_pages_covered": 0,
            "hv_ol_timeouts": 0,
            "hv_balloon_up_pages": 0,
            "hv_balloon_down_pages": 0,
            "hv_4k_fallbacks": 0,
        }
        self.ol_event = self.env.event()
        self.claim_online_page_callback(self.hv_online_page)
        g.notifiers.append(self._memory_notify)

    def start(self) -> None:
        self.env.process(self.host())

    # -- kernel callbacks ------------------------------------------------------------------------
    def hv_online_page(self, guest: Guest, block: MemoryBlock, span: Extents) -> Extents:
        expose = Extents()
        outside = span.copy()
        for r in self.regions:
            if r.start_pfn < block.end_pfn and r.end_pfn > block.start_pfn:
                for s, e in span.clip(r.start_pfn, r.end_pfn):
                    outside.remove(s, e)
                    for bs, be in r.backed(s, e):
                        expose.add(bs, be)
        # only hv_page_online_one() counts a page onlined: pages outside every region go straight to
        # generic_online_page() (6.14+, 1da602ec36a3) and are not counted
        self.num_pages_onlined += expose.total
        if guest.profile.hv_online_outside_regions:
            for s, e in outside:
                expose.add(s, e)
        withheld = span.total - expose.total
        if withheld:
            self.log("fake_offline", block.id, f"{withheld} pages")
        return expose

    def _memory_notify(self, event: str, block: MemoryBlock) -> None:
        """hv_memory_notifier(): MEM_ONLINE and MEM_CANCEL_ONLINE end hv_mem_hot_add()'s wait; MEM_OFFLINE takes
        the backed pages of the range in hot-add regions off num_pages_onlined (hv_page_offline_check(): a pfn
        counts only inside its region's [start_pfn, end_pfn), although covered_end_pfn can run past end_pfn),
        clamped at 0 (with a WARN)."""
        if event in ("MEM_ONLINE", "MEM_CANCEL_ONLINE") and not self.ol_event.triggered:
            self.ol_event.succeed()
        elif event == "MEM_OFFLINE":  # a pfn counts only inside [start_pfn, end_pfn) of its region
            s, e = block.start_pfn, block.end_pfn
            gone = sum(r.backed(max(s, r.start_pfn), min(e, r.end_pfn)).total for r in self.regions)
            self.num_pages_onlined = max(0, self.num_pages_onlined - gone)

    # -- the host --------------------------------------------------------------------------------
    def guest_pages(self) -> int:
        """What the host thinks the guest has: the startup memory it assigned (e820 holes included), covered
        hot-add, minus the balloon."""
        return self._startup_pages + self.num_pages_added - self.num_pages_ballooned

    def host(self) -> Process:
        env = self.env
        gran = self.p.request_granularity >> PAGE_SHIFT
        while True:
            want = self.target_pages - self.guest_pages()
            if want > 0 and self.num_pages_ballooned:
                self.balloon_down(min(want, self.num_pages_ballooned))
                continue
            if want >= self.p.min_request >> PAGE_SHIFT and self.do_hot_add and not self.host_gave_up:
                n = min(align_up(want, gran), self.p.max_request >> PAGE_SHIFT)
                n = min(n, self.sim.host.free_pages)
                if n > 0:
                    done = yield from self.hot_add_request(n)
                    if not done:
                        self.stats["hv_hotadd_transient"] += 1
                        yield env.timeout(self.p.host_retry)
                    continue
            elif -want >= self.p.min_request >> PAGE_SHIFT and self.p.balloon:
                got = self.balloon_up(-want)
                if got:
                    continue
            yield self.sim.target_event

    def _new_request_start(self) -> int:
        g = self.guest
        if self.regions:
            last = self.regions[-1]
            return last.covered_end_pfn  # the host continues where it stopped
        start = self.find_free_range(g.block_size, g.block_size)
        if start is None:  # no free memory block left: a request there could only fail (-E2BIG)
            return g.max_pfn
        return (start >> PAGE_SHIFT) + (self.p.request_offset >> PAGE_SHIFT)

    def hot_add_request(self, pfn_cnt: int) -> Process:
        """DM_MEM_HOT_ADD_REQUEST with pg_start/pfn_cnt; the host backs exactly those pages."""
        pg_start = self._new_request_start()
        if pg_start + pfn_cnt > self.guest.max_pfn:
            pfn_cnt = self.guest.max_pfn - pg_start
            if pfn_cnt <= 0:
                self.do_hot_add = False
                return False
        got = self.sim.host.populate(pfn_cnt)
        if got <= 0:
            return False
        pfn_cnt = got
        self.stats["hv_hotadd_requests"] += 1
        self.log("hotadd_request", pg_start // self.chunk, f"pfn {pg_start:#x} +{pfn_cnt} pages")
        self.guest.backing.populate(pg_start, pg_start + pfn_cnt)
        added = yield from self.process_hot_add(pg_start, pfn_cnt)
        if added < pfn_cnt:  # the host takes back what the guest did not accept
            self.guest.backing.unpopulate(pg_start + added, pg_start + pfn_cnt)
            self.sim.host.release(pfn_cnt - added)
        self.num_pages_added += added
        self.stats["hv_pages_covered"] += added
        if 0 < added < pfn_cnt and self.p.after_partial == "stop":
            # struct dm_hot_add_response (drivers/hv/hv_balloon.c): "If page_count is less than the requested page
            # count, then the host should assume all further hot add requests will fail"
            self.host_gave_up = True
            self.log("hotadd_partial", pg_start // self.chunk, f"{added} of {pfn_cnt} pages: no more hot-adds")
        return added > 0

    # -- hv_balloon guest side -------------------------------------------------------------------
    def process_hot_add(self, pg_start: int, pfn_cnt: int) -> Process:
        """hot_add_req() with no host-specified region, then process_hot_add(): the region, then the pages."""
        if not self.pfn_covered(pg_start, pfn_cnt):
            rg_start = align_down(pg_start, self.chunk)
            rg_sz = align_up(pfn_cnt, self.chunk)  # from the rounded-down start, not from the request's end
            self.regions.append(HotaddState(rg_start, rg_start + rg_sz, rg_start, pg_start, pg_start))
        return (yield from self.handle_pg_range(pg_start, pfn_cnt))

    def pfn_covered(self, start_pfn: int, pfn_cnt: int) -> bool:
        """pfn_covered(): a region holding start_pfn takes the request: a gap if it skips pages, and end_pfn
        grows by whole chunks for what reaches past it."""
        for r in self.regions:
            if start_pfn < r.start_pfn or start_pfn >= r.end_pfn:
                continue
            if r.covered_end_pfn != start_pfn:
                r.gaps.add(r.covered_end_pfn, start_pfn)
                r.covered_end_pfn = start_pfn
            if start_pfn + pfn_cnt > r.end_pfn:
                r.end_pfn += align_up(start_pfn + pfn_cnt - r.end_pfn, self.chunk)
            return True
        return False

    def handle_pg_range(self, start: int, pfn_cnt: int) -> Process:
        """handle_pg_range(): returns covered_end_pfn's growth, the response's page_count."""
        g = self.guest
        for r in self.regions:
            if start < r.start_pfn or start >= r.end_pfn:
                continue
            old_covered = r.covered_end_pfn
            if start < r.ha_end_pfn:  # already added: cover, and online now if the block is online
                pgs = min(r.ha_end_pfn - start, pfn_cnt)
                r.covered_end_pfn += pgs
                pfn_cnt -= pgs
                pfn = start
                while pfn < start + pgs:
                    b = g.block_of_pfn(pfn)
                    assert b is not None  # below ha_end_pfn: added
                    seg = min(start + pgs, b.end_pfn)
                    if b.state is BlockState.ONLINE:  # hv_bring_pgs_online()
                        for s, e in r.backed(pfn, seg):
                            self.num_pages_onlined += g.generic_online_page(b, s, e)
                    pfn = seg
            if r.ha_end_pfn < r.end_pfn and pfn_cnt > 0:
                size = r.end_pfn - r.ha_end_pfn
                if pfn_cnt <= size:
                    size = align_up(pfn_cnt, self.chunk)
                else:
                    pfn_cnt = size
                yield from self.hv_mem_hot_add(r, size, pfn_cnt)
            return r.covered_end_pfn - old_covered
        return 0

    def hv_mem_hot_add(self, r: HotaddState, size: int, pfn_cnt: int) -> Process:
        """hv_mem_hot_add(): size / chunk add_memory() calls from ha_end_pfn; covered_end_pfn advances by what
        of the request each chunk takes."""
        g = self.guest
        env = self.env
        total = pfn_cnt
        for _ in range(size // self.chunk):
            chunk_start = r.ha_end_pfn
            r.ha_end_pfn += self.chunk
            processed = min(total, self.chunk)
            total -= processed
            r.covered_end_pfn += processed
            hint = r.backed(chunk_start, chunk_start + self.chunk) if self.p.pass_hint else None
            self.ol_event = env.event() if self.ol_event.triggered else self.ol_event
            ret = self.hot_add(self.p.node, chunk_start << PAGE_SHIFT, self.chunk << PAGE_SHIFT, hint)
            if ret:
                r.ha_end_pfn -= self.chunk
                r.covered_end_pfn -= processed
                if ret == -EEXIST:
                    self.do_hot_add = False
                break
            block = g.blocks[chunk_start // g.block_pages]
            if block.state is not BlockState.ONLINE:
                timeout = env.timeout(self.p.ol_wait)
                yield env.any_of([self.ol_event, timeout])
                if block.state is not BlockState.ONLINE:
                    self.stats["hv_ol_timeouts"] += 1

    # -- ballooning ------------------------------------------------------------------------------
    def balloon_up(self, num: int) -> int:
        """balloon_up(): avail_pages = si_mem_available(), floor = compute_balloon_floor(); never below it."""
        a = self.guest.alloc
        kind = self.balloon_kind
        totalram = a.total("managed")
        floor = compute_balloon_floor(totalram)
        num = min(num, max(0, mem_available(a) - floor))
        got = 0
        txn = Transaction()
        if num >= PMD_PAGES:  # 2 MiB rounds while they return pages
            for _, blocks in a.alloc_pmds(self.p.node, num // PMD_PAGES, Gfp.BALLOON, charge=kind, txn=txn):
                got += blocks * PMD_PAGES
        if got < num:
            if num - got >= PMD_PAGES:
                self.stats["hv_4k_fallbacks"] += 1  # a 2 MiB round returned nothing: alloc_unit = 1
            got += a.alloc(self.p.node, num - got, Gfp.BALLOON, txn, partial=True, charge=kind)
        self.ballooned += txn.takes
        if got:
            self.num_pages_ballooned += got
            self.stats["hv_balloon_up_pages"] += got
            self.sim.host.release(got)
            self.log("balloon_up", -1, f"{got} pages")
        return got

    def balloon_down(self, num: int) -> int:
        """balloon_down() -> free_balloon_pages(): every page of the host's ranges goes back with __free_page(), so
        the buddy allocator merges each whole 2 MiB unit into a free pageblock again, and a unit freed in part
        comes back as fragments. The blocks the pages came from are no longer pinned by them."""
        num = self.sim.host.populate(num)
        alloc = self.guest.alloc
        done = 0
        while done < num and self.ballooned:
            take = self.ballooned[-1]
            k = min(take.pages, num - done)
            if take.pmd:  # a unit already broken by an earlier balloon_down first, then whole units, then a part
                broken = min(k, take.pages % PMD_PAGES)
                whole = (k - broken) // PMD_PAGES * PMD_PAGES
                for n in (broken, whole, k - broken - whole):
                    if n:
                        alloc.release(take, n)
            else:
                alloc.release(take, k)
            if not take.pages:
                self.ballooned.pop()
            done += k
        self.num_pages_ballooned -= done
        self.stats["hv_balloon_down_pages"] += done
        if done < num:
            self.sim.host.release(num - done)
        self.log("balloon_down", -1, f"{done} pages")
        return done

    def committed_bytes(self) -> int:
        """post_status()'s num_committed without num_pages_ballooned: vm_memory_committed() (Committed_AS: the
        tasks' mappings from their start, no kernel allocation) + (added - onlined) + floor. The
        kernel adds the ballooned pages too; the model's host compares its target with the memory left after the
        balloon (guest_pages()), so counting them here would make every balloon_up() raise the target it obeyed
        (module docstring)."""
        alloc = self.guest.alloc
        pending = self.num_pages_added - self.num_pages_onlined
        if pending < 0:
            pending = 0
        floor = compute_balloon_floor(alloc.total("managed"))  # totalram_pages(): ballooned pages left it from 5.11
        return (vm_memory_committed(alloc) + pending + floor) << PAGE_SHIFT

    def metrics(self) -> dict[str, Any]:
        withheld = sum(b.withheld for b in self.guest.blocks.values())
        return {**self.stats, "hv_fake_offline_pages_end": withheld, "hv_ballooned_pages_end": self.num_pages_ballooned}
