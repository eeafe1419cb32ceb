"""virtio-mem: Sub Block Mode and Big Block Mode, requested_size, the offline threshold, unplug, the retry timer.

Every test runs a short simulation (minutes of simulated time); outcomes are checked on the guest model
after the run, never on the driver's own branches. Kernel behaviour: drivers/virtio/virtio_mem.c, see the
driver's docstring.
"""

from __future__ import annotations

import pytest

from balloonsim.errors import ConfigError
from balloonsim.kernel.block import BlockState
from balloonsim.kernel.errno import EBUSY, EINVAL, ENOMEM
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.guest import Guest
from balloonsim.scenario import load_scenario
from balloonsim.sim.simulation import Sim, simulate
from balloonsim.units import PAGE_SHIFT, GiB, MiB, div_round_up

BOOT = 4 * GiB  # boot RAM 0-3G and 4G-5G (PCI hole): the device region starts at 5G, memory40
SB = 2 * MiB  # pageblock-sized subblocks since 448b8ec3bf11 (5.19): the default 6.12 guest
BLOCK = 128 * MiB


def scenario(steps, **over) -> dict:
    sc = {
        "duration": "10m",
        "guest": {"boot": "4G", "block_size": "128M"},
        "driver": {"name": "virtio-mem"},
        "onlining": {"agent": "auto"},
        "workload": {"name": "idle"},
        "host": {"controller": "schedule", "steps": [[t, f"{(BOOT + extra) >> 20}M"] for t, extra in steps]},
    }
    for key, value in over.items():
        sc[key] = {**sc[key], **value} if isinstance(value, dict) and key in sc else value
    return sc


def run(sc: dict, seed: int = 1) -> Sim:
    sim = Sim(load_scenario(sc), seed)
    sim.run()
    return sim


def region_blocks(sim: Sim):
    return [b for b in sim.guest.blocks.values() if sim.driver._ours(b)]


def check_consistent(sim: Sim) -> None:
    """What the host backs is what the device reports plugged; nothing unbacked reaches the buddy allocator;
    an SBM block's backing is exactly its plugged subblocks."""
    drv = sim.driver
    assert sim.host.populated << PAGE_SHIFT == drv.plugged_size
    backed = 0
    for b in region_blocks(sim):
        backed += b.backed.total
        for s, e in b.exposed:
            assert b.backed.covers(s, e), b
        if drv.mode.name == "sbm":
            want = Extents()
            for sb in drv.mode.plugged_sbs(b.id):
                want.add(*drv.mode.sb_range(b.id, sb, 1))
            assert b.backed == want, b
    assert backed << PAGE_SHIFT == drv.plugged_size


def memtotal_delta(m: dict) -> int:
    return m["memtotal_end_bytes"] - m["memtotal_start_bytes"]


# -- Sub Block Mode ------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [1092 * MiB, 1090 * MiB])
def test_sbm_plugs_requested_size_within_a_subblock(extra):
    sim = run(scenario([(10, extra)]))
    m = sim.result().metrics
    assert m["virtio_mem_mode"] == "sbm"
    assert m["virtio_mem_requested_bytes"] == extra  # a multiple of the 2M device block
    plugged = m["virtio_mem_plugged_bytes"]
    assert 0 <= extra - plugged < SB and plugged % SB == 0
    assert m["hotadd_ok"] == div_round_up(plugged, BLOCK)  # one add_memory() per memory block
    assert not m["guest_crashed"]
    # kmalloc memmap: MemTotal grows by exactly what was plugged; the memmap came out of boot memory
    assert memtotal_delta(m) == plugged
    assert m["memmap_bytes_kmalloc"] == m["hotadd_ok"] * 2 * MiB
    check_consistent(sim)


