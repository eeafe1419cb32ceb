"""The time series of a run: one row every `sample_interval`, made only where something changed.

A row is what the guest shows at a sample instant (MemTotal, MemFree, demand, page cache, target, blocks, the PSI
averages, swap). Between two events nothing in it changes except the PSI averages, which decay on their own 2 s
clock. So the recorder is not a SimPy process waking at every instant: the run loop (Clock.run_until) calls
`catch_up` before the next thing it runs, and every sample instant that passed gets the row of the state the last
one left. While PSI is idle those rows are all equal and are kept as one row and a count; the arrays, and a
DataFrame from them, are built only when someone reads the time series.

A sample at instant s shows the state a recorder process waking every interval saw: its timeout for s was
scheduled when it took the sample before, so it comes after the events of s scheduled at or before s - interval
and before the later ones (balloonsim.sim.clock). Sample 0 is the guest as its components' start-up left it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from balloonsim.sim.clock import Key, timeout_key
from balloonsim.sim.psi import FIXED_1
from balloonsim.units import PAGE_SHIFT, PMD_PAGES

if TYPE_CHECKING:
    import pandas as pd

    from balloonsim.plugin import World
    from balloonsim.sim.clock import Clock
    from balloonsim.sim.workloads import Workload

TIMESERIES_COLUMNS = [
    "t",
    "memtotal_bytes",
    "memfree_bytes",
    "demand_bytes",
    "pagecache_bytes",
    "target_bytes",
    "blocks_added",
    "blocks_online",
    "stalled",  # fraction of the sample interval in PSI memory SOME
    "oom_kills",
    "psi_some_avg10",  # /proc/pressure/memory averages at the sample, as fractions
    "psi_some_avg60",
    "psi_full_avg10",
    "psi_full_avg60",
    "swap_used_bytes",
    "swap_in_pages",  # pswpin so far
    "swap_out_pages",  # pswpout so far
]
_FLOAT_COLUMNS = {"t", "stalled", "psi_some_avg10", "psi_some_avg60", "psi_full_avg10", "psi_full_avg60"}
_PSI_PCT = 100 * FIXED_1  # a PSI average (fixed-point percent) as a fraction
_NO_PRESSURE = (0.0, 0.0, 0.0, 0.0, 0, 0, 0)  # the pressure columns of a guest that never stalled nor swapped
_RANK = 2  # of timeouts made at one moment, a sample's comes after the components' (their processes ran first)

Row = tuple  # the columns after `t`, in TIMESERIES_COLUMNS order


class Samples:
    """The rows of one run, run-length coded (sample 0 on, each row with how many samples share it): what a
    RunResult keeps until its time series is read."""

    __slots__ = ("interval", "counts", "rows", "last")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.counts: list[int] = []
        self.rows: list[Row] = []
        self.last: tuple[float, Row] | None = None  # a sample off the grid: the one taken when the guest crashed

    def __len__(self) -> int:
        return sum(self.counts) + (self.last is not None)

    def drop_last(self) -> None:
        """Forget the last sample (a crash sample replaces it)."""
        if self.counts:
            self.counts[-1] -= 1
            if not self.counts[-1]:
                self.counts.pop()
                self.rows.pop()

    def columns(self) -> dict[str, np.ndarray]:
        """One array per column of TIMESERIES_COLUMNS."""
        counts = np.array(self.counts, dtype=np.int64)
        t = np.arange(int(counts.sum()), dtype=np.float64) * self.interval
        out: dict[str, np.ndarray] = {}
        names = TIMESERIES_COLUMNS[1:]
        for j, name in enumerate(names):
            dtype = np.float64 if name in _FLOAT_COLUMNS else np.int64
            out[name] = np.repeat(np.array([row[j] for row in self.rows], dtype=dtype), counts)
        if self.last is not None:
            t = np.append(t, self.last[0])
            for j, name in enumerate(names):
                out[name] = np.append(out[name], np.array(self.last[1][j], dtype=out[name].dtype))
        return {"t": t, **out}

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.columns(), columns=TIMESERIES_COLUMNS)


class Recorder:
    """Takes the samples of one run as the run passes their instants (see the module docstring)."""

    def __init__(self, sim: World, workload: Workload, clock: Clock) -> None:
        self.sim = sim
        self.workload = workload
        self.interval = sim.scenario.sample_interval
        self.end = sim.scenario.duration
        self.samples = Samples(self.interval)
        self.next_k = 0
        self.next_t = math.inf  # nothing before start()
        self._zones = list(sim.guest.alloc.iter_zones())
        self._mem = sim.memory
        self._guest = sim.guest
        self._clock = clock
        self._key: Key = ()  # the place of the next sample among the events of its instant
        self._last_some = 0.0
        self.memfree_min = sim.guest.alloc.total("free") << PAGE_SHIFT

    def start(self) -> None:
        """Sample 0: the guest as its components' start-up left it."""
        self.samples.counts.append(1)
        self.samples.rows.append(self._row(0.0, self._mem.psi.idle))
        self._set_next(1)

    def _set_next(self, k: int) -> None:
        """Sample k is next; its timeout would be scheduled now, after the sample before."""
        self.next_k = k
        t = k * self.interval
        self.next_t = t if t < self.end else math.inf  # none left: the run loop stops asking
        self._key = timeout_key(t, self._clock.next_eid, t - self.interval, _RANK)

    def has_instant(self, t: float) -> bool:
        k = round(t / self.interval)
        return k * self.interval == t and t < self.end

    def catch_up(self, key: Key) -> None:
        """Take every sample placed before `key`, the next thing the run does: the samples of earlier instants,
        and the one at its instant if it comes first there (balloonsim.sim.clock)."""
        t = key[0]
        if self.next_t == t and key < self._key:
            return
        interval = self.interval
        psi = self._mem.psi
        counts, rows = self.samples.counts, self.samples.rows
        while True:
            k, s = self.next_k, self.next_t
            idle = psi.idle
            if not idle:
                psi.advance(s)
                idle = psi.idle
            some = psi.total[0]
            stalled = 0.0
            if some != self._last_some:
                stalled = min(1.0, (some - self._last_some) / interval)
                self._last_some = some
            n = 1
            if s < t and idle and not stalled:  # nothing moves before the event: the samples before t are alike
                j = int(t // interval) + 1  # the last sample before t: the largest j with j * interval < t, < end
                while j > k and (j * interval >= t or j * interval >= self.end):
                    j -= 1
                n = j - k + 1
            counts.append(n)
            rows.append(self._row(stalled, idle))
            self._set_next(k + n)
            if self.next_t > t or (self.next_t == t and key < self._key):
                break

    def crash(self, now: float) -> None:
        """The sample of the instant the guest crashed, replacing one taken at the same instant."""
        if self.next_k and (self.next_k - 1) * self.interval == now:
            self.samples.drop_last()
        self._mem.psi.advance(now)
        self.samples.last = (now, self._row(0.0, self._mem.psi.idle))

    def _row(self, stalled: float, idle: bool) -> Row:
        """The sample now; `idle`: PSI has nothing to show (psi.idle, which the caller has read)."""
        managed = free = cache = 0
        for z in self._zones:  # one pass over the zones
            managed += z.managed
            free += z.free_pmd * PMD_PAGES + z.free_base
            cache += z.pagecache
        free <<= PAGE_SHIFT
        if free < self.memfree_min:
            self.memfree_min = free
        mem = self._mem
        psi = mem.psi
        swap = mem.swap
        guest = self._guest
        row = (
            managed << PAGE_SHIFT,
            free,
            self.workload.demand_bytes,
            cache << PAGE_SHIFT,
            self.sim.target_bytes,
            len(guest.blocks),
            guest.blocks_online,
            stalled,
            mem.oom_kills,
        )
        if idle and not swap.pswpout:
            return row + _NO_PRESSURE
        some, full = psi.avg
        return row + (
            some[0] / _PSI_PCT,
            some[1] / _PSI_PCT,
            full[0] / _PSI_PCT,
            full[1] / _PSI_PCT,
            swap.used << PAGE_SHIFT,
            swap.pswpin,
            swap.pswpout,
        )
