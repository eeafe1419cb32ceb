"""Workloads that drive the guest into reclaim, swap and the OOM killer.

A workload is a demand curve (bytes of anonymous memory wanted over time) met by tasks that fault
memory in at a bounded rate, plus file reads that fill the page cache. `tasks` has its own tasks
with random sizes and lifetimes; `trace` replays a CSV of (time, bytes).

Its work happens on a grid of `tick`s (fault-in, file reads, kswapd, what the tasks felt), but only at the ticks
where something is to be done (balloonsim.sim.clock): while tasks fault in or stall, every tick; otherwise at the
next change of demand a workload knows in advance (`next_change`), at the end of a restart delay, at the next
file read that can grow the cache, and at the first tick after the guest's memory changed. A guest at rest costs
nothing per tick.

Its tasks are always running and touch their memory at `touch_rate`: a task with memory on swap faults it
back and runs slower (balloonsim.sim.memory). An OOM-killed task comes back per `restart`:
- `never`: it stays dead, and the part of the demand it served is lost for the rest of the run;
- `delay`: after `restart_delay`, always;
- `systemd`: Restart=on-failure with RestartSec=`restart_delay` and the unit's start rate limit: a start that
  would be the StartLimitBurst+1-th within StartLimitIntervalSec is refused (start-limit-hit), the unit fails,
  its remaining processes are killed (KillMode=control-group) and it is not started again (systemd.unit(5):
  "services which are started more often than 5 times within 10s are not permitted to start any more times").
"""

from __future__ import annotations

import csv
import math
from operator import attrgetter
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from balloonsim.errors import ConfigError, TraceError
from balloonsim.plugin import Plugin, World
from balloonsim.sim.clock import URGENT, At, Poll
from balloonsim.sim.distributions import Dist
from balloonsim.types import Duration, Size
from balloonsim.units import PAGE_SHIFT, PAGE_SIZE, format_size, parse_duration, parse_size

_CACHE_STATE = attrgetter("free_pmd", "free_base", "pagecache")  # what a file read and kswapd change in a zone

# Bounds that keep a run finite in time and memory whatever is typed: the loop runs once per tick, and demand
# is met by tasks of `task_size` (a `1P` typo for `1G` would otherwise mean four million tasks per tick).
MAX_TICKS_PER_RUN = 10_000_000
MAX_TASKS = 65_536
DEMAND_KEYS = ("size", "start_size", "end_size", "base", "burst")


class WorkloadParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tick: Duration = 1.0  # how often tasks fault memory in and the stall is measured
    task_size: Size = 256 << 20  # demand is met by tasks of this size
    fault_rate: Size = 1 << 30  # bytes per second a task can fault in
    cache_rate: Size = 8 << 20  # file reads per second filling the page cache
    cache_interval: Duration = 10.0  # the cache grows in steps this far apart (cache_rate x interval each)
    cache_max: Size = 1 << 30  # page cache stops growing here
    restart_delay: Duration = 5.0  # an OOM-killed task restarts after this (systemd's RestartSec)
    restart: Literal["never", "delay", "systemd"] = "delay"
    start_limit_interval: Duration = Field(10.0, gt=0, le=86400)  # systemd StartLimitIntervalSec (default 10 s)
    start_limit_burst: int = Field(5, ge=1, le=10_000)  # systemd StartLimitBurst (default 5)
    touch_rate: Size | None = Field(None, gt=0)  # bytes a running task touches per second (default: fault_rate)

    @field_validator("restart", mode="before")
    @classmethod
    def _restart_bool(cls, v):
        """`restart = true/false` (the older spelling) means `delay` / `never`."""
        if isinstance(v, bool):
            return "delay" if v else "never"
        return v