@pytest.mark.parametrize(("kernel", "sb"), [("5.12", 4 * MiB), ("6.1", 2 * MiB), ("6.12", 2 * MiB)])
def test_subblock_size_per_release(kernel, sb):
    """virtio_mem_init_hotplug(): max(pageblock_nr_pages * PAGE_SIZE, device_block_size) = 2 MiB with QEMU's
    2 MiB device block since 448b8ec3bf11 (5.19, a real 6.12 guest logs "subblock size: 0x200000"); 4 MiB
    (MAX_ORDER_NR_PAGES) before. A request of 130 MiB is plugged whole only with 2 MiB subblocks."""
    sim = run(scenario([(10, 130 * MiB)], guest={"kernel": kernel}))
    assert sim.driver.mode.sb_size == sb
    assert sim.result().metrics["virtio_mem_plugged_bytes"] == (130 * MiB) // sb * sb
    check_consistent(sim)


def test_unplugged_subblocks_stay_fake_offline_and_out_of_memtotal():
    sim = run(scenario([(10, 300 * MiB)]))
    m = sim.result().metrics
    blocks = sorted(region_blocks(sim), key=lambda b: b.id)
    assert [b.state for b in blocks] == [BlockState.ONLINE] * 3
    last = blocks[-1]
    plugged_last = 300 * MiB - 2 * BLOCK  # 44M: 11 subblocks
    assert last.backed.total << PAGE_SHIFT == plugged_last
    assert last.exposed.total << PAGE_SHIFT == plugged_last
    assert last.withheld << PAGE_SHIFT == BLOCK - plugged_last  # fake-offline: present, online, not managed
    assert sim.guest.meminfo().withheld_pages << PAGE_SHIFT == BLOCK - plugged_last
    # the plugged subblocks are the lowest ones (plug_and_add plugs 0..count-1)
    assert last.backed == Extents.span(last.start_pfn, last.start_pfn + (plugged_last >> PAGE_SHIFT))
    assert memtotal_delta(m) == 300 * MiB
    ev = sim.result().events
    fo = ev[ev.kind == "fake_offline"]
    assert list(fo.block) == [last.id] and fo.detail.iloc[0].startswith(f"{(BLOCK - plugged_last) >> PAGE_SHIFT} pages")
    check_consistent(sim)


def test_growth_fills_the_partial_online_block_first():
    sim = run(scenario([(10, 200 * MiB), (100, 400 * MiB)]))
    ev = sim.result().events
    late = ev[ev.t >= 100]  # memory41 was left with 72M (36 subblocks of 2M) plugged
    pop = late[late.kind == "populate"]
    adds = late[late.kind == "add_memory"]
    assert pop.iloc[0].block == 41 and pop.iloc[0].detail.startswith("plug subblocks 36-63")
    assert pop.index[0] < adds.index[0]  # filled (fake-onlined) before any new block is added
    b41 = sim.guest.blocks[41]
    assert b41.withheld == 0 and b41.exposed.total << PAGE_SHIFT == BLOCK
    assert sim.result().metrics["virtio_mem_plugged_bytes"] == 400 * MiB
    check_consistent(sim)


def test_target_change_during_a_plug_request_is_picked_up():
    # the second target lands while the first plug request is in flight (plug_latency 0.01 s): -EAGAIN
    sim = run(scenario([(10, 64 * MiB), (10.005, 104 * MiB)]))
    m = sim.result().metrics
    assert m["virtio_mem_requested_bytes"] == m["virtio_mem_plugged_bytes"] == 104 * MiB
    check_consistent(sim)


# -- memmap placement ------------------------------------------------------------------------------------


def test_altmap_memmap_sits_in_the_first_subblock_which_is_plugged_first():
    sim = run(scenario([(10, 300 * MiB)], memmap={"strategy": "altmap"}, onlining={"agent": "udev"}))
    m = sim.result().metrics
    assert not m["guest_crashed"]
    blocks = region_blocks(sim)
    assert len(blocks) == 3 and all(b.state is BlockState.ONLINE for b in blocks)
    for b in blocks:
        first_sb = (b.start_pfn, b.start_pfn + (SB >> PAGE_SHIFT))
        for s, e in b.memmap.in_range:
            assert first_sb[0] <= s and e <= first_sb[1]
        assert b.backed.covers(*first_sb)
    assert m["memmap_bytes_in_range"] == 3 * 2 * MiB
    assert memtotal_delta(m) == 300 * MiB - 3 * 2 * MiB  # MemTotal grows by plugged minus memmap
    check_consistent(sim)


