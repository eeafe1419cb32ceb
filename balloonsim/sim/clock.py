"""Periodic checks that wake only when they could see something new.

The kernel and the host poll at fixed periods (hv_balloon's 1 s pressure report and the host reading it, kswapd
looking at the watermarks after memory moved, a workload's fault-in tick), and the model keeps their grids: a
check runs at the instants `origin + k * period`. But a check whose inputs did not change since it last ran does
nothing, so most of those instants are idle. A `Poll` sleeps until one of two things: an instant of its grid the
poller asked for (a timer it really has: a demand switch, a restart delay, the next step of a fault-in), or the
first instant of its grid after the guest's memory changed (`PageAllocator.watch`). A quiet guest then costs
nothing per second, only per change.

A change at time t is seen by the poll at the first grid instant strictly after t: a poll at instant g reads the
state as it was before anything else happened at g (it is scheduled with the priority it is given; URGENT puts
it ahead of the ordinary events of its instant), which is also what a fixed-period poll did when its timeout had
been scheduled a period before.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import simpy
from simpy.events import NORMAL, URGENT

if TYPE_CHECKING:
    from balloonsim.kernel.page_alloc import PageAllocator

__all__ = ["NORMAL", "URGENT", "Alarm", "At", "Poll"]

INF = math.inf


class At(simpy.Event):
    """A timeout with a priority (simpy.Timeout is always NORMAL): it fires `delay` from now."""

    def __init__(self, env: simpy.Environment, delay: float, priority: int = NORMAL) -> None:
        # what simpy.Timeout.__init__ does, with the priority given
        self.env = env
        self.callbacks = []
        self._value = None
        self._ok = True
        env.schedule(self, priority, delay)  # type: ignore[arg-type]


class Alarm:
    """One sleeping process's wake-up: at a time it chose, or earlier when `wake_by` asks.

    SimPy cannot cancel a scheduled event. Moving the wake-up earlier schedules a new one and moves the process's
    resume onto it, so the old one later fires into nothing (one heap entry, no process step)."""

    __slots__ = ("env", "priority", "at", "_event")

    def __init__(self, env: simpy.Environment, priority: int = NORMAL) -> None:
        self.env = env
        self.priority = priority
        self.at = INF
        self._event: simpy.Event | None = None

    def sleep(self, at: float) -> simpy.Event:
        """The event for the process to yield: it fires at `at` (INF: only when woken)."""
        env = self.env
        self.at = at
        ev = env.event() if at == INF else At(env, max(0.0, at - env.now), self.priority)
        self._event = ev
        return ev

    def wake_by(self, at: float) -> None:
        """Wake no later than `at`. Nothing to do while the process runs (it decides its next sleep itself) or
        when it already wakes by then."""
        ev = self._event
        if ev is None or at >= self.at or ev.callbacks is None:
            return
        new = At(self.env, max(0.0, at - self.env.now), self.priority)
        new.callbacks, ev.callbacks = ev.callbacks, []
        self._event, self.at = new, at


class Poll:
    """A check on the grid `origin + k * period` that runs only where it may find something new: at the instants
    its owner asks for, and at the first instant after each change of the guest's memory."""

    __slots__ = ("env", "alloc", "origin", "period", "alarm", "_watching")

    def __init__(
        self, env: simpy.Environment, alloc: PageAllocator, origin: float, period: float, priority: int = NORMAL
    ) -> None:
        self.env = env
        self.alloc = alloc
        self.origin = origin
        self.period = period
        self.alarm = Alarm(env, priority)
        self._watching = False

    def index(self, t: float) -> int:
        """The grid index of instant `t` (which is on the grid)."""
        return round((t - self.origin) / self.period)

    def instant(self, k: int) -> float:
        return self.origin + k * self.period

    def first_at_or_after(self, t: float) -> int:
        """Index of the first grid instant >= t."""
        k = math.ceil((t - self.origin) / self.period)
        if self.instant(k) < t:  # float rounding
            k += 1
        elif k > 0 and self.instant(k - 1) >= t:
            k -= 1
        return k

    def first_after(self, t: float) -> int:
        """Index of the first grid instant > t."""
        k = self.first_at_or_after(t)
        return k + 1 if self.instant(k) <= t else k

    def sleep(self, k: int | None) -> simpy.Event:
        """Sleep until grid instant `k` (None: no instant of its own) or the first one after a memory change."""
        if not self._watching:
            self._watching = True
            self.alloc.watch(self._changed)
        return self.alarm.sleep(INF if k is None else self.instant(k))

    def _changed(self) -> None:
        self._watching = False
        self.alarm.wake_by(self.instant(self.first_after(self.env.now)))