class Workload(Plugin):
    """Base: keep the tasks' RSS at demand(t), fault in at `fault_rate`, read files."""

    Params: ClassVar[type[BaseModel]] = WorkloadParams
    p: WorkloadParams

    def __init__(self, sim: World, params: WorkloadParams) -> None:
        super().__init__(sim, params)
        self.mem = sim.memory
        self.rng = sim.rng("workload")
        self.demand_bytes = 0
        self.tasks: list = []
        self._blocked_until = 0.0
        self._last_want = -1
        self._settled = False  # demand met and every task faulted in: nothing to do until demand moves
        self._faulting = False  # tasks still fault in (the last step ran out of budget or memory)
        self._poll: Poll | None = None  # the tick grid, once running
        self._dead = 0  # pages of demand whose tasks were killed for good (restart = "never")
        self._failed = False  # the systemd unit hit its start limit: nothing runs any more
        self._starts: list[float] = [0.0]  # start times within the rate-limit interval (the unit starts at 0)
        self.restarts = 0
        self._check_bounds()

    def _check_bounds(self) -> None:
        """Refuse a tick or a demand that would make the run endless or absurd, naming the key."""
        ticks = self.sim.scenario.duration / self.p.tick
        if ticks > MAX_TICKS_PER_RUN:
            raise ConfigError(
                "workload.tick",
                f"{self.p.tick:g} s over a duration of {self.sim.scenario.duration:g} s is {ticks:.3g} steps; "
                f"at most {MAX_TICKS_PER_RUN:,} per run",
            )
        limit = self.sim.guest.max_pfn << PAGE_SHIFT
        for key in DEMAND_KEYS:
            value = getattr(self.p, key, None)
            if isinstance(value, int) and value > limit:
                raise ConfigError(
                    f"workload.{key}",
                    f"{format_size(value)} is more than the guest can ever hold (guest.max_addr {format_size(limit)})",
                )
            if isinstance(value, int) and value // max(self.p.task_size, 1) > MAX_TASKS:
                raise ConfigError(
                    "workload.task_size",
                    f"{format_size(self.p.task_size)} tasks would need more than {MAX_TASKS:,} of them for "
                    f"workload.{key} = {format_size(value)}",
                )

    def demand(self, t: float) -> int:
        raise NotImplementedError

    def next_change(self, now: float) -> float:
        """The earliest time after `now` at which demand() may differ from demand(now). By default the next tick:
        a demand curve that does not say is polled every tick."""
        return now + self.p.tick

    def next_step(self, now: float) -> float:
        """When step() next has something to do if nothing else happens (a kill or a change of memory wakes the
        workload anyway): the next tick while tasks fault in, else the end of a restart delay or a change of
        demand. What a step at any other tick would do is nothing."""
        if self._settled:
            return self.next_change(now)
        if self._faulting or now >= self._blocked_until:
            return now
        return min(self._blocked_until, self.next_change(now))

    def start(self) -> None:
        """The first tick runs at 0 after the components started before this one (as its process did)."""
        env = self._env = self.sim.env
        self._alloc = self.sim.guest.alloc
        p = self.p
        tick = p.tick
        self._tick_eps = tick * 1e-9  # a change due at a tick's instant, within float rounding, is at that tick
        self._fault_pages = max(1, int(p.fault_rate * tick) >> PAGE_SHIFT)
        self._touch_pages = (p.touch_rate or p.fault_rate) / PAGE_SIZE  # per second of running
        self._cache_every = max(1, round(p.cache_interval / tick))
        self._cache_pages = int(p.cache_rate * tick * self._cache_every) >> PAGE_SHIFT
        self._cache_limit = p.cache_max >> PAGE_SHIFT
        self._cache_idle_gen = self._kswapd_gen = -1
        self._round_trip_gen = -1  # the cache idles after a read kswapd took back (_round_trip), at this gen
        self._step_watch = False
        # after the host's report at an instant both have (rank 0), as the two processes used to run
        poll = self._poll = Poll(env, [self.sim.guest.alloc.watch], env.now, tick, 1, self.tick)
        At(env, 0.0, URGENT).callbacks.append(lambda _: poll.run(0))

    def tick(self, k: int) -> int | None:
        """The work of tick k (at k * tick): fault-in, file reads, kswapd, what the tasks felt. Each piece runs only
        when what it depends on changed since it last had nothing to do. Returns the next tick at which one of
        them may have something to do (None: only after the guest's memory changed). The cache grows at the ticks
        with (k + 1) % cache_every == 0."""
        now = self._env._now  # noqa: SLF001 - env.now without the property call, once per tick
        alloc = self._alloc
        mem = self.mem
        if not self._settled or self.demand(now) >> PAGE_SHIFT != self._last_want:
            self.step(now, self._fault_pages)
        cache_every, cache_pages = self._cache_every, self._cache_pages
        before = None  # the zones before a file read that kswapd may take straight back
        read_gen = -1  # the zones' generation once the read was done
        if cache_pages and (k + 1) % cache_every == 0 and alloc.gen != self._cache_idle_gen:
            if not alloc.swap.slots:
                before = self._cache_zones()
            if not mem.read_files(cache_pages, self._cache_limit):
                self._cache_idle_gen = alloc.gen
                before = None
            read_gen = alloc.gen
        if alloc.gen != self._kswapd_gen:
            alloc.kswapd()
            self._kswapd_gen = alloc.gen
        if mem.pending:  # stalls, or memory on swap: what the tasks felt this tick
            mem.account(now, self.p.tick, self._touch_pages)
        elif before is not None and alloc.gen != read_gen and self._cache_zones() == before:
            # (if nothing moved after the read, the zones still hold what it read: no need to look)
            self._round_trip()
        if mem.pending or alloc.gen != self._kswapd_gen:
            return k + 1
        t = self.next_step(now)
        nxt: int | None = None
        if t < math.inf:
            nxt = self._poll.first_at_or_after(t - self._tick_eps)  # type: ignore[union-attr]
            if nxt <= k:
                nxt = k + 1
        if cache_pages and alloc.gen != self._cache_idle_gen:
            boundary = (k + 1) // cache_every * cache_every + cache_every - 1  # the next one after k
            if nxt is None or boundary < nxt:
                nxt = boundary
        return nxt

    def _cache_zones(self) -> list[tuple[int, int, int]]:
        """What a file read and kswapd change: the free lists and the page cache of the zones they use."""
        return list(map(_CACHE_STATE, self._alloc.zonelist(0, kernel_only=False)))

    def _round_trip(self) -> None:
        """The file read of this tick was taken straight back by kswapd: the zones are as they were before it. Read
        again from the same zones, the next one would do the same (without swap, kswapd reclaims only page
        cache) and the round trip would leave nothing in the zones for anyone to see. So the cache idles, as when
        a read finds no room, until the guest's memory changes or a process runs (onlining and the drivers change
        the zones without going through the allocator); then the next read runs at its instant. Not exact seed
        for seed (a run in hundreds can differ), the same in distribution (benchmarks/distribution_check.py)."""
        alloc = self.sim.guest.alloc
        self._cache_idle_gen = self._round_trip_gen = alloc.gen
        if not self._step_watch:
            self._step_watch = True
            self.sim.env.watch_steps(self._stepped)

    def _stepped(self) -> None:
        """A process ran after a round trip: if the cache still idles on it, its next read runs at its instant."""
        self._step_watch = False
        if self._round_trip_gen == self.sim.guest.alloc.gen:
            self._round_trip_gen = self._cache_idle_gen = -1
            poll = self._poll
            k = poll.next_instant()  # type: ignore[union-attr]
            poll.wake_at(k + (-(k + 1)) % self._cache_every)  # type: ignore[union-attr]

    def wake(self) -> None:
        """Something changed that the next tick must look at (a task was killed)."""
        if self._poll is not None:
            self._poll.wake_next()

    def step(self, now: float, fault_pages: int) -> None:
        want = self.demand(now) >> PAGE_SHIFT
        if want == self._last_want and self._settled:
            return
        self._last_want = want
        self.demand_bytes = want << PAGE_SHIFT
        want = 0 if self._failed else max(0, want - self._dead)
        self.tasks = [t for t in self.tasks if t.alive]
        have = sum([t.want for t in self.tasks])
        task_pages = max(1, self.p.task_size >> PAGE_SHIFT)
        while have > want and self.tasks:  # demand fell: the youngest tasks finish
            t = self.tasks.pop()
            have -= t.want
            self.mem.exit(t)
        blocked = now < self._blocked_until
        if not blocked:
            while have < want:
                size = want - have if want - have < task_pages else task_pages
                self.tasks.append(self.mem.spawn("worker", size, on_kill=self._killed))
                have += size
        budget = fault_pages
        pending = False
        for t in self.tasks:
            need = t.want - t.rss - t.swapped  # what it never touched yet (swapped pages come back by refault)
            if need <= 0:
                continue
            if budget <= 0:
                pending = True
                break
            got = self.mem.allocate(t, need if need < budget else budget)
            budget -= got if got else budget
            if t.rss + t.swapped < t.want:
                pending = True
        self._faulting = pending
        self._settled = not pending and not blocked and have == want

    def _killed(self, task) -> None:
        self._settled = False
        self.wake()
        policy = self.p.restart
        if policy == "never":
            self._dead += task.want
            return
        at = self.sim.env.now + self.p.restart_delay
        if policy == "systemd" and not self._may_start(at):
            return
        self.restarts += 1
        self._blocked_until = at

    def _may_start(self, at: float) -> bool:
        """systemd's start rate limit (StartLimitIntervalSec, StartLimitBurst), checked for a start at `at`.
        When it refuses, the unit fails: its processes are killed and it never starts again."""
        self._starts = [t for t in self._starts if t > at - self.p.start_limit_interval]
        if len(self._starts) < self.p.start_limit_burst:
            self._starts.append(at)
            return True
        self._failed = True
        self.sim.events.log(self.sim.env.now, "unit_failed", -1, "start-limit-hit")
        for t in list(self.tasks):
            self.mem.exit(t)
        self.tasks = []
        return False

    def metrics(self) -> dict:
        return {"task_restarts": self.restarts, "workload_failed": self._failed}