def test_altmap_with_2g_blocks_crashes_when_one_subblock_is_plugged():
    # 2 GiB blocks carry a 32 MiB memmap; a 4 MiB request plugs one 4 MiB subblock: the memmap is unbacked. (A
    # device whose whole region is usable: QEMU's would leave no 2 GiB block usable for a 4 MiB request.)
    sc = scenario([(10, 4 * MiB)], guest={"block_size": "2G"}, driver={"usable_region": "whole"})
    m = simulate({**sc, "memmap": {"strategy": "altmap"}}, seed=1).metrics
    assert m["guest_crashed"] and m["crash_time_s"] == pytest.approx(10.01)
    ok = simulate(sc, seed=1).metrics  # kmalloc: the memmap lives in boot memory
    assert not ok["guest_crashed"] and ok["virtio_mem_plugged_bytes"] == 4 * MiB
    assert ok["virtio_mem_fake_offline_pages"] << PAGE_SHIFT == 2 * GiB - 4 * MiB


def test_qemus_usable_region_bounds_the_blocks_the_driver_may_use():
    """QEMU (hw/virtio/virtio-mem.c virtio_mem_resize_usable_region()) makes usable_region_size =
    min(region, requested_size + VIRTIO_MEM_USABLE_EXTENT (256 MiB on x86)), rounded up to the device block; the
    guest uses only memory blocks wholly inside it (virtio_mem_refresh_config(): last_usable_mb_id, 6.12.118
    l.2379-2394), and -ENOSPC otherwise. With 2 GiB memory blocks a 4 MiB request leaves no usable block (260
    MiB), so nothing is plugged until the request grows to where a whole block fits."""
    small = run(scenario([(10, 4 * MiB)], guest={"block_size": "2G"}))
    m = small.result().metrics
    assert m["virtio_mem_plugged_bytes"] == 0 and m["hotadd_ok"] == 0 and not m["guest_crashed"]
    assert small.driver.usable_region_size == 260 * MiB
    grown = run(scenario([(10, 4 * MiB), (100, 2 * GiB)], guest={"block_size": "2G"}))
    m = grown.result().metrics
    assert m["virtio_mem_plugged_bytes"] == 2 * GiB and m["hotadd_ok"] == 1


def test_qemus_usable_region_never_shrinks_while_the_guest_runs():
    """virtio_mem_resize_usable_region(..., can_shrink=false) when requested-size is set: a smaller request keeps
    the usable region; only a reset or an unplug-all (which Linux sends only at probe) shrinks it."""
    sim = run(scenario([(10, 1 * GiB), (120, 0)]))
    assert sim.driver.usable_region_size == 1 * GiB + 256 * MiB
    assert sim.result().metrics["virtio_mem_plugged_bytes"] == 0


def test_add_memory_enomem_unplugs_and_arms_the_doubling_retry_timer():
    # the subrange hint (the plugged 4 MiB) cannot hold a 2 GiB block's memmap and the strategy may not fall back
    sc = scenario([(10, 4 * MiB)], guest={"block_size": "2G"}, driver={"usable_region": "whole"})
    sim = run({**sc, "memmap": {"strategy": "subrange-hint", "fallback": "fail"}})
    res = sim.result()
    m = res.metrics
    assert m["hotadd_ok"] == 0 and m["hotadd_enomem"] == m["virtio_mem_add_failures"] == 4
    assert not m["guest_crashed"] and m["virtio_mem_plugged_bytes"] == 0
    assert sim.host.populated == 0  # what was plugged for the failed add was unplugged again
    failed = res.events[res.events.detail == "adding memory failed: -12"]
    assert list(failed.t.round(2)) == [10.01, 60.03, 160.05, 360.07]  # 50 s, then 100, 200 (then 300 cap)
    assert m["virtio_mem_retry_timer_fires"] == 3
    assert not sim.guest.backing.pending_blocks  # no stale backing left behind for the never-added block


