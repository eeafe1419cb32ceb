"""User memory of the guest: tasks, page cache, the OOM killer, and the stall (PSI-like) measure.

Allocations go through the kernel model's page allocator (GFP_HIGHUSER_MOVABLE: every zone, page cache
reclaimed first). When an allocation still cannot be met, out_of_memory() kills the task with the
largest RSS (plus oom_score_adj), frees it, counts the kill and the work lost (the victim's age), and
the allocation is retried, as the page allocator's slow path does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from balloonsim.kernel.page_alloc import Gfp
from balloonsim.kernel.zone import ZoneType


@dataclass(eq=False)
class Task:
    id: int
    name: str
    want: int  # pages it means to hold
    started: float
    rss: int = 0
    alive: bool = True
    oom_score_adj: int = 0  # -1000: never killed (like systemd-udevd)
    on_kill: object = None  # callable(task) for owners that restart it

    @property
    def badness(self) -> int:
        if self.oom_score_adj <= -1000:
            return -1
        return self.rss + self.oom_score_adj * max(self.rss, 1) // 1000


class UserMemory:
    """Tasks' anonymous memory and page cache, on top of the guest's page allocator."""

    def __init__(self, sim):
        self.sim = sim
        self.guest = sim.guest
        self.tasks: dict[int, Task] = {}
        self._next_id = 0
        self.oom_kills = 0
        self.oom_lost_work_s = 0.0
        self.alloc_failures = 0
        self.stalled_s = 0.0
        self._last_reclaim = 0
        self._last_fail = 0
        self._psi = 0.0  # PSI-like "some avg10" at time _psi_t: a 10 s EWMA of the stalled fraction
        self._psi_t = 0.0

    # -- tasks -----------------------------------------------------------------------------------
    def spawn(self, name: str, want_pages: int, oom_score_adj: int = 0, on_kill=None) -> Task:
        self._next_id += 1
        task = Task(self._next_id, name, want_pages, self.sim.env.now, oom_score_adj=oom_score_adj, on_kill=on_kill)
        self.tasks[task.id] = task
        return task

    def exit(self, task: Task) -> None:
        if task.alive:
            task.alive = False
            self._free_anon(task.rss)
            task.rss = 0
            self.tasks.pop(task.id, None)

    def allocate(self, task: Task, pages: int) -> int:
        """Fault in `pages` for `task`; OOM-kills as needed. Returns pages obtained (0 if it died)."""
        if pages <= 0 or not task.alive:
            return 0
        alloc = self.guest.alloc
        while True:
            if alloc.alloc(0, pages, Gfp.USER):
                task.rss += pages
                return pages
            self.alloc_failures += 1
            victim = self.out_of_memory()
            if victim is None:
                return 0  # nothing left to kill: the task waits (stalls)
            if victim is task or not task.alive:
                return 0

    def out_of_memory(self) -> Task | None:
        """select_bad_process(): the largest badness; ties go to the youngest."""
        victims = [t for t in self.tasks.values() if t.alive and t.badness >= 0 and t.rss > 0]
        if not victims:
            return None
        victim = max(victims, key=lambda t: (t.badness, t.started, t.id))
        now = self.sim.env.now
        self.oom_kills += 1
        self.oom_lost_work_s += now - victim.started
        self.sim.events.log(now, "oom_kill", -1, f"{victim.name} rss={victim.rss * 4096 >> 20}M")
        self.exit(victim)
        if victim.on_kill is not None:
            victim.on_kill(victim)
        return victim

    def _free_anon(self, pages: int) -> None:
        """Freed anonymous memory goes back to the zones holding anon pages, Movable first."""
        if pages <= 0:
            return
        zones = sorted(
            (z for z in self.guest.alloc.iter_zones() if z.anon),
            key=lambda z: (z.type is not ZoneType.MOVABLE, -z.anon),
        )
        for z in zones:
            k = min(pages, z.anon)
            self.guest.alloc.free(z, k, "anon")
            pages -= k
            if not pages:
                return

    # -- page cache --------------------------------------------------------------------------------
    def read_files(self, pages: int, limit: int) -> int:
        """File reads fill the page cache up to `limit` pages, only from memory above the high
        watermarks (cache never pushes the guest into reclaim or the OOM killer). Returns pages read."""
        alloc = self.guest.alloc
        total = room = 0
        for z in alloc.zonelist(0, kernel_only=False):
            total += z.pagecache
            r = z.free - z.wmark_high
            if r > 0:
                room += r
        pages = min(pages, limit - total, room)
        if pages <= 0:
            return 0
        return alloc.alloc(0, pages, Gfp.USER, partial=True, charge="pagecache")

    # -- stall -----------------------------------------------------------------------------------
    @property
    def psi_avg10(self) -> float:
        """The stalled fraction's 10 s moving average now. Between stalls it only decays, so it is computed
        from the last stall on demand instead of being updated every tick."""
        if not self._psi:
            return 0.0
        return self._psi * math.exp(-(self.sim.env.now - self._psi_t) / 10.0)

    def account_stall(self, dt: float) -> bool:
        """Was the last `dt` seconds a stall? Direct reclaim or a failed allocation in it says yes."""
        reclaims = self.guest.alloc.stats.direct_reclaim
        if reclaims == self._last_reclaim and self.alloc_failures == self._last_fail:
            return False
        self._last_reclaim = reclaims
        self._last_fail = self.alloc_failures
        self.stalled_s += dt
        weight = 1.0 - math.exp(-dt / 10.0)
        self._psi = self.psi_avg10 + weight * (1.0 - self.psi_avg10)
        self._psi_t = self.sim.env.now
        return True
