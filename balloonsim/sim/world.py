"""One run's world: the SimPy environment, the guest, the host, user memory and the components, built from a
scenario and checked, not yet running.

`build_world` is the one way a world is made: `simulate()` builds one and runs it; `check_run`, the up-front
check of an experiment, builds each run's world and drops it, so that whatever a component refuses when it is
constructed (balloonsim.plugin) is refused before any run starts.
"""

from __future__ import annotations

import math
import zlib
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import simpy

from balloonsim import memmap
from balloonsim.kernel import Guest, GuestCrash
from balloonsim.kernel.block import BlockState
from balloonsim.kernel.errno import EEXIST, EINVAL, ENOMEM
from balloonsim.plugin import Plugin
from balloonsim.scenario import Scenario, load_scenario
from balloonsim.sim.clock import URGENT, At, Clock
from balloonsim.sim.eventlog import EventLog
from balloonsim.sim.host import HostMemory
from balloonsim.sim.memory import UserMemory
from balloonsim.sim.recorder import Recorder
from balloonsim.sim.result import RunResult, RunRows
from balloonsim.units import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from balloonsim.drivers.base import Driver
    from balloonsim.kernel.block import MemoryBlock
    from balloonsim.sim.controllers import Controller, ControllerParams
    from balloonsim.sim.onlining import OnliningAgent
    from balloonsim.sim.workloads import Workload


def build_world(scenario: Scenario, seed: int) -> Sim:
    """Every part of one run, constructed (and so checked) in order, with nothing started."""
    return Sim(scenario, seed)


def check_run(config: dict[str, Any] | Scenario) -> Scenario:
    """Validate one run completely before anything runs: its tables and plugin parameters, then everything
    its components check when they are built. The world is built once, not run, and dropped."""
    scenario = load_scenario(config)
    build_world(scenario, 0)
    return scenario