def test_einval_from_add_memory_marks_the_device_broken():
    # 5.13-6.5 memmap_on_memory needs a single-block add; a 512 MiB big block is four: -EINVAL (a what-if:
    # virtio-mem never passes MHP_MEMMAP_ON_MEMORY)
    sc = scenario(
        [(10, GiB), (200, 2 * GiB)],
        guest={"kernel": "6.1"},
        memmap={"strategy": "altmap"},
        driver={"force_bbm": True, "bbm_block_size": "512M"},
    )
    res = simulate(sc, seed=1)
    assert res.metrics["virtio_mem_broken"] and res.metrics["hotadd_einval"] == 1
    assert res.metrics["virtio_mem_plugged_bytes"] == 0
    assert (res.events.detail == "unknown error, marking device broken: -22").sum() == 1


# -- Big Block Mode --------------------------------------------------------------------------------------


def test_force_bbm_plugs_and_adds_whole_big_blocks():
    sim = run(scenario([(10, 300 * MiB)], driver={"force_bbm": True}))
    m = sim.result().metrics
    assert m["virtio_mem_mode"] == "bbm"
    assert m["virtio_mem_plugged_bytes"] == 2 * BLOCK  # 300M // 128M big blocks
    assert m["virtio_mem_fake_offline_pages"] == 0
    for b in region_blocks(sim):
        assert b.withheld == 0 and b.backed.total == b.nr_pages
    assert memtotal_delta(m) == 2 * BLOCK
    check_consistent(sim)


def test_bbm_block_size_sets_add_granularity_and_threshold():
    sim = run(
        scenario([(10, 4 * GiB)], driver={"force_bbm": True, "bbm_block_size": "1G"}, onlining={"agent": "offline"})
    )
    ev = sim.result().events
    adds = ev[ev.kind == "add_memory"]
    assert all(d.endswith("+1024M 0") for d in adds.detail)
    # offline threshold max(1 GiB, 2 * bb_size) = 2 GiB: two big blocks, nobody onlines them
    assert len(adds) == 2 and len(sim.guest.blocks) == 16
    check_consistent(sim)


def test_bbm_unplug_offlines_and_removes_big_blocks():
    sim = run(
        scenario(
            [(10, GiB), (300, 256 * MiB)],
            driver={"force_bbm": True, "bbm_block_size": "256M"},
            memmap={"strategy": "altmap"},
        )
    )
    m = sim.result().metrics
    assert m["virtio_mem_plugged_bytes"] == 256 * MiB and len(sim.guest.blocks) == 2
    assert memtotal_delta(m) == 256 * MiB - 2 * 2 * MiB
    check_consistent(sim)


# -- the offline threshold ---------------------------------------------------------------------------------


def test_offline_threshold_when_nobody_onlines():
    sim = run(scenario([(10, 8 * GiB)], onlining={"agent": "offline"}))
    m = sim.result().metrics
    threshold = max(2 * BLOCK, GiB)
    assert m["blocks_added_end"] * BLOCK <= threshold + BLOCK
    assert m["virtio_mem_plugged_bytes"] == threshold  # full blocks up to the threshold, then -ENOSPC
    assert m["virtio_mem_requested_bytes"] == 8 * GiB
    assert memtotal_delta(m) == 0
    assert m["virtio_mem_retry_timer_fires"] == 0  # -ENOSPC arms no timer
    check_consistent(sim)


def test_onlining_reopens_the_threshold():
    sim = run(scenario([(10, 3 * GiB)], onlining={"agent": "udev", "delay": 5}))
    m = sim.result().metrics
    assert m["virtio_mem_plugged_bytes"] == 3 * GiB and m["blocks_online_end"] == 24
    ev = sim.result().events
    adds = ev[ev.kind == "add_memory"].t
    assert adds.iloc[8] >= 15.0  # the 9th block waits for MEM_ONLINE of the first ones
    check_consistent(sim)


# -- unplug ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["kmalloc", "altmap"])
@pytest.mark.parametrize("agent", ["auto", "offline"])
def test_target_decrease_unplugs(strategy, agent):
    sim = run(
        scenario([(10, GiB + 64 * MiB), (300, 200 * MiB)], memmap={"strategy": strategy}, onlining={"agent": agent})
    )
    m = sim.result().metrics
    assert m["virtio_mem_plugged_bytes"] == m["virtio_mem_requested_bytes"] == 200 * MiB
    assert m["blocks_added_end"] == 2
    assert not m["guest_crashed"]
    ev = sim.result().events
    assert (ev.kind == "unplug").any() and ev[ev.kind == "unplug"].t.min() >= 300
    if agent == "auto":
        memmap = 2 * 2 * MiB if strategy == "altmap" else 0
        assert memtotal_delta(m) == 200 * MiB - memmap
    check_consistent(sim)