class IdleParams(WorkloadParams):
    pass


class Idle(Workload):
    """No demand: the guest only reads files."""

    Params = IdleParams
    p: IdleParams

    def demand(self, t: float) -> int:
        return 0

    def next_change(self, now: float) -> float:
        return math.inf


class ConstantParams(WorkloadParams):
    size: Size = 2 << 30


class Constant(Workload):
    Params = ConstantParams
    p: ConstantParams

    def demand(self, t: float) -> int:
        return self.p.size

    def next_change(self, now: float) -> float:
        return math.inf


class RampParams(WorkloadParams):
    start_size: Size = 512 << 20
    end_size: Size = 8 << 30
    start_time: Duration = 0.0
    ramp_time: Duration = 600.0


class Ramp(Workload):
    """Linear growth from start_size to end_size over ramp_time, then flat."""

    Params = RampParams
    p: RampParams

    def demand(self, t: float) -> int:
        p = self.p
        x = min(1.0, max(0.0, (t - p.start_time) / p.ramp_time)) if p.ramp_time else 1.0
        return int(p.start_size + x * (p.end_size - p.start_size))

    def next_change(self, now: float) -> float:
        """Flat before start_time and after the ramp; during it, every tick."""
        p = self.p
        if not p.ramp_time or p.start_size == p.end_size or now >= p.start_time + p.ramp_time:
            return math.inf
        return max(p.start_time, now + p.tick)


