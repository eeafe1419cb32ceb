"""User memory of the guest: tasks, their swapped-out memory, page cache, the OOM killer, and what tasks feel of
memory pressure (stall time, PSI, work done).

Allocations go through the kernel model's page allocator (GFP_HIGHUSER_MOVABLE: every zone). When the free lists
cannot meet one, `allocate()` runs the slow path's loop as __alloc_pages_slowpath() does for order 0: direct
reclaim (page cache, and anon to swap by get_scan_count()) as long as it makes progress, and the OOM killer only
when should_reclaim_retry() gives up: after MAX_RECLAIM_RETRIES rounds without progress, or at once when even
reclaiming everything reclaimable (anon only while swap has room) could not lift a zone over its min watermark.
While swap writeback is what holds reclaim back, the task waits instead (reclaim_throttle()).

Each task knows which zone its resident pages are in (`Task.zones`, the rmap by zone): the allocator says where
each fault's pages went, reclaim which zone it unmapped pages from (`_unmap`, try_to_unmap(): the pages leave their
owners' RSS for swap entries) and migration where a zone's pages moved (`_moved`), so a task that exits or is
killed gives each zone back what it took there (`_free_anon`).

A running task touches its memory at a steady rate; every touch of a swapped-out page is a major fault that waits
for the device (`_refault`), so a task with part of its memory on swap runs slower, and the time it waits is a
memory stall.
Direct reclaim only queues its swap writes (pageout()): the allocating task stalls when writeback throttles it
(the device has no bandwidth left this tick) and when it loops with nothing to reclaim and nobody to kill;
kswapd is busy, and stalled, for the device time of the writes it issues. Once per tick (`account()`), these
stalls become each task's stalled fraction of the tick, the PSI rates (balloonsim.sim.psi) and the rate at which
the tasks do work: the productive tasks, at most one per vCPU (psi.c's min(nr_productive_tasks, nr_cpus)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np

from balloonsim.kernel.page_alloc import GFP_USER, USER_ZONEIDX
from balloonsim.kernel.zone import Zone
from balloonsim.sim.oom_kill import OOM_SCORE_ADJ_MIN, OomOrder, mm_pgtables
from balloonsim.sim.psi import PsiGroup, stall_rates
from balloonsim.units import PMD_PAGES


@dataclass(eq=False, slots=True)
class Task:
    id: int
    name: str
    want: int  # pages it means to hold
    started: float
    rss: int = 0  # MM_ANONPAGES: resident
    zones: dict[Zone, int] = field(default_factory=dict)  # where the resident pages are (the rmap, by zone)
    swapped: int = 0  # MM_SWAPENTS: on swap
    alive: bool = True
    oom_score_adj: int = 0  # -1000: never killed (like systemd-udevd)
    on_kill: Callable[[Task], None] | None = None  # for owners that restart it
    busy: bool = True  # always runnable (a worker); False: sleeps (an agent): touches nothing, not in PSI
    wait_s: float = 0.0  # swap-in wait in the current tick
    # the rest of the tick is a stall: "reclaim" when an allocation found nothing to reclaim and nobody to kill (it
    # loops in the allocator), "wait" when it waits for swap writeback (reclaim_throttle())
    blocked: str | None = None
    stalled: float = 0.0  # fraction of the current tick spent stalled on memory

    @property
    def pgtables(self) -> int:
        """mm_pgtables_bytes() / PAGE_SIZE of what it maps, resident or swapped."""
        return mm_pgtables(self.rss + self.swapped)

    def badness(self, totalpages: int) -> int | None:
        """oom_badness() (mm/oom_kill.c, 4.19-6.18): None for an unkillable task (LONG_MIN)."""
        if self.oom_score_adj <= OOM_SCORE_ADJ_MIN:
            return None
        points = self.rss + self.swapped + self.pgtables
        return points + self.oom_score_adj * (totalpages // 1000)


# Where freed anon pages no rmap entry places go first (resident pages a test set up directly), as a descending
# sort key (reverse=True, stable: ties keep their order): Movable first, then the zone holding the most anon pages.
_ANON_FREE_ORDER = attrgetter("movable", "anon")


_NUMPY_FROM = 32  # tasks from which numpy's whole-array evaluation beats one list comprehension


def swapin_reads(terms: list[tuple[int, float, float]]) -> Callable[[float], float]:
    """wanted(cost): the pages the tasks would read at this wait per read, sum(min(swapped, k avail / (1 + k
    cost))) over `terms` = (swapped, k avail, k) per task, added left to right. _refault's bisection calls it 25-30
    times a tick over every task (15 % of pressure's CPU), so from _NUMPY_FROM tasks on it is numpy's elementwise
    IEEE operations and a running sum (np.add.accumulate): the same operations in the same order as the loop's,
    so the same bits (tests/sim/test_swap.py). (A loop, not sum(): from Python 3.12 on, sum() of floats is
    compensated, and a run would then depend on which side of _NUMPY_FROM its task count fell.)"""
    if len(terms) < _NUMPY_FROM:

        def wanted(cost: float) -> float:
            total = 0.0
            for s, ka, k in terms:
                x = ka / (1 + k * cost)
                total += x if x < s else s
            return total

        return wanted
    swapped, ka, k = (np.array(column, dtype=float) for column in zip(*terms, strict=True))

    def wanted_np(cost: float) -> float:
        x = ka / (k * cost + 1.0)
        np.minimum(x, swapped, out=x)
        return float(np.add.accumulate(x)[-1])

    return wanted_np


def _shares(weights: list[int], pages: int) -> list[int]:
    """`pages` split in proportion to `weights` (their sum at least `pages`), the remainders a page each in order to
    those that have room left."""
    total = sum(weights)
    if not pages or not total:
        return [0] * len(weights)
    shares = [pages * w // total for w in weights]
    left = pages - sum(shares)
    while left:  # fewer than the weights
        for i, w in enumerate(weights):
            if shares[i] < w:
                shares[i] += 1
                left -= 1
                if not left:
                    break
    return shares


def _version(name: str) -> tuple[int, ...]:
    """A kernel profile's release as a tuple ("6.12" -> (6, 12)); what PSI does depends on it."""
    try:
        return tuple(int(x) for x in name.split(".")[:2])
    except ValueError:
        return (99, 0)


class UserMemory:
    """Tasks' anonymous memory, swap and page cache, on top of the guest's page allocator."""

    def __init__(self, sim):
        self.sim = sim
        self.guest = sim.guest
        alloc = self.guest.alloc
        self.swap = alloc.swap
        alloc.rmap = self._unmap
        alloc.rmap_move = self._moved
        alloc.anon_charged = self._fault_in
        self._faulting: Task | None = None  # the task whose fault is being served (the kernel's `current`)
        alloc.on_pressure = self._pressure_began
        self.tasks: dict[int, Task] = {}
        self._adjusted: dict[int, Task] = {}  # the tasks with an oom_score_adj, weighed one by one at a kill
        self._oom: OomOrder[Task] = OomOrder(self.tasks)  # the others, most mapped pages first
        self._next_id = 0
        self.oom_kills = 0
        # the last task killed, when it was: its anon pages and the page-table pages oom_badness() counts for it (the
        # kernel's anon-rss and pgtables; the model accounts for page tables there but allocates none)
        self.last_victim: tuple[int, int] = (0, 0)
        self.oom_lost_work_s = 0.0
        self.alloc_failures = 0
        self.cpus = self.guest.config.vcpus
        release = _version(self.guest.profile.name)
        self.psi_supported = release >= (4, 20)  # eb414681d5a0, "psi: pressure stall information", 4.20
        self.psi = PsiGroup()
        self.pressure_start: float | None = None  # an allocation first woke kswapd (wakeup_kswapd())
        self.pending = False  # stall time, swapped memory of running tasks or non-zero rates: account() has work
        self.work_done_s = 0.0  # CPU-seconds of productive tasks (not stalled on memory), at most `cpus` at a time
        self._rate = 0.0  # productive tasks now: sum over running tasks of (1 - stalled)
        self._rate_t = 0.0
        self._kswapd_seen = 0  # pswpout_kswapd at the last account()
        self._direct_seen = 0
        self._direct_claimed = 0  # direct-reclaim writes by tasks (not kernel threads) since the last account()
        self._kswapd_debt = 0.0
        self._exited_waits: list[float] = []  # the stall time of tasks that ended this tick (an OOM victim's own)
        self.swap.clock = lambda: sim.env.now  # the device's bandwidth holds in simulated time

    # -- tasks -----------------------------------------------------------------------------------
    def spawn(
        self,
        name: str,
        want_pages: int,
        oom_score_adj: int = 0,
        on_kill: Callable[[Task], None] | None = None,
        busy: bool = True,
    ) -> Task:
        self._next_id += 1
        now = self.sim.env.now
        task = Task(self._next_id, name, want_pages, now, oom_score_adj=oom_score_adj, on_kill=on_kill, busy=busy)
        self.tasks[task.id] = task
        self.guest.alloc.vm_acct_memory(want_pages)  # its mapping, made at start: Committed_AS before any fault
        if oom_score_adj:
            self._adjusted[task.id] = task
        if busy:
            self._set_rate(now, self._rate + 1.0)
        return task

    def note_mapped(self, task: Task) -> None:
        """`task`'s rss or swapped was set from outside (a test's set-up): the OOM killer's order learns it."""
        self._oom.changed.add(task)

    def exit(self, task: Task) -> None:
        if task.alive:
            task.alive = False
            self._free_anon(task)
            task.rss = 0
            if task.swapped:
                self.swap.release(task.swapped)  # zap_pte_range() frees the swap entries
                task.swapped = 0
            self.tasks.pop(task.id, None)
            self.guest.alloc.vm_acct_memory(-task.want)  # exit_mmap() -> vm_unacct_memory()
            self._adjusted.pop(task.id, None)
            self._oom.changed.discard(task)  # a run that rarely kills would otherwise keep every task it ended
            if task.busy:
                self._set_rate(self.sim.env.now, self._rate - (1.0 - task.stalled))
                if task.wait_s:  # stalled before it ended (the allocating task the OOM killer chose): PSI saw it
                    self._exited_waits.append(task.wait_s)
                    task.wait_s = 0.0

    def allocate(self, task: Task, pages: int) -> int:
        """Fault in `pages` for `task` (page by page, as order-0 faults are): direct reclaim while it makes
        progress, the OOM killer when it cannot. Returns the pages obtained."""
        if pages <= 0 or not task.alive:
            return 0
        alloc = self.guest.alloc
        direct0 = alloc.stats.pswpout_direct
        changed = self._oom.changed
        got = 0
        no_progress_loops = 0
        while task.alive:
            self._faulting = task
            n = alloc.alloc(0, pages - got, GFP_USER, partial=True)
            self._faulting = None
            task.rss += n
            changed.add(task)
            got += n
            if got == pages:
                break
            zl = alloc.zonelist(0, kernel_only=False)
            alloc.stats.direct_reclaim += 1
            if alloc.reclaim(zl, pages - got):
                no_progress_loops = 0
                continue
            # (consider_reclaim_throttle() would sleep a jiffy here, but skip_throttle_noprogress() lets it go on
            # while 2 x NR_ZONE_WRITE_PENDING <= the reclaimable pages: the model's page cache is clean and its swap
            # writes are the device's, so nothing is write-pending; 6.12.118 mm/vmscan.c:494-525, 7.3.4:483-509)
            no_progress_loops += 1
            if alloc.reclaim_throttled(zl):  # swap writeback is the bottleneck: wait for it, as the kernel does
                task.blocked = "wait"
                self.pending = True
                break
            if alloc.should_reclaim_retry(zl, no_progress_loops, USER_ZONEIDX):
                continue
            self.alloc_failures += 1
            victim = self.out_of_memory()
            if victim is None:  # nothing of the model's left to kill: the task loops in the allocator
                # (out_of_memory() panics, "System is deadlocked on memory", when it finds no killable process at
                # all, 6.12.118 mm/oom_kill.c:1167-1176; a real guest still has processes the model leaves out,
                # its daemons and shells, which the OOM killer would take instead)
                task.blocked = "reclaim"
                self.pending = True
                break
            no_progress_loops = 0  # the OOM killer made progress: the slow path starts over
        if not task.alive:
            return 0
        # pageout() only queues the writes: the reclaimer waits for none of them unless throttled (above), and
        # their transfer time is the device's, which the readers share; kswapd is not charged for them either
        self._direct_claimed += alloc.stats.pswpout_direct - direct0
        return got

    def out_of_memory(self) -> Task | None:
        """select_bad_process() and oom_kill_process(): the highest oom_badness() dies, ties to the youngest."""
        totalpages = self.guest.alloc.total("managed") + self.swap.slots  # constrained_alloc(): RAM + swap
        victim = self._oom.choose(totalpages, self._adjusted.values())
        if victim is None:
            return None
        now = self.sim.env.now
        self.oom_kills += 1
        self.last_victim = (victim.rss, victim.pgtables)
        self.oom_lost_work_s += now - victim.started
        self.sim.events.log(now, "oom_kill", -1, f"{victim.name} rss={victim.rss * 4096 >> 20}M")
        self.exit(victim)
        if victim.on_kill is not None:
            victim.on_kill(victim)
        return victim

    def _fault_in(self, zone: Zone, pages: int) -> None:
        """The allocator placed `pages` of the faulting task's anon memory in `zone`."""
        task = self._faulting
        if task is not None:
            zones = task.zones
            zones[zone] = zones.get(zone, 0) + pages

    def _free_anon(self, task: Task) -> None:
        """exit_mmap() of a task's resident anon memory: each page goes back to the zone it is in (free_pages()
        -> page_zone()), not to whichever zone has room, so a victim that faulted after ZONE_MOVABLE filled up
        gives the kernel zones their pages back. Pages no rmap entry places (set up directly) go to the zones
        holding anon pages, Movable first."""
        alloc = self.guest.alloc
        left = task.rss
        for z, n in task.zones.items():
            if n:
                alloc.free(z, n, "anon")
                left -= n
        task.zones.clear()
        if left <= 0:
            return
        zones = [z for z in alloc.zones.values() if z.anon]
        if len(zones) > 1:
            zones.sort(key=_ANON_FREE_ORDER, reverse=True)
        for z in zones:
            k = left if left < z.anon else z.anon
            alloc.free(z, k, "anon")
            left -= k
            if not left:
                return

    def _unmap(self, zone: Zone, pages: int) -> None:
        """try_to_unmap() of `pages` anon pages reclaimed from `zone`. The LRU holds every task's pages and a
        working set is touched evenly, so the tasks with pages in the zone lose them in proportion to what they
        have there (pages no rmap entry places: in proportion to what is resident)."""
        owners = [t for t in self.tasks.values() if t.zones.get(zone)]
        placed = [t.zones[zone] for t in owners]
        here = min(pages, sum(placed))
        for t, k in zip(owners, _shares(placed, here), strict=True):
            if k:
                t.zones[zone] -= k
                t.rss -= k
                t.swapped += k
        if pages > here:  # resident pages set up directly, without a zone
            owners = [t for t in self.tasks.values() if t.rss > sum(t.zones.values())]
            loose = [t.rss - sum(t.zones.values()) for t in owners]
            if pages - here > sum(loose):
                raise RuntimeError(f"reclaimed {pages} anon pages of zone {zone.type.value} but tasks hold {here}")
            for t, k in zip(owners, _shares(loose, pages - here), strict=True):
                t.rss -= k
                t.swapped += k
        self.pending = True

    def _moved(self, src: Zone, landed: list[tuple[Zone, int]]) -> None:
        """migrate_pages() moved anon pages out of `src` into the zones of `landed` ((zone, pages), in the order the
        targets were allocated): their owners, in proportion to what they had in `src`, now map them there."""
        owners = [t for t in self.tasks.values() if t.zones.get(src)]
        moved = sum(n for _, n in landed)
        shares = _shares([t.zones[src] for t in owners], min(moved, sum(t.zones[src] for t in owners)))
        targets = [[z, n] for z, n in landed]
        i = 0
        for t, k in zip(owners, shares, strict=True):
            t.zones[src] -= k
            while k:
                z, room = targets[i]
                n = k if k < room else room
                t.zones[z] = t.zones.get(z, 0) + n
                targets[i][1] -= n
                k -= n
                if not targets[i][1]:
                    i += 1

    def _pressure_began(self) -> None:
        if self.pressure_start is None:
            self.pressure_start = self.sim.env.now

    # -- page cache --------------------------------------------------------------------------------
    def read_files(self, pages: int, limit: int) -> int:
        """File reads fill the page cache up to `limit` pages, only from memory above the high
        watermarks and the lowmem reserves a user allocation leaves (cache never pushes the guest into reclaim or
        the OOM killer). Returns pages read."""
        alloc = self.guest.alloc
        total = room = 0
        for z in alloc.zonelist(0, kernel_only=False):
            total += z.pagecache
            r = z.free_pmd * PMD_PAGES + z.free_base - z.wmark_high - z.lowmem_reserve[USER_ZONEIDX]
            if r > 0:
                room += r
        if limit - total < pages:
            pages = limit - total
        if room < pages:
            pages = room
        if pages <= 0:
            return 0
        return alloc.alloc(0, pages, GFP_USER, partial=True, charge="pagecache")

    # -- what the tasks feel -------------------------------------------------------------------------
    def account(self, now: float, dt: float, touch_pages: float) -> None:
        """The tick [now, now + dt): running tasks fault their swapped-out pages back in (touching memory at
        `touch_pages` per second of running), then every stall charged becomes a stalled fraction of the tick, the
        PSI rates and the rate of work. Called only while `pending`: a guest without pressure pays nothing here."""
        alloc = self.guest.alloc
        swap = self.swap
        swap.burst = dt
        busy = [t for t in self.tasks.values() if t.busy]
        if swap.used:
            self._refault([t for t in busy if t.swapped], dt, touch_pages)
        st = alloc.stats
        # kswapd, and direct reclaim in kernel threads (drivers' allocations), stall as one reclaimer
        kernel_writes = st.pswpout_kswapd - self._kswapd_seen + st.pswpout_direct - self._direct_seen
        kernel_writes -= self._direct_claimed
        self._kswapd_seen, self._direct_seen, self._direct_claimed = st.pswpout_kswapd, st.pswpout_direct, 0
        ktime = self._kswapd_debt + kernel_writes * swap.page_time
        kswapd = min(1.0, ktime / dt)
        self._kswapd_debt = ktime - kswapd * dt
        states: list[tuple[float, float]] = []
        rate = 0.0
        left = False
        for t in busy:
            if t.blocked:
                fr, fw = (1.0, 0.0) if t.blocked == "reclaim" else (0.0, 1.0)
                t.blocked = None
            else:
                fr, fw = 0.0, min(1.0, t.wait_s / dt)
            t.wait_s = 0.0
            t.stalled = fr + fw
            rate += 1.0 - t.stalled
            if t.stalled:
                states.append((fr, fw))
            if t.swapped:
                left = True
        idle = len(busy) - len(states)
        if self._exited_waits:
            states += [(0.0, min(1.0, w / dt)) for w in self._exited_waits]
            self._exited_waits.clear()
        if states or kswapd:
            some, full = stall_rates(states + [(0.0, 0.0)] * idle, kswapd, self.cpus)
        else:
            some = full = 0.0
        self.psi.set_rates(now, some, full)
        self._set_rate(now, rate)
        self.pending = left or bool(self._kswapd_debt) or bool(some or full)

    def _refault(self, tasks: list[Task], dt: float, touch_pages: float) -> int:
        """do_swap_page() for the tick: a task running R seconds touches touch_pages * R pages, of which the
        swapped share misses and waits for a read (the device latency plus the transfer); so it runs
        R = avail / (1 + k c) with k = touch_pages * swapped / mapped. Reads are synchronous per task, and all
        tasks share the device's bandwidth: when they would read more than it transfers in the tick, each read
        waits longer (c grows) until they fit. Returns the pages read."""
        swap = self.swap
        c = swap.read_time
        plan = []
        for t in tasks:
            if t.blocked:
                continue
            avail = dt
            k = touch_pages * t.swapped / (t.rss + t.swapped)
            plan.append((t, avail, k))
        if not plan:
            return 0

        wanted = swapin_reads([(t.swapped, k * avail, k) for t, avail, k in plan])

        # the device's transfers this tick: the reads, and a write for each read that finds no free page and no
        # page cache to drop (memory is full: reclaim swaps another page out to make room)
        budget = swap.budget
        room = 0
        for z in self.guest.alloc.zonelist(0, kernel_only=False):
            room += max(0, z.free - z.wmark_min - z.lowmem_reserve[USER_ZONEIDX]) + z.pagecache
        capacity = budget if budget <= room else (budget + room) / 2
        if capacity < 1:  # the device has no room this tick: every fault waits behind it the whole time
            for t, avail, _ in plan:
                t.wait_s += avail
            return 0
        if wanted(c) > capacity:  # the device is the bottleneck: find the per-read wait that fits
            lo, hi = c, c * 2
            while wanted(hi) > capacity:  # wanted(x) < capacity once x > sum(avail) / capacity
                lo, hi = hi, hi * 2
            for _ in range(30):
                mid = (lo + hi) / 2
                if wanted(mid) > capacity:
                    lo = mid
                else:
                    hi = mid
            c = hi
        alloc = self.guest.alloc
        reads = 0
        for t, avail, k in plan:
            m = min(float(t.swapped), k * avail / (1 + k * c))
            n = min(t.swapped, round(m))
            if not n or not t.alive:
                continue
            got = self.allocate(t, n)
            if not got or not t.alive:
                continue
            t.swapped -= got  # allocate() counted them resident
            self._oom.changed.add(t)
            swap.read(got)
            alloc.note_refault(got)
            t.wait_s += got * c
            reads += got
        return reads

    def _set_rate(self, now: float, rate: float) -> None:
        if now > self._rate_t:
            # the productive tasks share the vCPUs: psi.c's threads x (1 - FULL) = min(nr_productive, nr_cpus)
            productive = self._rate if self._rate < self.cpus else self.cpus
            self.work_done_s += productive * (now - self._rate_t)
            self._rate_t = now
        self._rate = rate if rate > 0.0 else 0.0

    def finish(self, now: float) -> None:
        """Integrate the work done and PSI up to the end of the run."""
        self._set_rate(now, self._rate)
        self.psi.advance(now)

    # -- PSI, as /proc/pressure/memory shows it ------------------------------------------------------
    @property
    def psi_avg10(self) -> float:
        """SOME avg10 now, as a fraction (what a PSI-driven agent or controller reads)."""
        self.psi.advance(self.sim.env.now)
        return self.psi.avg10()