def test_unplug_of_used_memory_fails_enomem_and_retries():
    """virtio_mem_fake_offline() (6.12.118, 7.3.4) returns alloc_contig_range()'s -ENOMEM as it is when no
    migration target can be had; virtio_mem_run_wq() arms the doubling retry timer for it."""
    ramp = {"name": "ramp", "start_size": "64M", "end_size": "4800M", "start_time": 30, "ramp_time": 10}
    sim = run(scenario([(10, 2 * GiB), (120, 0)], workload=ramp))
    res = sim.result()
    m = res.metrics
    assert m["oom_kills"] == 0
    assert 0 < m["virtio_mem_plugged_bytes"] < 2 * GiB  # part was free or could move, the rest has nowhere to go
    retries = set(res.events[res.events.detail.str.contains(": retry in")].detail)
    assert {"-ENOMEM: retry in 50s", "-ENOMEM: retry in 100s", "-ENOMEM: retry in 200s"} <= retries
    assert not any(r.startswith("-EBUSY") for r in retries)
    check_consistent(sim)


@pytest.mark.parametrize("online_type", ["online_movable", "online_kernel"])
def test_unplug_migrates_in_use_pages_to_lower_zones(online_type):
    """alloc_contig_range() (6.12.118, 7.3.4) migrates the range's pages in use with alloc_migration_target():
    from ZONE_MOVABLE (__GFP_HIGHMEM added) to Movable, Normal or DMA32, from Normal to Normal or DMA32, with
    direct reclaim; the range's own zone does not have to pay for it."""
    ramp = {"name": "ramp", "start_size": "64M", "end_size": "2600M", "start_time": 60, "ramp_time": 10}
    sim = run(scenario([(10, 2 * GiB), (200, GiB)], workload=ramp, onlining={"online_type": online_type}))
    m = sim.result().metrics
    assert m["oom_kills"] == 0
    assert m["virtio_mem_plugged_bytes"] == m["virtio_mem_requested_bytes"] == GiB
    assert m["virtio_mem_unplug_failures"] == 0
    check_consistent(sim)


@pytest.mark.parametrize("force_bbm", [False, True])
def test_unplug_pass_stops_at_enomem(monkeypatch, force_bbm):
    """virtio_mem_sbm_unplug_any_sb_online() and virtio_mem_bbm_unplug_request() (6.12.118, 7.3.4) continue only
    on -EBUSY; an -ENOMEM from virtio_mem_fake_offline() ends the unplug pass (SBM: goto out_unlock; BBM:
    virtio_mem_bbm_offline_remove_and_unplug_bb() rolls back and returns it) and virtio_mem_run_wq() arms the
    retry timer: nothing else is unplugged until it fires."""
    real = Guest.alloc_contig_range
    calls: list[int] = []

    def first_fails(self, block, start, end):
        calls.append(start)
        return -ENOMEM if len(calls) == 1 else real(self, block, start, end)

    monkeypatch.setattr(Guest, "alloc_contig_range", first_fails)
    sim = run(scenario([(10, GiB), (120, 512 * MiB)], driver={"force_bbm": force_bbm}))
    res = sim.result()
    ev = res.events
    assert "-ENOMEM: retry in 50s" in set(ev[ev.kind == "virtio_mem"].detail)
    unplugs = ev[ev.kind == "unplug"].t
    assert len(calls) > 1 and unplugs.min() >= 170  # the next pass is the timer's, 50 s later
    assert res.metrics["virtio_mem_plugged_bytes"] == 512 * MiB
    assert res.metrics["virtio_mem_retry_timer_fires"] == 1
    check_consistent(sim)


