"""Checks that wake on change give the runs that checks every period give, and cost nothing while nothing moves.

`every_instant` makes every Poll (the workload's tick, the Hyper-V host's report, MOM) check at every instant of
its grid, as their SimPy processes did: each scenario below must give the same metrics, time series and events
either way. The scenarios cover the mechanisms a skipped instant could hide: fault-in at a bounded rate, the page
cache's steps, kswapd, restart delays, swap refaults and PSI under pressure, ramps, traces, random tasks, the
host's controllers, ties between a poll and a timeout of exactly one period (udev delay 1 s against the 1 s tick).
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from balloonsim.bench.event_rate import REFERENCE_SCENARIO
from balloonsim.scenario import load_scenario
from balloonsim.sim import clock
from balloonsim.sim.simulation import simulate
from balloonsim.sim.world import Sim


@pytest.fixture
def every_instant(monkeypatch):
    """Polls check at every instant of their grid (the fixed-period processes they replace)."""
    follow = clock.Poll.follow

    def every(self, k):
        follow(self, self._last_run + 1)  # noqa: SLF001 - the test reaches into the poll on purpose

    monkeypatch.setattr(clock.Poll, "follow", every)


def _scenarios(tmp_path) -> dict[str, dict]:
    trace = tmp_path / "trace.csv"
    trace.write_text("time,bytes\n0,512M\n30,2G\n95,1G\n140,3G\n")
    short = {"duration": "5m", "sample_interval": "5s", "guest": {"boot": "2G"}}
    return {
        "reference": REFERENCE_SCENARIO,
        "swap-thrash": {
            **short,
            "guest": {"boot": "1G", "swap": "2G", "kernel": "6.12", "vcpus": 2},
            "onlining": {"agent": "offline"},
            "workload": {"name": "bursts", "base": "512M", "burst": "1536M", "on": {"dist": "exponential", "mean": 60}},
            "host": {"controller": "hyperv-buffer", "maximum": "16G"},
        },
        "xen-mom": {
            **short,
            "duration": "20m",
            "driver": {"name": "xen"},
            "host": {"controller": "mom"},
            "onlining": {"agent": "udev", "delay": 5},
        },
        "dimm-tie": {
            **short,
            "guest": {"boot": "4G", "max_addr": "64G"},
            "driver": {"name": "dimm", "dimm_size": "2G"},
            "host": {"controller": "schedule", "steps": [[10, "8G"], [60, "12G"]]},
            "workload": {"name": "constant", "size": "2G", "fault_rate": "512M"},
            "onlining": {"agent": "udev", "delay": 1},
        },
        "ramp-virtio": {
            **short,
            "driver": {"name": "virtio-mem"},
            "host": {"controller": "schedule", "steps": [[30, "3G"], [120, "5G"]]},
            "workload": {"name": "ramp", "start_size": "512M", "end_size": "3G", "ramp_time": 200},
        },
        "tasks-restart": {
            **short,
            "workload": {"name": "tasks", "arrival_rate": 0.2, "restart": "systemd", "restart_delay": 3},
            "host": {"controller": "hyperv-buffer", "buffer_percent": 5},
        },
        "round-trip": {**REFERENCE_SCENARIO, "duration": "20m", "workload": {"name": "constant", "size": "2G"}},
        "trace-starving": {
            **short,
            "workload": {"name": "trace", "path": str(trace), "loop": True},
            "onlining": {"agent": "starving-agent"},
        },
    }


def _same(a, b) -> None:
    ma = {k: v for k, v in a.metrics.items() if k != "simpy_events"}
    mb = {k: v for k, v in b.metrics.items() if k != "simpy_events"}
    assert ma.keys() == mb.keys()
    for k in ma:
        assert ma[k] == mb[k] or (isinstance(ma[k], float) and math.isnan(ma[k]) and math.isnan(mb[k])), k
    pd.testing.assert_frame_equal(a.timeseries, b.timeseries)
    pd.testing.assert_frame_equal(a.events, b.events)


@pytest.fixture
def skipping_runs(tmp_path):
    return {name: [simulate(sc, seed=s) for s in (0, 1)] for name, sc in _scenarios(tmp_path).items()}


def test_waking_on_change_gives_the_runs_that_polling_every_period_gives(skipping_runs, tmp_path, every_instant):
    for name, sc in _scenarios(tmp_path).items():
        for seed, skipped in zip((0, 1), skipping_runs[name], strict=True):
            polled = simulate(sc, seed=seed)
            _same(skipped, polled)
            assert skipped.metrics["simpy_events"] <= polled.metrics["simpy_events"], name


def test_the_reference_guest_checks_where_something_changes_not_every_second():
    r = simulate(REFERENCE_SCENARIO, seed=0)
    # an hour of the 1 s tick and the 1 s report would be 3,600 + 3,555 checks, and 720 sampling events
    assert r.metrics["simpy_events"] < 400


@pytest.mark.parametrize("duration", ["1h", "10h"])
def test_a_quiet_guest_costs_the_same_whatever_its_duration(duration):
    """Nothing moves after the start-up (the page cache reaches its limit, nothing is hot-added): the run is a
    handful of events and checks however long it lasts."""
    sc = {
        "duration": duration,
        "guest": {"boot": "2G"},
        "workload": {"name": "constant", "size": "512M", "cache_max": "256M"},
        "host": {"controller": "hyperv-buffer"},
        "driver": {"name": "hyperv"},
    }
    sim = Sim(load_scenario(sc), 0)
    sim.run()
    assert sim.env.checks <= 10, sim.env.checks
    assert sim.env.scheduled_events <= 10, sim.env.scheduled_events
    # work done is integrated over the quiet interval: two 256 MiB tasks running the whole time
    assert sim.result().metrics["work_done_s"] == pytest.approx(2 * sim.scenario.duration)


@pytest.mark.parametrize("duration", ["1h", "10h"])
def test_a_file_read_that_kswapd_takes_straight_back_is_not_read_again_every_period(duration):
    """A Hyper-V guest at rest whose page cache reads land in a zone below its low watermark: kswapd reclaims each
    read at once and the zones are as they were. The reads stop until something changes, whatever the duration
    (every 10 s of cache steps would be 3,600 checks in 10 h)."""
    sc = {**REFERENCE_SCENARIO, "duration": duration, "workload": {"name": "constant", "size": "2G"}}
    sim = Sim(load_scenario(sc), 0)
    sim.run()
    assert sim.env.checks <= 40, sim.env.checks