class Sim:
    """Everything one guest's processes share: the environment, the guest, the host, the logs."""

    def __init__(self, scenario: Scenario, seed: int):
        self.scenario = sc = scenario
        self.seed = seed
        self.env = Clock()
        self.events = EventLog(sc.record_events)
        g = sc.guest
        parts = sc.components()
        self.guest = Guest(g.config(), memmap.build(parts.memmap))
        self.guest.strategy.check(self.guest.profile)
        self.host = HostMemory(cast("ControllerParams", parts.host.params).memory >> PAGE_SHIFT)
        self.memory = UserMemory(self)
        # small GFP_KERNEL allocations of the hot-add path invoke the OOM killer rather than fail
        self.guest.out_of_memory = lambda: self.memory.out_of_memory() is not None
        self.target_bytes = self._logged_target = sum(g.boot)
        self.target_event = self.env.event()
        self.block_added_at: dict[int, float] = {}
        self.block_usable_at: dict[int, float] = {}
        self.driver: Driver | None = None  # None while the components before it are built
        self.guest.uevent = self._uevent
        self.guest.expose_hook = self._exposed
        # in this order: each component may look at the ones before it (a controller at the driver)
        self.onlining: OnliningAgent = parts.onlining.cls(self, parts.onlining.params)
        self.workload: Workload = parts.workload.cls(self, parts.workload.params)
        self.controller: Controller = parts.host.cls(self, parts.host.params)
        driver: Driver = parts.driver.cls(self, parts.driver.params)
        self.driver = driver
        self.components: tuple[Plugin, ...] = (self.onlining, self.workload, self.controller, driver)
        self.crash: GuestCrash | None = None
        self.crash_time: float | None = None
        self.recorder = Recorder(self, self.workload, self.env)
        self.memtotal_start = self.guest.alloc.total("managed") << PAGE_SHIFT

    # -- shared services ---------------------------------------------------------------------------
    def rng(self, name: str) -> np.random.Generator:
        """An independent stream per component, so adding one component does not shift another's draws."""
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(zlib.crc32(name.encode()),)))

    def set_target(self, nbytes: int) -> None:
        if nbytes != self.target_bytes:
            self.target_bytes = nbytes
            if abs(nbytes - self._logged_target) * 64 >= self._logged_target:  # log moves of 1/64 or more
                self._logged_target = nbytes
                self.events.log(self.env.now, "target", -1, f"{nbytes >> 20}M")
            ev, self.target_event = self.target_event, self.env.event()
            ev.succeed()

    def _uevent(self, block_id: int) -> None:
        self.block_added_at[block_id] = self.env.now
        self.onlining.block_added(block_id)

    def _exposed(self, block: MemoryBlock, n: int) -> None:
        if block.id not in self.block_usable_at:
            self.block_usable_at[block.id] = self.env.now

    # -- running -----------------------------------------------------------------------------------
    def run(self) -> None:
        """Start the components and run to the end (or the crash). The recorder takes its samples between events
        (Clock.run_until): they cost nothing while nothing happens."""
        env = self.env
        onlining, workload, controller, driver = self.components
        for component in (onlining, driver, controller, workload):  # agents hear uevents before drivers add
            component.start()
        recorder = self.recorder
        At(env, 0.0, URGENT).callbacks.append(lambda _: recorder.start())  # after the components' first steps
        try:
            env.run_until(self.scenario.duration, recorder)
        except GuestCrash as crash:
            self.crash = crash
            self.crash_time = env.now
            self.events.log(env.now, "crash", -1, str(crash))
            recorder.crash(env.now)
        self.memory.finish(env.now)

    # -- results -----------------------------------------------------------------------------------
    def result(self) -> RunResult:
        """The metrics now; the time series and the events as DataFrames when first read."""
        return RunResult(self.metrics(), self.recorder.samples.frame, self.events.frame)

    def rows(self) -> RunRows:
        """The results as recorded, without building DataFrames (pandas is not even imported)."""
        from balloonsim.sim.eventlog import COLUMNS as EVENT_COLUMNS

        return RunRows(self.metrics(), self.recorder.samples, EVENT_COLUMNS, self.events.rows)

    @property
    def memfree_min(self) -> int:
        return self.recorder.memfree_min

    def metrics(self) -> dict[str, Any]:
        g = self.guest
        st = g.stats
        sim_time = self.crash_time if self.crash_time is not None else self.scenario.duration
        usable = unbacked_memmap = 0
        for b in g.blocks.values():
            usable += b.exposed.total
            if b.memmap is not None and b.unbacked:
                unbacked_memmap += b.memmap.pages * b.unbacked // b.nr_pages
        delays = [
            self.block_usable_at[b] - self.block_added_at[b] for b in self.block_usable_at if b in self.block_added_at
        ]
        p50, p95 = (_percentile(delays, 50), _percentile(delays, 95)) if delays else (np.nan, np.nan)
        removable = sum(1 for b in g.blocks.values() if g.removable(b))
        strategy = g.strategy
        departures = g.what_if() + getattr(strategy, "departures", lambda profile: [])(g.profile)
        if self.driver is not None:
            departures += self.driver.what_if(strategy)
        errs = st.add_errors
        other_err = sum(n for e, n in errs.items() if e not in (-ENOMEM, -EINVAL, -EEXIST))
        memtotal_end = g.alloc.total("managed") << PAGE_SHIFT
        out: dict[str, Any] = {
            "oom_kills": self.memory.oom_kills,
            "oom_lost_work_s": round(self.memory.oom_lost_work_s, 6),
            **self._pressure_metrics(sim_time),
            "hotadd_requests": st.add_calls,
            "hotadd_ok": st.add_ok,
            "hotadd_enomem": errs.get(-ENOMEM, 0),
            "hotadd_einval": errs.get(-EINVAL, 0),
            "hotadd_eexist": errs.get(-EEXIST, 0),
            "hotadd_other_errors": other_err,
            "guest_crashed": self.crash is not None,
            "crash_time_s": self.crash_time if self.crash_time is not None else np.nan,
            "memmap_bytes_kmalloc": st.memmap_kmalloc_pages * PAGE_SIZE,
            "memmap_bytes_in_range": st.memmap_in_range_pages * PAGE_SIZE,
            "memmap_bytes_remote": st.memmap_remote_pages * PAGE_SIZE,
            "memmap_bytes_unbacked": unbacked_memmap * PAGE_SIZE,
            "memmap_fallbacks": st.memmap_fallbacks,
            "usable_bytes_added": usable * PAGE_SIZE,
            "time_to_usable_p50_s": p50,
            "time_to_usable_p95_s": p95,
            "memtotal_start_bytes": self.memtotal_start,
            "memtotal_end_bytes": memtotal_end,
            "memfree_min_bytes": self.memfree_min,
            "target_end_bytes": self.target_bytes,
            "gigantic_pages_end": g.gigantic_pages(),
            "blocks_added_end": len(g.blocks),
            "blocks_online_end": sum(1 for b in g.blocks.values() if b.state is BlockState.ONLINE),
            "blocks_removable_end": removable,
            "base_page_fallbacks": st.base_page_fallbacks,
            "host_populate_short": self.host.short,
            "events": sum(self.events.counts.values()),
            "simpy_events": _scheduled_events(self.env),
            "sim_time_s": sim_time,
        }
        for component in self.components:
            out.update(component.metrics())
        # which parts of the run no kernel does (a memmap strategy never merged, a flag a driver never passes...):
        # empty when the run is the kernel's own behaviour
        out["what_if"] = "; ".join(departures)
        return out

    def _pressure_metrics(self, sim_time: float) -> dict[str, Any]:
        """What the tasks felt: PSI memory over the run, swap traffic, work done, and how long after memory first
        ran short hot-added memory became usable."""
        mem = self.memory
        psi = mem.psi
        nan = float("nan")
        supported = mem.psi_supported and sim_time > 0
        start = mem.pressure_start
        if start is None:
            to_usable = nan
        else:
            usable = _first_after(list(self.block_usable_at.values()), start)
            to_usable = (usable if usable is not None else sim_time) - start
        return {
            "psi_some_fraction": round(psi.total[0] / sim_time, 6) if supported else nan,
            "psi_full_fraction": round(psi.total[1] / sim_time, 6) if supported else nan,
            "psi_some_avg10_peak": round(psi.peak10(0), 4) if supported else nan,
            "swap_out_pages": mem.swap.pswpout,
            "swap_in_pages": mem.swap.pswpin,
            "work_done_s": round(mem.work_done_s, 3),
            "pressure_to_usable_s": round(to_usable, 6),
        }


def _percentile(values: list[float], q: float) -> float:
    """numpy.percentile(values, q) with its default (linear) method and the same arithmetic, for the few values
    of one run without the cost of building arrays."""
    xs = sorted(values)
    index = (len(xs) - 1) * (q / 100)
    lo = math.floor(index)
    a, b = xs[lo], xs[min(lo + 1, len(xs) - 1)]
    g = index - lo
    return b - (b - a) * (1 - g) if g >= 0.5 else a + (b - a) * g  # numpy's _lerp


def _first_after(times: list[float], start: float) -> float | None:
    later = [t for t in times if t >= start]
    return min(later) if later else None


def _scheduled_events(env: simpy.Environment) -> int:
    """Events SimPy has scheduled so far (a Clock counts them; SimPy's own counter is read once, at the end)."""
    if isinstance(env, Clock):
        return env.scheduled_events
    return next(env._eid)  # noqa: SLF001 - the cheapest exact count; simpy exposes no public one