def test_unplug_online_off_leaves_online_blocks_alone():
    sc = scenario([(10, GiB), (120, 0)], driver={"unplug_online": False})
    m = simulate(sc, seed=1).metrics
    assert m["virtio_mem_plugged_bytes"] == GiB and m["virtio_mem_unplug_failures"] == 0
    m2 = simulate(scenario([(10, GiB), (120, 0)]), seed=1).metrics
    assert m2["virtio_mem_plugged_bytes"] == 0 and m2["blocks_added_end"] == 0


# -- the host ----------------------------------------------------------------------------------------------


def test_host_short_of_memory_refuses_plugs_and_retries():
    sim = run(scenario([(10, 2 * GiB)], host={"memory": "700M"}))
    m = sim.result().metrics
    assert m["virtio_mem_plugged_bytes"] == 5 * BLOCK  # whole-block requests: the 6th does not fit in 60M
    assert m["virtio_mem_plug_failures"] == 4 and m["virtio_mem_retry_timer_fires"] == 3
    check_consistent(sim)


# -- setup, errors, determinism ----------------------------------------------------------------------------


def test_online_page_callback_is_exclusive():
    """The driver claims the callback when it is built; a second claimant gets -EINVAL, a second driver a
    ConfigError (set_online_page_callback(), mm/memory_hotplug.c)."""
    sim = Sim(load_scenario(scenario([(10, GiB)])), 1)
    assert sim.guest.online_page_callback == sim.driver.online_page_cb
    assert sim.guest.set_online_page_callback(lambda g, b, span: span) == -EINVAL
    with pytest.raises(ConfigError, match="online-page callback"):
        type(sim.driver)(sim, sim.driver.p)


@pytest.mark.parametrize(
    ("driver", "guest", "path"),
    [
        ({"region_size": "200M"}, {}, "driver.region_size"),
        ({"device_block_size": "3M"}, {}, "driver.device_block_size"),
        ({"force_bbm": True, "bbm_block_size": "64M"}, {}, "driver.bbm_block_size"),
        ({"region_start": "2G"}, {}, "driver.region_start"),
        ({"retry_min": "400s"}, {}, "driver"),
        ({}, {"kernel": "4.19"}, "guest.kernel"),
    ],
)
def test_bad_configuration_names_the_key(driver, guest, path):
    with pytest.raises(ConfigError) as err:
        simulate(scenario([(10, GiB)], driver=driver, guest=guest), seed=1)
    assert err.value.path.startswith(path)


def test_region_start_and_size_bound_the_device():
    sim = run(scenario([(10, 2 * GiB)], driver={"region_start": "8G", "region_size": "512M"}))
    m = sim.result().metrics
    assert m["virtio_mem_requested_bytes"] == 512 * MiB == m["virtio_mem_plugged_bytes"]
    assert sorted(b.id for b in sim.guest.blocks.values()) == [64, 65, 66, 67]
    check_consistent(sim)


def test_same_seed_same_metrics():
    sc = scenario(
        [(10, GiB)],
        duration="12m",
        onlining={"agent": "udev"},
        workload={"name": "tasks", "arrival_rate": 0.1},
        host={"controller": "hyperv-buffer"},
    )
    sc["host"].pop("steps")
    a, b = simulate(sc, seed=5), simulate(sc, seed=5)
    assert a.metrics == pytest.approx(b.metrics, nan_ok=True)
    assert a.events.equals(b.events)
    assert a.metrics["virtio_mem_plugged_bytes"] > 0


def _first_offline_fails(monkeypatch) -> list[int]:
    """Guest.offline_memory_block() returns -EBUSY the first time it is asked, then offlines; the ids asked."""
    real = Guest.offline_memory_block
    calls: list[int] = []

    def first_fails(self, block_id):
        calls.append(block_id)
        return -EBUSY if len(calls) == 1 else real(self, block_id)

    monkeypatch.setattr(Guest, "offline_memory_block", first_fails)
    return calls


