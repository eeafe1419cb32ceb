"""Periodic checks that run only when they could see something new, in the place a fixed-period timer had.

The kernel and the host poll at fixed periods (hv_balloon's 1 s pressure report and the host reading it, kswapd
looking at the watermarks after memory moved, a workload's fault-in tick), and the model keeps their grids: a
check runs at the instants `origin + k * period`. But a check whose inputs did not change since it last ran does
nothing, so most of those instants are idle. A `Poll` runs its check only at the instants its owner asks for (a
timer it really has: a demand switch, a restart delay, the next step of a fault-in) and at the first instant
after something it watches changed (`PageAllocator.watch`, `Clock.watch_steps`). A quiet guest costs nothing
per period, only per change. The check is a plain function the Clock calls at its instant, between SimPy's
events: no SimPy event and no process switch per check.

Skipping instants must not reorder what happens at one instant. SimPy runs the events of an instant in the order
they were scheduled (their event id), and a process waking every period scheduled its timeout for instant g when
it ran at g - period, in that instant's order; so the timeout's id depends on where the process's run at
g - period fell, which depends on its run at g - 2 * period, and so on. The Clock keeps the ids itself and a
record of what ran (`_Record`), and works out the place a skipped poll's timeout would have had when it is
needed (a check runs, or shares its instant with something else), walking the record from the poll's last known
place: a step per thing that ran, not per skipped instant. The time series is sampled in the same places
(balloonsim.sim.recorder).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from heapq import heappop, heappush
from operator import itemgetter
from typing import Protocol

import simpy
from simpy.core import SimTime, StopSimulation
from simpy.events import NORMAL, URGENT, EventPriority

__all__ = ["NORMAL", "URGENT", "At", "Clock", "Observer", "Poll"]

INF = math.inf
Key = tuple  # (time, priority, event id): SimPy's order of events


class At(simpy.Event):
    """A timeout with a priority (simpy.Timeout is always NORMAL): it fires `delay` from now."""

    def __init__(self, env: simpy.Environment, delay: float, priority: int = NORMAL) -> None:
        # what simpy.Timeout.__init__ does, with the priority given
        self.env = env
        self.callbacks = []
        self._value = None
        self._ok = True
        env.schedule(self, priority, delay)  # type: ignore[arg-type]


def timeout_key(at: float, eid: int, made_at: float, rank: int) -> Key:
    """The place of a timeout for `at` scheduled at time `made_at` when the next event id was `eid`: just before
    that event. Timeouts the Clock places do not take ids, so two may share one: the earlier made goes first,
    and of two made at one time, the lower rank (the process that ran first)."""
    return (at, NORMAL, eid - 0.5, made_at, rank)


class Observer(Protocol):
    """What follows the run between its events (the recorder)."""

    next_t: float  # its next instant (INF: none)

    def has_instant(self, t: float) -> bool:
        """Whether `t` is one of its instants."""

    def catch_up(self, key: Key) -> None:
        """Handle its instants placed before `key`, the next thing the run does."""


class _Record:
    """What ran, in order: each thing's key and the next event id after it. A skipped timeout scheduled at the
    place of an earlier one got the id that was next when the run passed that place."""

    __slots__ = ("keys", "after", "base")

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.after: list[int] = []  # the next event id once keys[i] had run
        self.base = 0  # index of keys[0] since the start (the record is trimmed from the front)

    def trim(self, keep_from: int) -> None:
        """Forget what ran before position `keep_from` (counted from the start)."""
        drop = keep_from - self.base
        if drop > 0:
            del self.keys[:drop]
            del self.after[:drop]
            self.base = keep_from


class Clock(simpy.Environment):
    """SimPy's environment that also runs timed checks (Poll), each in the place of the timeout a process waking
    every period would have had, and lets an observer in between everything it runs (`run_until`). It numbers
    the events itself (SimPy's own `schedule`, with a counter it can read) and keeps the `_Record`."""

    def __init__(self) -> None:
        super().__init__()
        self.next_eid = 0  # the id the next scheduled event gets
        self._timers: list[list] = []  # heap of [at, seq, poll, k]; poll None: cancelled
        self._seq = 0
        self._step_watchers: list[Callable[[], None]] = []
        self.record = _Record()
        self._polls: list[Poll] = []
        self.checks = 0  # timed checks run
        self.current: Key = (0.0, URGENT)  # the key of what runs now

    def schedule(self, event: simpy.Event, priority: EventPriority = NORMAL, delay: SimTime = 0) -> None:
        """SimPy's Environment.schedule, numbering the events with a counter the Clock can read."""
        heappush(self._queue, (self._now + delay, priority, self.next_eid, event))
        self.next_eid += 1

    @property
    def scheduled_events(self) -> int:
        """Events SimPy has scheduled so far."""
        return self.next_eid

    def watch_steps(self, callback: Callable[[], None]) -> None:
        """Call `callback` (once) after the next SimPy event: whatever the processes do (a driver's hot-add, an
        agent's onlining) happens in one."""
        self._step_watchers.append(callback)

    def _first_of(self, at: float) -> tuple[list, Key]:
        """Of the checks due at `at`, the one placed first, and its place; the heap order among them is made to
        follow their places."""
        timers = self._timers
        same = []
        while timers and timers[0][0] == at:
            entry = heappop(timers)
            if entry[2] is not None:
                same.append((entry[2].place(entry[3]), entry))
        same.sort(key=itemgetter(0))
        for order, (_, entry) in enumerate(same):
            entry[1] = order - len(same)  # ahead of any check added at this time later, in the order of places
            heappush(timers, entry)
        return same[0][1], same[0][0]

    def run_until(self, until: float, observer: Observer) -> None:
        """env.run(until=until) with the timed checks and the observer: before each step, whatever comes first
        of the next SimPy event and the next check runs, the observer catching up before it."""
        stop = At(self, until - self._now, URGENT)  # as Environment.run(until=...) schedules it
        stop.callbacks.append(StopSimulation.callback)
        queue = self._queue
        timers = self._timers
        keys, after = self.record.keys, self.record.after
        step = self.step
        try:
            while True:
                top = queue[0]  # never empty: the stop event is in it
                t = top[0]
                if timers:
                    entry = timers[0]
                    if entry[2] is None:  # cancelled
                        heappop(timers)
                        continue
                    at = entry[0]
                    if at <= t:
                        key: Key | None = None
                        if len(timers) > 1 and (timers[1][0] == at or (len(timers) > 2 and timers[2][0] == at)):
                            entry, key = self._first_of(at)  # checks sharing their instant go by place
                        if at == t or (observer.next_t <= at and observer.has_instant(at)):  # it shares its
                            key = key or entry[2].place(entry[3])  # instant: its place matters
                        if at < t or (key is not None and key < top[:3]):
                            if observer.next_t <= at:
                                observer.catch_up(key or (at, URGENT))  # no instant of its at `at`
                            heappop(timers)
                            self._now = at
                            self.checks += 1
                            entry[2].run(entry[3], key)
                            continue
                key = top[:3]
                if observer.next_t <= t:
                    observer.catch_up(key)
                self.current = key
                step()
                keys.append(key)
                after.append(self.next_eid)
                if self._step_watchers:
                    watchers, self._step_watchers = self._step_watchers, []
                    for w in watchers:
                        w()
                if len(keys) > 4096:
                    self._trim()
        except StopSimulation:
            pass

    def _trim(self) -> None:
        """Keep the record from the earliest place a poll may still have to work out."""
        for p in self._polls:
            k = p.first_at_or_after(self._now)
            if p._anchor_k < k:  # noqa: SLF001 - the Clock and its polls work together
                p.place(k)  # every poll's instants before now: placed
        self.record.trim(min(p.anchor_at for p in self._polls) if self._polls else self.record.base)


class Poll:
    """A check on the grid `origin + k * period` that runs only where it may find something new: at the instants
    its owner asks for and at the first instant after each change it watches. The owner's `check(k)` does the
    work of instant k and returns the next instant it wants (None: none of its own)."""

    __slots__ = (
        "env",
        "origin",
        "period",
        "rank",
        "check",
        "_k",
        "_handle",
        "_running",
        "_sources",
        "_watching",
        "_anchor_k",
        "_anchor_eid",
        "anchor_at",
        "_last_run",
        "_unit",
    )

    def __init__(
        self,
        env: Clock,
        watch: Sequence[Callable[[Callable[[], None]], None]],
        origin: float,
        period: float,
        rank: int,
        check: Callable[[int], int | None],
    ) -> None:
        """Made when the owner's process runs at `origin` (instant 0) and would schedule its first timeout. Each
        of `watch` (PageAllocator.watch, Clock.watch_steps) calls a callback once at the next change of what the
        poll depends on; `rank` orders polls whose processes ran at one moment."""
        self.env = env
        self.origin = origin
        self.period = period
        self.rank = rank
        self.check = check
        self._unit = origin == 0.0 and period == 1.0  # instant k is the float k: exact, no rounding to correct
        self._k: int | None = None  # the instant of the next check
        self._handle: list | None = None
        self._running = False
        self._last_run = 0  # the last instant whose check ran (the owner runs at instant 0 when the poll is made)
        self._sources = [(w, partial(self._changed, i)) for i, w in enumerate(watch)]
        self._watching = [False] * len(self._sources)
        # the latest instant whose timeout's id is known, that id, and where in the record the search goes on
        self._anchor_k = 1
        self._anchor_eid = env.next_eid
        self.anchor_at = env.record.base + len(env.record.keys)
        env._polls.append(self)  # noqa: SLF001 - the Clock's own list of its polls

    def instant(self, k: int) -> float:
        return self.origin + k * self.period

    def first_at_or_after(self, t: float) -> int:
        """Index of the first grid instant >= t."""
        if self._unit:
            return math.ceil(t)
        origin, period = self.origin, self.period
        k = math.ceil((t - origin) / period)
        if origin + k * period < t:  # float rounding
            k += 1
        elif origin + (k - 1) * period >= t:
            k -= 1
        return k

    # -- places ----------------------------------------------------------------------------------------
    def place(self, k: int) -> Key:
        """Where the timeout for instant k of a process waking every period sat among the events of its instant:
        scheduled when the process ran at k - 1, which sat where the timeout for k - 1 did, and so on from the
        last instant whose place is known. A timeout ran at the first step of the run whose event came after it;
        the next timeout took the id that was next then. Between two things that ran, every skipped instant gets
        the same id (nothing was scheduled meanwhile), so the walk takes a step per thing that ran, not per
        instant. (The record is in the order things ran, which is not quite the order of their keys: an URGENT
        event scheduled for the current instant runs after the event that scheduled it.)"""
        j, eid = self._anchor_k, self._anchor_eid  # k >= j: a poll is asked only about instants still ahead of it
        if j == k:
            t = self.origin + k * self.period
            return (t, NORMAL, eid - 0.5, t - self.period, self.rank)  # self._key(k, eid)
        record = self.env.record
        keys, after, base = record.keys, record.after, record.base
        origin, period, rank = self.origin, self.period, self.rank
        i = self.anchor_at - base
        n = len(keys)
        while j < k:
            t = origin + j * period
            here = (t, NORMAL, eid - 0.5, t - period, rank)  # self._key(j, eid)
            while i < n and not keys[i] > here:
                i += 1
            if i == n:  # nothing ran after it yet: every instant up to k is placed after the last thing that ran
                if n:
                    eid = after[n - 1]
                j = k
                break
            if i > 0:
                eid = after[i - 1]  # the timeout for j + 1 was scheduled between things i - 1 and i
            nxt = keys[i][0]
            j += 1
            if nxt > t + period:  # the instants before the next thing all take the same id
                first = self.first_at_or_after(nxt)
                if first > j:
                    j = first if first < k else k
        self._anchor_k, self._anchor_eid, self.anchor_at = j, eid, base + i
        return self._key(k, eid)

    def _key(self, k: int, eid: int) -> Key:
        t = self.origin + k * self.period
        return (t, NORMAL, eid - 0.5, t - self.period, self.rank)  # timeout_key(t, eid, t - period, rank)

    # -- the owner's side --------------------------------------------------------------------------------
    def run(self, k: int, key: Key | None = None) -> None:
        """Run the check of instant k now, then follow its answer. A process waking at instant k would schedule
        its next timeout at the end of its run: that place is now known."""
        env = self.env
        key = key or self.place(k)
        env.current = key
        self._last_run = k
        self._k = None
        self._running = True
        nxt = self.check(k)
        self._running = False
        record = env.record
        eid = env.next_eid
        keys = record.keys
        keys.append(key)
        record.after.append(eid)
        self._anchor_k, self._anchor_eid = k + 1, eid
        self.anchor_at = record.base + len(keys)
        if False in self._watching:  # self.follow(nxt), without a call
            self._watch()
        if nxt is not None:
            self._schedule(nxt)

    def follow(self, k: int | None) -> None:
        """Check next at instant k (None: none of its own), and at the first instant after a change."""
        if False in self._watching:
            self._watch()
        if k is not None:
            self._schedule(k)

    def _watch(self) -> None:
        """Ask each source not watched yet to call back at its next change."""
        watching = self._watching
        for i, (watch, callback) in enumerate(self._sources):
            if not watching[i]:
                watching[i] = True
                watch(callback)

    def wake_next(self) -> None:
        """Check at the first grid instant whose check has not run yet (something changed that the check must look
        at): this instant's, if its place comes after what runs now, else the next one's."""
        if self._running:  # the check decides its next instant itself, after it has seen everything
            return
        self.wake_at(self.next_instant())

    def next_instant(self) -> int:
        """The first grid instant whose check has not run yet and would come after what runs now."""
        env = self.env
        now = env._now  # noqa: SLF001 - env.now without the property call (the Clock and its polls work together)
        k = self.first_at_or_after(now)
        if self.origin + k * self.period == now and (k <= self._last_run or not self.place(k) > env.current):
            k += 1
        return k

    def wake_at(self, k: int) -> None:
        """Check at instant k (one at or after next_instant()) unless a check is due sooner."""
        if self._k is None or k < self._k:
            if self._handle is not None:
                self._handle[2] = None  # cancelled: the loop drops it
            self._schedule(k)

    def _schedule(self, k: int) -> None:
        self._k = k
        env = self.env
        entry = self._handle = [self.origin + k * self.period, env._seq, self, k]  # at instant(k); see Clock._timers
        env._seq += 1  # noqa: SLF001 - the Clock and its polls work together
        heappush(env._timers, entry)  # noqa: SLF001

    def _changed(self, source: int) -> None:
        self._watching[source] = False
        if not self._running:  # wake_next(): a change the check makes itself needs no wake-up
            self.wake_at(self.next_instant())
