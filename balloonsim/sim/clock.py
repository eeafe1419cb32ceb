"""Periodic checks that run only when they could see something new, in the place a fixed-period timer had.

The kernel and the host poll at fixed periods (hv_balloon's 1 s pressure report and the host reading it, kswapd
looking at the watermarks after memory moved, a workload's fault-in tick), and the model keeps their grids: a
check runs at the instants `origin + k * period`. But a check whose inputs did not change since it last ran does
nothing, so most of those instants are idle. A `Poll` runs its check only at the instants its owner asks for (a
timer it really has: a demand switch, a restart delay, the next step of a fault-in) and at the first instant
after something it watches changed (`PageAllocator.watch`). A quiet guest costs nothing per period, only per
change. The check is a plain function the Clock calls at its instant, between SimPy's events: no SimPy event
and no process switch per check.

Skipping instants must not reorder what happens at one instant. SimPy runs the events of an instant in the order
they were scheduled, and a process waking every period scheduled its timeout for instant g when it ran at
g - period. So a check at g runs after the events of g scheduled at or before g - period (`made_at`: a
timeout at least a period long), before those scheduled later (`earlier`), and checks counted as scheduled at the same
moment run by rank (the host's report before the workload's tick, as their processes used to). The time series
is sampled in the same places (balloonsim.sim.recorder).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from heapq import heappop, heappush
from typing import Protocol

import simpy
from simpy.core import StopSimulation
from simpy.events import NORMAL, URGENT, Timeout

__all__ = ["EVENT_RANK", "NORMAL", "URGENT", "At", "Clock", "Observer", "Poll", "earlier", "made_at"]

INF = math.inf
_EPS = 1e-9  # seconds: scheduling times this close are the same moment (sums of float periods)


class At(simpy.Event):
    """A timeout with a priority (simpy.Timeout is always NORMAL): it fires `delay` from now."""

    def __init__(self, env: simpy.Environment, delay: float, priority: int = NORMAL) -> None:
        # what simpy.Timeout.__init__ does, with the priority given
        self.env = env
        self.callbacks = []
        self._value = None
        self._ok = True
        self.made_at = env.now
        env.schedule(self, priority, delay)  # type: ignore[arg-type]


def made_at(event: simpy.Event, at: float) -> float:
    """When `event`, scheduled for time `at`, was scheduled: a timeout at `at - delay`, an At when it was made,
    anything else (an event triggered for the instant itself) at `at`."""
    if isinstance(event, Timeout):
        return at - event._delay  # noqa: SLF001 - when it was scheduled; simpy keeps only this
    if isinstance(event, At):
        return event.made_at
    return at


def earlier(made: float, rank: int, other_made: float, other_rank: int) -> bool:
    """Whether something scheduled at (made, rank) comes before something of the same instant scheduled at
    (other_made, other_rank): scheduled earlier, or at the same moment with a lower rank. SimPy events have rank
    EVENT_RANK: a timeout as long as a poll's period comes before the poll (it was scheduled by then)."""
    if abs(made - other_made) <= _EPS:
        return rank < other_rank
    return made < other_made


EVENT_RANK = -3  # SimPy's own events, among things scheduled at the same moment


class Observer(Protocol):
    """What follows the run between its events (the recorder)."""

    next_t: float  # its next instant (INF: none)

    def catch_up(self, t: float, made: float, rank: int) -> None:
        """Handle its instants that come before the next thing the run does: at t, scheduled at (made, rank)."""