def test_failed_removal_of_unplugged_block_is_retried_on_the_timer(monkeypatch):
    """virtio_mem_sbm_unplug_any_sb_online() (6.12.118, 7.3.4): when virtio_mem_sbm_try_remove_unplugged_mb()
    fails, have_unplugged_mb is set; virtio_mem_run_wq() then turns a 0 result into -EBUSY (the retry timer) and
    virtio_mem_cleanup_pending_mb() retries offlining and removing the block on the next run, with no change of
    the requested size."""
    calls = _first_offline_fails(monkeypatch)
    sim = run(scenario([(10, 2 * BLOCK), (120, BLOCK)]))
    res = sim.result()
    ev = res.events
    assert "-EBUSY: retry in 50s" in set(ev[ev.kind == "virtio_mem"].detail)
    removed = ev[(ev.kind == "unplug") & ev.detail.str.contains("removed")]
    assert len(calls) == 2 and len(removed) == 1 and removed.t.iloc[0] >= 170
    m = res.metrics
    assert m["virtio_mem_plugged_bytes"] == BLOCK and m["blocks_added_end"] == 1
    assert m["virtio_mem_retry_timer_fires"] == 1
    check_consistent(sim)


def test_failed_removal_of_unplugged_block_is_not_retried_before_6_5(monkeypatch):
    """6.1.192's virtio_mem_sbm_unplug_any_sb_online() (drivers/virtio/virtio_mem.c l.1990-2004) only logs a
    failed virtio_mem_sbm_offline_and_remove_mb() of a fully unplugged block: there is no have_unplugged_mb
    (6.5), so virtio_mem_run_wq() returns 0, no retry timer is armed, and the empty block stays added (its
    memmap with it) until a later unplug request passes it again."""
    calls = _first_offline_fails(monkeypatch)
    sim = run(scenario([(10, 2 * BLOCK), (120, BLOCK)], guest={"kernel": "6.1"}))
    res = sim.result()
    ev = res.events
    assert not any("retry in" in d for d in ev[ev.kind == "virtio_mem"].detail)
    assert ev[(ev.kind == "unplug") & ev.detail.str.contains("removed")].empty
    m = res.metrics
    assert len(calls) == 1 and m["virtio_mem_retry_timer_fires"] == 0
    assert m["virtio_mem_plugged_bytes"] == BLOCK and m["blocks_added_end"] == 2
    check_consistent(sim)


@pytest.mark.parametrize("force_bbm", [False, True])
def test_rolled_back_block_comes_back_in_the_zone_it_was_in(monkeypatch, force_bbm):
    """offline_and_remove_memory() (mm/memory_hotplug.c, 6.12.118 and 7.3.4) puts a block it offlined back
    online when the removal fails, with the type try_offline_memory_block() sensed from the block's zone
    (MMOP_ONLINE_MOVABLE for ZONE_MOVABLE, else MMOP_ONLINE_KERNEL), not with the type it was onlined with. A
    block onlined with "online" under memory_hotplug.online_policy=auto-movable sits in ZONE_MOVABLE; after the
    administrator writes contig-zones to the parameter (module_param_cb(online_policy, ..., 0644)), "online"
    would put it in ZONE_NORMAL, but the rollback keeps it movable."""
    zones_before: dict[int, str] = {}
    fails: list[int] = []

    def remove_fails(self, start, size):
        fails.append(start)
        self.config.online_policy = "contig-zones"  # what the rollback's "online" would now pick from
        return -EBUSY

    def remember_zones(sim: Sim) -> None:
        zones_before.update({b.id: b.online_zone.type.value for b in region_blocks(sim)})

    monkeypatch.setattr(Guest, "remove_memory", remove_fails)
    driver = {"force_bbm": True, "bbm_block_size": "256M"} if force_bbm else {}
    sc = scenario(
        [(10, GiB), (300, 0)],
        guest={"online_policy": "auto-movable"},
        driver=driver,
        onlining={"online_type": "online"},
    )
    sim = Sim(load_scenario(sc), 1)
    sim.env.process(_at(sim, 200, remember_zones))
    sim.run()
    assert fails and set(zones_before.values()) == {"Movable"}
    tried = [b for b in region_blocks(sim) if (b.start_pfn << PAGE_SHIFT) >= min(fails)]
    assert tried and all(b.state is BlockState.ONLINE for b in tried)  # every removal failed: all rolled back
    assert {b.online_zone.type.value for b in tried} == {"Movable"}
    assert {b.online_type for b in tried} == {"online_movable"}
    check_consistent(sim)


def _at(sim: Sim, t: float, do):
    yield sim.env.timeout(t)
    do(sim)
