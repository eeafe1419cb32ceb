"""The Hyper-V field report, reproduced in shape from experiments/hyperv-field-report.toml: with new blocks left
offline (MHP_DEFAULT_ONLINE_TYPE_OFFLINE, no udev rule) MemTotal stays flat, nothing usable is added and the guest
thrashes in swap with PSI "some" near saturation; auto-online makes MemTotal grow and the pressure fall."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from balloonsim.sim.simulation import simulate

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "hyperv-field-report.toml"
BASE = tomllib.loads(EXPERIMENT.read_text())["base"]


def reported_guest(agent: str, strategy: str = "kmalloc", seed: int = 3):
    scenario = copy.deepcopy(BASE)
    scenario["onlining"] = {"agent": agent}
    scenario["memmap"] = {"strategy": strategy}
    return simulate(scenario, seed=seed)


def _bursts(run):
    """Samples taken while the burst is on (demand above the workload's base)."""
    ts = run.timeseries
    return ts[ts.demand_bytes > 512 << 20]


@pytest.fixture(scope="module")
def offline():
    return reported_guest("offline")


@pytest.fixture(scope="module")
def auto():
    return reported_guest("auto")


def test_offline_memtotal_flat_and_nothing_usable_added(offline):
    m, ts = offline.metrics, offline.timeseries
    assert m["blocks_added_end"] > 0 and m["blocks_online_end"] == 0  # hv_balloon did hot-add
    assert ts.memtotal_bytes.nunique() == 1 and m["memtotal_end_bytes"] == m["memtotal_start_bytes"]
    assert m["usable_bytes_added"] == 0


def test_offline_thrashes_with_psi_some_near_saturation_over_the_burst(offline):
    burst = _bursts(offline)
    assert len(burst) > 60  # several minutes of burst
    assert burst.stalled.mean() >= 0.5  # the fraction of each sample interval in PSI SOME
    assert burst.psi_some_avg10.max() > 0.9
    assert offline.metrics["oom_kills"] == 0  # swap had room: no kill, a stall
    assert offline.metrics["swap_out_pages"] >= 10_000


def test_auto_online_grows_memtotal_and_relieves_the_pressure(offline, auto):
    ts = auto.timeseries
    assert ts.memtotal_bytes.max() > ts.memtotal_bytes.iloc[0] + (512 << 20)
    assert auto.metrics["usable_bytes_added"] > 0
    assert _bursts(auto).stalled.mean() < 0.5 * _bursts(offline).stalled.mean()
    assert auto.metrics["swap_out_pages"] < offline.metrics["swap_out_pages"]
    assert auto.metrics["work_done_s"] > 2 * offline.metrics["work_done_s"]
    assert auto.metrics["pressure_to_usable_s"] < 60 < offline.metrics["pressure_to_usable_s"]


def test_a_udev_rule_does_what_auto_online_does(offline):
    udev = reported_guest("udev")
    assert udev.metrics["usable_bytes_added"] > 0
    assert _bursts(udev).stalled.mean() < 0.5 * _bursts(offline).stalled.mean()