class Clock(simpy.Environment):
    """SimPy's environment that also runs timed checks (`add_timer`), each in the place of a timeout scheduled at
    its `made_at`, and lets an observer in between everything it runs (`run_until`)."""

    def __init__(self) -> None:
        super().__init__()
        self._timers: list[list] = []  # heap of [at, made_at, rank, seq, poll, k]; poll None: cancelled
        self._seq = 0
        self.checks = 0  # timed checks run
        self._step_watchers: list[Callable[[], None]] = []

    def add_timer(self, at: float, made_at: float, rank: int, poll: Poll, k: int) -> list:
        """Run `poll.run(k)` at time `at`, placed among the events of `at` as a timeout scheduled at `made_at` by
        a process of this rank. Returns a handle for `cancel`."""
        entry = [at, made_at, rank, self._seq, poll, k]
        self._seq += 1
        heappush(self._timers, entry)
        return entry

    def watch_steps(self, callback: Callable[[], None]) -> None:
        """Call `callback` (once) after the next SimPy event: whatever the processes do (a driver's hot-add, an
        agent's onlining) happens in one."""
        self._step_watchers.append(callback)

    @staticmethod
    def cancel(handle: list | None) -> None:
        if handle is not None:
            handle[4] = None  # the poll: the loop drops the entry when it comes up

    def run_until(self, until: float, observer: Observer) -> None:
        """env.run(until=until) with the timed checks and the observer: before each step, whatever comes first
        of the next SimPy event and the next check runs, the observer catching up before it."""
        stop = At(self, until - self._now, URGENT)  # as Environment.run(until=...) schedules it
        stop.callbacks.append(StopSimulation.callback)
        queue = self._queue
        timers = self._timers
        step = self.step
        try:
            while True:
                t, priority, _, event = queue[0]  # never empty: the stop event is in it
                if timers:
                    at, made, rank, _, poll, k = timers[0]
                    if poll is None:
                        heappop(timers)
                        continue
                    if at < t or (
                        at == t and priority != URGENT and not earlier(made_at(event, t), EVENT_RANK, made, rank)
                    ):
                        if observer.next_t <= at:
                            observer.catch_up(at, made, rank)
                        heappop(timers)
                        self._now = at
                        self.checks += 1
                        poll.run(k)
                        continue
                if observer.next_t <= t:
                    observer.catch_up(t, -INF if priority == URGENT else made_at(event, t), EVENT_RANK)
                step()
                if self._step_watchers:
                    watchers, self._step_watchers = self._step_watchers, []
                    for w in watchers:
                        w()
        except StopSimulation:
            pass


class Poll:
    """A check on the grid `origin + k * period` that runs only where it may find something new: at the instants
    its owner asks for and at the first instant after each change it watches. The owner's `check(k)` does the
    work of instant k and returns the next instant it wants (None: none of its own)."""

    __slots__ = ("env", "origin", "period", "rank", "check", "_k", "_handle", "_running", "_sources", "_watching")

    def __init__(
        self,
        env: Clock,
        watch: Sequence[Callable[[Callable[[], None]], None]],
        origin: float,
        period: float,
        rank: int,
        check: Callable[[int], int | None],
    ) -> None:
        """Each of `watch` (PageAllocator.watch, Clock.watch_steps) calls a callback once at the next change of
        what the poll depends on; `rank` orders polls whose timeouts would have been scheduled at one moment."""
        self.env = env
        self.origin = origin
        self.period = period
        self.rank = rank
        self.check = check
        self._k: int | None = None  # the instant of the next check
        self._handle: list | None = None
        self._running = False
        self._sources = [(w, partial(self._changed, i)) for i, w in enumerate(watch)]
        self._watching = [False] * len(self._sources)

    def instant(self, k: int) -> float:
        return self.origin + k * self.period

    def first_at_or_after(self, t: float) -> int:
        """Index of the first grid instant >= t."""
        k = math.ceil((t - self.origin) / self.period)
        if self.instant(k) < t:  # float rounding
            k += 1
        elif self.instant(k - 1) >= t:
            k -= 1
        return k

    def first_after(self, t: float) -> int:
        """Index of the first grid instant > t."""
        k = math.floor((t - self.origin) / self.period) + 1
        if self.instant(k) <= t:  # float rounding
            k += 1
        elif self.instant(k - 1) > t:
            k -= 1
        return k

    def run(self, k: int) -> None:
        """Run the check of instant k now (the owner's first, from its start-up), then follow its answer. (A check
        that raises ends the run: nothing needs restoring.)"""
        self._k = None
        self._running = True
        nxt = self.check(k)
        self._running = False
        self.follow(nxt)

    def follow(self, k: int | None) -> None:
        """Check next at instant k (None: none of its own), and at the first instant after a change."""
        watching = self._watching
        for i, (watch, callback) in enumerate(self._sources):
            if not watching[i]:
                watching[i] = True
                watch(callback)
        if k is not None:
            self._schedule(k)

    def wake_next(self) -> None:
        """Check at the first grid instant after now (something changed that the check must look at)."""
        if self._running:  # the check decides its next instant itself, after it has seen everything
            return
        k = self.first_after(self.env._now)  # noqa: SLF001 - env.now, without the property call
        if self._k is None or k < self._k:
            if self._handle is not None:
                self._handle[4] = None  # Clock.cancel
            self._schedule(k)

    def _schedule(self, k: int) -> None:
        self._k = k
        at = self.origin + k * self.period
        self._handle = self.env.add_timer(at, at - self.period, self.rank, self, k)

    def _changed(self, source: int) -> None:
        self._watching[source] = False
        self.wake_next()
