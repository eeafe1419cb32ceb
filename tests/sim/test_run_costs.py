"""What a run costs besides the simulation: tables built only when read, a configuration validated once per
process, the allocator's change notice."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from balloonsim.kernel.page_alloc import Gfp
from balloonsim.scenario import load_scenario
from balloonsim.sim import simulation
from balloonsim.sim.result import TIMESERIES_COLUMNS, RunResult
from balloonsim.sim.simulation import simulate
from balloonsim.sim.world import Sim

SCENARIO = {
    "duration": "10m",
    "sample_interval": "5s",
    "guest": {"boot": "2G"},
    "workload": {"name": "bursts", "base": "512M", "burst": "1G"},
}


def test_tables_are_built_when_first_read_and_only_once():
    built = []

    def frame(name):
        def build():
            built.append(name)
            return pd.DataFrame({"x": [1]})

        return build

    r = RunResult({"m": 1}, frame("timeseries"), frame("events"))
    assert built == [] and r.metrics == {"m": 1}
    assert r.timeseries is r.timeseries
    assert built == ["timeseries"]
    r.events.equals(pd.DataFrame({"x": [1]}))
    assert built == ["timeseries", "events"]


def test_a_pickled_result_carries_its_tables():
    r = simulate(SCENARIO, seed=3)
    back = pickle.loads(pickle.dumps(r))
    assert back.metrics == pytest.approx(r.metrics, nan_ok=True)
    pd.testing.assert_frame_equal(back.timeseries, r.timeseries)
    pd.testing.assert_frame_equal(back.events, r.events)


def test_the_time_series_has_every_sample_with_its_columns_and_types():
    r = simulate(SCENARIO, seed=3)
    ts = r.timeseries
    assert list(ts.columns) == TIMESERIES_COLUMNS
    assert np.array_equal(ts.t.to_numpy(), np.arange(120) * 5.0)  # 10 min every 5 s, the end excluded
    assert ts.t.dtype == np.float64 and ts.stalled.dtype == np.float64 and ts.psi_some_avg10.dtype == np.float64
    assert all(ts[c].dtype == np.int64 for c in ("memtotal_bytes", "memfree_bytes", "blocks_online", "oom_kills"))
    assert ts.demand_bytes.nunique() > 1  # the bursts show


def test_a_crash_sample_replaces_the_one_at_its_instant():
    sim = Sim(load_scenario(SCENARIO), 3)
    rec = sim.recorder
    sim.env.next_eid = 5  # five events scheduled before the samples' timeouts would have been
    rec.start()
    rec.catch_up((10.0, 1, 3))  # samples 0 and 5; the one at 10 goes after an event scheduled earlier
    assert len(rec.samples) == 2
    rec.catch_up((10.0, 1, 7))  # an event scheduled after the sample's timeout: the sample first
    assert len(rec.samples) == 3
    rec.crash(10.0)
    cols = rec.samples.columns()
    assert list(cols["t"]) == [0.0, 5.0, 10.0] and len(rec.samples) == 3


def test_a_configuration_is_validated_once_per_process(monkeypatch):
    calls = []
    load = simulation.load_scenario

    def counting(config):
        calls.append(config)
        return load(config)

    monkeypatch.setattr(simulation, "load_scenario", counting)
    monkeypatch.setattr(simulation, "_LOADED", {})
    a = simulate(SCENARIO, seed=1)
    b = simulate(dict(SCENARIO), seed=2)  # the same table, another dict
    assert len(calls) == 1
    simulate({**SCENARIO, "duration": "5m"}, seed=1)
    assert len(calls) == 2
    assert a.metrics != b.metrics  # the seeds still differ


def test_the_allocator_tells_a_watcher_once_of_the_next_change():
    sim = Sim(load_scenario(SCENARIO), 0)
    alloc = sim.guest.alloc
    heard = []
    alloc.watch(lambda: heard.append(alloc.gen))
    gen = alloc.gen
    alloc.alloc(0, 10, Gfp.USER)
    alloc.alloc(0, 10, Gfp.USER)
    assert heard == [gen + 1]  # once, as soon as the first change starts
