"""One run: determinism, result shapes, every plugin doing what its name says, and bad input."""

from __future__ import annotations

import pandas as pd
import pytest

from balloonsim.errors import ConfigError, TraceError
from balloonsim.scenario import load_scenario
from balloonsim.sim.simulation import TIMESERIES_COLUMNS, simulate

REQUIRED_METRICS = [
    "oom_kills",
    "psi_some_fraction",
    "psi_full_fraction",
    "psi_some_avg10_peak",
    "swap_out_pages",
    "swap_in_pages",
    "work_done_s",
    "pressure_to_usable_s",
    "hotadd_requests",
    "hotadd_ok",
    "hotadd_enomem",
    "hotadd_einval",
    "guest_crashed",
    "crash_time_s",
    "memmap_bytes_kmalloc",
    "memmap_bytes_in_range",
    "memmap_bytes_remote",
    "memmap_bytes_unbacked",
    "usable_bytes_added",
    "time_to_usable_p50_s",
    "time_to_usable_p95_s",
    "memtotal_start_bytes",
    "memtotal_end_bytes",
    "gigantic_pages_end",
    "blocks_removable_end",
    "base_page_fallbacks",
    "events",
    "sim_time_s",
]

BASE = {
    "duration": "10m",
    "guest": {"boot": "2G"},
    "driver": {"name": "hyperv"},
    "onlining": {"agent": "udev"},
    "workload": {"name": "tasks", "arrival_rate": 0.1},
    "host": {"controller": "hyperv-buffer"},
}


def test_same_seed_same_result_and_shapes():
    a, b = simulate(BASE, seed=7), simulate(BASE, seed=7)
    assert a.metrics == pytest.approx(b.metrics, nan_ok=True)
    pd.testing.assert_frame_equal(a.timeseries, b.timeseries)
    pd.testing.assert_frame_equal(a.events, b.events)
    assert set(REQUIRED_METRICS) <= set(a.metrics)
    assert list(a.timeseries.columns) == TIMESERIES_COLUMNS
    assert list(a.events.columns) == ["t", "kind", "block", "detail"]
    assert a.timeseries.t.diff().dropna().eq(5.0).all()
    c = simulate(BASE, seed=8)
    assert c.metrics != a.metrics


def test_seed_in_scenario_is_used():
    # exact, with NaN equal to NaN (a metric of something that never happened, e.g. pressure_to_usable_s)
    a, b = simulate({**BASE, "seed": 3}).metrics, simulate(BASE, seed=3).metrics
    assert pd.Series(a, dtype=object).equals(pd.Series(b, dtype=object)), (a, b)


def test_time_to_usable_reflects_udev_delay():
    fast = simulate({**BASE, "onlining": {"agent": "udev", "delay": 1}}, seed=1).metrics
    slow = simulate({**BASE, "onlining": {"agent": "udev", "delay": 30}}, seed=1).metrics
    assert fast["time_to_usable_p50_s"] == pytest.approx(1.0)
    assert slow["time_to_usable_p50_s"] == pytest.approx(30.0)


def test_auto_online_is_immediate():
    m = simulate({**BASE, "onlining": {"agent": "auto", "online_type": "online_movable"}}, seed=1).metrics
    assert m["time_to_usable_p50_s"] == 0.0
    assert m["gigantic_pages_end"] == 0  # ZONE_MOVABLE holds no gigantic pages


def test_starving_agent_is_oom_killed_and_restarts():
    r = simulate(
        {
            "duration": "15m",
            "guest": {"boot": "2G"},
            "driver": {"name": "hyperv"},
            "onlining": {"agent": "starving-agent", "rss": "900M"},
            "workload": {"name": "constant", "size": "1500M", "task_size": "128M"},
            "host": {"controller": "hyperv-buffer"},
        },
        seed=1,
    )
    assert (r.events.kind == "agent_killed").any()
    assert r.metrics["oom_kills"] > 0


def test_oom_killer_kills_largest_and_counts_lost_work():
    m = simulate(
        {
            "duration": "5m",
            "guest": {"boot": "2G"},
            "driver": {"name": "hyperv", "balloon": False},
            "onlining": {"agent": "offline"},
            "workload": {"name": "constant", "size": "3G"},
            "host": {"controller": "static", "target": "2G"},
        },
        seed=1,
    ).metrics
    assert m["oom_kills"] > 0 and m["oom_lost_work_s"] > 0
    # without swap, pressure shows as kills: reclaiming clean page cache takes no time in the model, and a round
    # that reclaims nothing does not sleep either: consider_reclaim_throttle()'s one-jiffy NOPROGRESS sleep is
    # skipped while 2 x NR_ZONE_WRITE_PENDING <= the reclaimable pages (skip_throttle_noprogress(), 6.12.118
    # mm/vmscan.c:494-525, 7.3.4:483-509), and nothing is write-pending here. Nothing stalls.
    assert m["swap_out_pages"] == 0 and m["psi_some_fraction"] == 0.0


def test_trace_workload(tmp_path):
    path = tmp_path / "demand.csv"
    path.write_text("time,bytes\n0,512M\n60,1536M\n120,256M\n")
    r = simulate({**BASE, "duration": "3m", "workload": {"name": "trace", "path": str(path)}}, seed=0)
    ts = r.timeseries.set_index("t")
    assert ts.demand_bytes[30.0] == 512 << 20
    assert ts.demand_bytes[90.0] == 1536 << 20
    assert ts.demand_bytes[150.0] == 256 << 20