class BurstsParams(WorkloadParams):
    base: Size = 1 << 30
    burst: Size = 3 << 30
    on: Dist = Field(default_factory=lambda: Dist(dist="exponential", mean=60))
    off: Dist = Field(default_factory=lambda: Dist(dist="exponential", mean=120))


class Bursts(Workload):
    """On/off: `base` always, `base + burst` during bursts of random length."""

    Params = BurstsParams
    p: BurstsParams

    def __init__(self, sim: World, params: WorkloadParams) -> None:
        super().__init__(sim, params)
        self._on = False
        self._switch = self.p.off.sample(self.rng)

    def demand(self, t: float) -> int:
        while t >= self._switch:
            self._on = not self._on
            self._switch += max(self.p.tick, (self.p.on if self._on else self.p.off).sample(self.rng))
        return self.p.base + (self.p.burst if self._on else 0)

    def next_change(self, now: float) -> float:
        if now >= self._switch:  # the switches up to now drawn (as every tick used to draw them): the next is ahead
            self.demand(now)
        return self._switch


class RandomTasksParams(WorkloadParams):
    arrival_rate: float = Field(0.05, gt=0)  # tasks per second (Poisson)
    size: Dist = Field(default_factory=lambda: Dist(dist="lognormal", median=512 << 20, sigma=0.8))
    lifetime: Dist = Field(default_factory=lambda: Dist(dist="exponential", mean=300))
    max_tasks: int = Field(64, ge=1, le=MAX_TASKS)


