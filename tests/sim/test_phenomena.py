"""The seed thread's phenomena, reproduced as outcomes of whole simulations (not hard-coded branches)."""

from __future__ import annotations

import pytest

from balloonsim.sim.simulation import simulate

SEEDS = range(4)


def pressure_run(strategy: str, seed: int, task_size: str = "16M"):
    """A 2 GiB Hyper-V guest under bursts of many small workers, memory offered by the buffer controller, udev
    onlining late."""
    return simulate(
        {
            "duration": "15m",
            "guest": {"boot": "2G"},
            "driver": {"name": "hyperv"},
            "onlining": {"agent": "udev", "delay": {"dist": "uniform", "low": 60, "high": 120}},
            "workload": {
                "name": "bursts",
                "task_size": task_size,
                "base": "1200M",
                "burst": "2G",
                "fault_rate": "512M",
                "on": {"dist": "exponential", "mean": 120},
                "off": {"dist": "exponential", "mean": 60},
            },
            "host": {"controller": "hyperv-buffer", "buffer_percent": 10},
            "memmap": {"strategy": strategy},
        },
        seed=seed,
    ).metrics


def test_late_onlining_kmalloc_enomem_and_more_oom_kills():
    runs = {s: [pressure_run(s, seed) for seed in SEEDS] for s in ("kmalloc", "altmap", "subrange-hint")}
    assert sum(m["hotadd_enomem"] for m in runs["kmalloc"]) > 0
    for other in ("altmap", "subrange-hint"):
        assert sum(m["hotadd_enomem"] for m in runs[other]) == 0
        assert not any(m["guest_crashed"] for m in runs[other])
        kills_kmalloc = sum(m["oom_kills"] for m in runs["kmalloc"])
        kills_other = sum(m["oom_kills"] for m in runs[other])
        assert kills_kmalloc > kills_other


def test_large_victims_leave_the_memmap_room():
    """The -ENOMEM needs free memory held at the min watermark: an OOM kill of a 256 MiB task frees far more than
    the 2 MiB memmap of a 128 MiB chunk (vmemmap_alloc_block(): GFP_KERNEL | __GFP_RETRY_MAYFAIL, which reclaims
    but never OOM-kills, mm/sparse-vmemmap.c), so every hot-add finds its memmap; 16 MiB victims free less than
    the chunks added during the onlining delay take."""
    for seed in SEEDS:
        assert pressure_run("kmalloc", seed, task_size="256M")["hotadd_enomem"] == 0


def hyperv_partial(strategy: str, offset: str = "64M", seed: int = 1):
    return simulate(
        {
            "duration": "10m",
            "guest": {"boot": "2G"},
            "driver": {"name": "hyperv", "request_offset": offset},
            "onlining": {"agent": "udev", "delay": 2},
            "workload": {"name": "ramp", "start_size": "512M", "end_size": "3G", "ramp_time": 300},
            "host": {"controller": "hyperv-buffer"},
            "memmap": {"strategy": strategy},
        },
        seed=seed,
    )


def test_hyperv_backed_part_not_at_start_altmap_crashes():
    r = hyperv_partial("altmap")
    m = r.metrics
    assert m["guest_crashed"] and m["crash_time_s"] > 0
    crash = r.events[r.events.kind == "crash"]
    assert len(crash) == 1 and "memmap_init_range" in crash.detail.iloc[0]
    assert "0x100000000" in crash.detail.iloc[0]  # the first page of the first hot-added block


@pytest.mark.parametrize("strategy", ["kmalloc", "subrange-hint"])
def test_hyperv_backed_part_not_at_start_others_survive(strategy):
    m = hyperv_partial(strategy).metrics
    assert not m["guest_crashed"]
    assert m["usable_bytes_added"] > 1 << 30
    assert m["hv_fake_offline_pages_end"] > 0  # the unbacked heads stay fake-offline
    if strategy == "subrange-hint":
        assert m["memmap_bytes_in_range"] > 0 and m["memmap_bytes_kmalloc"] == 0