@pytest.mark.parametrize(
    "body, line, fragment",
    [
        ("time,bytes\n0,1G\n10,zz\n", 3, "bad size"),
        ("0,1G\n10\n", 2, "expected 2 columns"),
        ("0,1G\n10,2G\n5,1G\n", 3, "goes backwards"),
    ],
)
def test_broken_trace_names_the_line(tmp_path, body, line, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(TraceError) as exc:
        load_scenario({**BASE, "workload": {"name": "trace", "path": str(path)}})
    assert exc.value.line == line and fragment in str(exc.value)


@pytest.mark.parametrize(
    "controller",
    [
        {"controller": "static", "target": "3G"},
        {"controller": "schedule", "steps": [[10, "3G"], [200, "2500M"]]},
        {"controller": "hyperv-buffer", "buffer_percent": 30},
        {"controller": "mom"},
        {"controller": "pi-psi"},
    ],
)
def test_every_controller_moves_the_target(controller):
    # pi-psi grows the guest on memory stalls: only a guest with swap stalls (without, it kills)
    guest = {"boot": "2G", "swap": "1G"} if controller["controller"] == "pi-psi" else BASE["guest"]
    r = simulate(
        {
            **BASE,
            "guest": guest,
            "workload": {"name": "ramp", "end_size": "2500M", "ramp_time": 120},
            "host": controller,
        },
        seed=2,
    )
    assert r.timeseries.target_bytes.nunique() > 1
    assert r.metrics["hotadd_ok"] > 0


@pytest.mark.parametrize("workload", ["constant", "ramp", "bursts", "tasks", "idle"])
def test_every_workload_creates_demand(workload):
    r = simulate({**BASE, "duration": "5m", "workload": {"name": workload}}, seed=4)
    if workload == "idle":
        assert r.timeseries.demand_bytes.max() == 0
    else:
        assert r.timeseries.demand_bytes.max() > 0


def test_xen_retries_cancel_after_four_failures_on_new_kernels_only():
    def run(kernel):
        return simulate(
            {
                "duration": "5m",
                "guest": {"boot": "2G", "kernel": kernel},
                "driver": {"name": "xen"},
                "onlining": {"agent": "auto"},
                "workload": {"name": "idle"},
                "host": {"controller": "static", "target": "3G", "memory": "512M"},
            },
            seed=0,
        ).metrics

    new, old = run("6.12"), run("4.19")
    assert new["host_populate_short"] > 0
    assert new["xen_cancelled"] > 0
    assert old["xen_cancelled"] == 0 and old["xen_populate_batches"] > new["xen_populate_batches"]


@pytest.mark.parametrize(
    "config, path, fragment",
    [
        (
            {"driver": {"name": "hyperv", "request_ofset": "1M"}},
            "driver.request_ofset",
            "did you mean 'request_offset'",
        ),
        ({"driver": {"name": "xenn"}}, "driver.name", "did you mean 'xen'"),
        ({"onlining": {"agent": "udev", "delay": {"dist": "gamma"}}}, "onlining.delay.dist", ""),
        ({"workload": {"name": "bursts", "base": "1X"}}, "workload.base", "not a size"),
        ({"host": {"controller": "schedule", "steps": [[5]]}}, "host", "steps[0]"),
        ({"guest": {"block_size": "192M"}}, "guest.block_size", "power of two"),
        ({"guest": {"max_addr": "1G"}}, "guest.max_addr", "must exceed"),
        ({"duration": "-5s"}, "duration", ""),
    ],
)
def test_bad_scenarios_name_the_key(config, path, fragment):
    with pytest.raises(ConfigError) as exc:
        load_scenario(config)
    assert exc.value.path == path
    assert fragment in str(exc.value)


@pytest.mark.parametrize(("task_size", "vcpus"), [("16M", 2), ("256M", 2), ("1G", 2), ("256M", 8), ("1G", 1)])
def test_work_done_is_productive_tasks_at_most_one_per_vcpu(task_size, vcpus):
    """The same 1 GiB of demand met by tasks of 16 MiB (64 tasks), 256 MiB (4) or 1 GiB (1) on a guest with room
    for it: the tasks never stall, and the work done is the productive tasks capped by the CPUs they share,
    min(nr_productive_tasks, nr_cpus) (kernel/sched/psi.c's lost-potential formula, 4.20-7.3), times the run,
    whatever the task size."""
    m = simulate(
        {
            "duration": "2m",
            "guest": {"boot": "4G", "vcpus": vcpus},
            "driver": {"name": "hyperv", "balloon": False},
            "onlining": {"agent": "offline"},
            "workload": {"name": "constant", "size": "1G", "task_size": task_size},
            "host": {"controller": "static", "target": "4G"},
        },
        seed=1,
    ).metrics
    tasks = (1 << 30) // {"16M": 16 << 20, "256M": 256 << 20, "1G": 1 << 30}[task_size]
    assert m["psi_some_fraction"] == 0.0 and m["oom_kills"] == 0
    assert m["work_done_s"] == pytest.approx(min(tasks, vcpus) * 120.0)