class RandomTasks(Workload):
    """Tasks arrive (Poisson) with random sizes and lifetimes; a killed task may restart."""

    Params = RandomTasksParams
    p: RandomTasksParams

    def __init__(self, sim: World, params: WorkloadParams) -> None:
        super().__init__(sim, params)
        self._ends: dict[int, float] = {}
        self._next_arrival = float(self.rng.exponential(1 / self.p.arrival_rate))
        self._restarts: list[tuple[float, int, float]] = []

    def demand(self, t: float) -> int:
        return sum(task.want for task in self.tasks if task.alive) << PAGE_SHIFT

    def next_step(self, now: float) -> float:
        """The next arrival (while there is room for it), end of a task or restart; every tick while tasks fault
        in, or when a kill left demand_bytes behind (step() brings it up to date)."""
        if self._failed:
            return now if self.demand_bytes else math.inf
        if self._faulting or self.demand(now) != self.demand_bytes:
            return now
        t = min((self._ends.get(task.id, math.inf) for task in self.tasks if task.alive), default=math.inf)
        if sum(1 for task in self.tasks if task.alive) < self.p.max_tasks:
            t = min(t, self._next_arrival)
        return min(t, min((r[0] for r in self._restarts), default=math.inf))

    def step(self, now: float, fault_pages: int) -> None:
        p = self.p
        for task in [t for t in self.tasks if t.alive and self._ends.get(t.id, 1e300) <= now]:
            self.mem.exit(task)
        self.tasks = [t for t in self.tasks if t.alive]
        if self._failed:
            self.demand_bytes = 0
            return
        while self._next_arrival <= now and len(self.tasks) < p.max_tasks:
            size = max(1, int(p.size.sample(self.rng)) >> PAGE_SHIFT)
            self._start(now, size, p.lifetime.sample(self.rng))
            self._next_arrival += float(self.rng.exponential(1 / p.arrival_rate))
        for item in [r for r in self._restarts if r[0] <= now]:
            self._restarts.remove(item)
            self._start(now, item[1], item[2])
        self.demand_bytes = self.demand(now)
        budget = fault_pages
        for t in self.tasks:
            need = t.want - t.rss - t.swapped  # what it never touched yet (swapped pages come back by refault)
            if budget <= 0:
                break
            if need > 0:
                got = self.mem.allocate(t, min(need, budget))
                budget -= got if got else budget
        self._faulting = any(t.alive and t.rss + t.swapped < t.want for t in self.tasks)

    def _start(self, now: float, size: int, lifetime: float) -> None:
        task = self.mem.spawn("task", size, on_kill=self._task_killed)
        self._ends[task.id] = now + lifetime
        self.tasks.append(task)

    def _task_killed(self, task) -> None:
        self.wake()
        left = self._ends.pop(task.id, self.sim.env.now) - task.started
        if self.p.restart == "never":
            return
        at = self.sim.env.now + self.p.restart_delay
        if self.p.restart == "systemd" and not self._may_start(at):
            return
        self.restarts += 1
        self._restarts.append((at, task.want, max(left, self.p.tick)))