def test_hyperv_backed_part_at_start_altmap_survives():
    assert not hyperv_partial("altmap", offset="0").metrics["guest_crashed"]


def xen_run(strategy: str, **driver):
    return simulate(
        {
            "duration": "10m",
            "guest": {"boot": "2G"},
            "driver": {"name": "xen", **driver},
            "onlining": {"agent": "udev", "delay": 2},
            "workload": {"name": "ramp", "start_size": "512M", "end_size": "3G", "ramp_time": 300},
            "host": {"controller": "schedule", "steps": [[10, "2200M"], [60, "4G"]]},
            "memmap": {"strategy": strategy},
        },
        seed=3,
    ).metrics


def test_xen_unpopulated_range_altmap_crashes_kmalloc_works():
    assert xen_run("altmap")["guest_crashed"]
    ok = xen_run("kmalloc")
    assert not ok["guest_crashed"]
    assert ok["usable_bytes_added"] >= 1 << 30
    assert ok["xen_populate_batches"] >= (1 << 30) // (512 * 4096)


def test_xen_populating_the_memmap_first_makes_the_hint_work():
    m = xen_run("subrange-hint", populate_memmap_first=True)
    assert not m["guest_crashed"]
    assert m["memmap_bytes_in_range"] > 0 and m["memmap_bytes_kmalloc"] == 0


def dimm_run(strategy: str):
    return simulate(
        {
            "duration": "2m",
            "sample_interval": "1s",
            "guest": {"boot": "2G"},
            "driver": {"name": "dimm", "dimm_size": "1G", "plug_delay": 1},
            "onlining": {"agent": "offline"},
            "workload": {"name": "idle", "cache_rate": 0},
            "host": {"controller": "static", "target": "3G", "at": 30},
            "memmap": {"strategy": strategy},
        },
        seed=0,
    )


def test_acpi_dimm_altmap_works_and_costs_no_memfree_at_add():
    alt, kma = dimm_run("altmap"), dimm_run("kmalloc")
    for r in (alt, kma):
        assert r.metrics["hotadd_ok"] == 1 and not r.metrics["guest_crashed"]

    def drop(r):
        ts = r.timeseries
        return int(ts[ts.t < 30].memfree_bytes.iloc[-1] - ts.memfree_bytes.iloc[-1])

    assert drop(alt) < 64 << 10  # metadata only (a few slab pages)
    assert drop(kma) >= 16 << 20  # 1 GiB needs 16 MiB of struct pages
    assert alt.metrics["memmap_bytes_in_range"] == 16 << 20


def test_nobody_onlines_memtotal_never_grows():
    r = simulate(
        {
            "duration": "15m",
            "guest": {"boot": "2G"},
            "driver": {"name": "hyperv"},
            "onlining": {"agent": "offline"},
            "workload": {"name": "bursts", "base": "1G", "burst": "3G"},
            "host": {"controller": "hyperv-buffer", "buffer_percent": 50},
            "memmap": {"strategy": "kmalloc"},
        },
        seed=2,
    )
    m, ts = r.metrics, r.timeseries
    assert m["hotadd_ok"] > 0  # the host offered and the guest added
    assert ts.memtotal_bytes.max() == m["memtotal_start_bytes"]
    assert m["blocks_online_end"] == 0 and m["usable_bytes_added"] == 0


def test_movable_node_memoryless_new_node_kmalloc_memmap_all_remote():
    m = simulate(
        {
            "duration": "5m",
            "guest": {"boot": "4G", "extra_nodes": 1, "movable_node": True},
            "driver": {"name": "dimm", "node": 1, "dimm_size": "2G"},
            "onlining": {"agent": "udev", "delay": 1},
            "workload": {"name": "idle"},
            "host": {"controller": "static", "target": "6G", "at": 10},
            "memmap": {"strategy": "kmalloc"},
        },
        seed=0,
    ).metrics
    assert m["memmap_bytes_kmalloc"] == 32 << 20
    assert m["memmap_bytes_remote"] == m["memmap_bytes_kmalloc"]
    assert m["gigantic_pages_end"] == 0  # online to ZONE_MOVABLE: no gigantic pages there