class TraceParams(WorkloadParams):
    path: str
    loop: bool = False

    @field_validator("path")
    @classmethod
    def _exists(cls, v):
        if not Path(v).is_file():
            raise ValueError(f"trace file not found: {v}")
        load_trace(v)  # validated now, before anything runs
        return v


def load_trace(path: str) -> list[tuple[float, int]]:
    """CSV rows `time,bytes` (header optional; sizes may be `2G`); times must not decrease."""
    points: list[tuple[float, int]] = []
    lineno = 0
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for lineno, row in enumerate(csv.reader(fh), start=1):
                _trace_row(path, lineno, row, points)
    except (csv.Error, UnicodeDecodeError, OSError) as exc:
        raise TraceError(path, lineno + 1, f"cannot read: {exc}") from None
    if not points:
        raise TraceError(path, 1, "no data rows")
    return points


def _trace_row(path: str, lineno: int, row: list[str], points: list[tuple[float, int]]) -> None:
    """Check one row of a trace and append its point."""
    if not row or row[0].strip().startswith("#"):
        return
    if lineno == 1 and row[0].strip().lower() in ("time", "t", "time_s"):
        return
    if len(row) != 2:
        raise TraceError(path, lineno, f"expected 2 columns (time, bytes), got {len(row)}")
    try:
        t = parse_duration(row[0].strip())
    except ValueError as exc:
        raise TraceError(path, lineno, f"bad time {row[0]!r}: {exc}") from None
    try:
        b = parse_size(row[1].strip())
    except ValueError as exc:
        raise TraceError(path, lineno, f"bad size {row[1]!r}: {exc}") from None
    if points and t < points[-1][0]:
        raise TraceError(path, lineno, f"time {t} goes backwards (previous {points[-1][0]})")
    points.append((t, b))


class TraceReplay(Workload):
    """Piecewise-constant demand from a CSV trace."""

    Params = TraceParams
    p: TraceParams

    def __init__(self, sim: World, params: WorkloadParams) -> None:
        super().__init__(sim, params)
        self.points = load_trace(self.p.path)
        peak = max(b for _, b in self.points)
        if peak > self.sim.guest.max_pfn << PAGE_SHIFT:
            raise ConfigError(
                "workload.path",
                f"{self.p.path}: demand {format_size(peak)} is more than the guest can ever hold "
                f"(guest.max_addr {format_size(self.sim.guest.max_pfn << PAGE_SHIFT)})",
            )
        self._i = 0
        self._period = self.points[-1][0] or 1.0

    def demand(self, t: float) -> int:
        if self.p.loop:
            t = t % self._period
            if t < self.points[self._i][0]:
                self._i = 0
        while self._i + 1 < len(self.points) and self.points[self._i + 1][0] <= t:
            self._i += 1
        return self.points[self._i][1] if t >= self.points[0][0] else 0

    def next_change(self, now: float) -> float:
        """The next point of the trace (with `loop`, in the next period once this one is over)."""
        self.demand(now)
        points = self.points
        t = now % self._period if self.p.loop else now
        if t < points[0][0]:
            nxt = points[0][0]
        elif self._i + 1 < len(points):
            nxt = points[self._i + 1][0]
        elif self.p.loop:
            nxt = self._period  # the period starts over
        else:
            return math.inf
        return now + (nxt - t)
