"""hv_balloon (drivers/hv/hv_balloon.c): region sizing, the hot-add chunk per release, the memory notifier, and
ballooning's effect on MemTotal per release. Each test states the kernel's code it follows."""

from __future__ import annotations

import pytest

from balloonsim.kernel.block import BlockState
from balloonsim.kernel.errno import EEXIST, ENOMEM
from balloonsim.kernel.page_alloc import USER_ZONEIDX, Gfp
from balloonsim.scenario import load_scenario
from balloonsim.sim.simulation import Sim, simulate
from balloonsim.units import PAGE_SHIFT, GiB, MiB

CHUNK = 32768  # 128 MiB in pages


def _sim(kernel: str = "6.12", offset: str = "0", **guest) -> Sim:
    sc = {
        "duration": "1h",
        "guest": {"boot": "2G", "kernel": kernel, **guest},
        "driver": {"name": "hyperv", "request_offset": offset, "balloon": True},
        "workload": {"name": "idle"},
        "onlining": {"agent": "auto"},
        "host": {"controller": "schedule", "steps": [[3000, "2G"]]},  # the host stays quiet: the test drives
    }
    return Sim(load_scenario(sc), 1)


def _request(sim: Sim, pages: int) -> None:
    sim.env.process(sim.driver.hot_add_request(pages))
    sim.env.run(until=sim.env.now + 30)


def test_region_from_the_rounded_down_start_ends_before_the_request():
    """hot_add_req(): rg_start = ALIGN_DOWN(pg_start, chunk), rg_sz = ALIGN(pfn_cnt, chunk); hv_mem_hot_add()
    advances covered_end_pfn by min(remaining, chunk) from pg_start: a 128 MiB request 64 MiB into its chunk
    adds one chunk, reports all 32768 pages accepted, and its last 64 MiB lie in no added block."""
    sim = _sim(offset="64M")
    drv, g = sim.driver, sim.guest
    _request(sim, CHUNK)
    (r,) = drv.regions
    pg_start = r.covered_start_pfn
    assert pg_start - r.start_pfn == CHUNK // 2
    assert r.end_pfn - r.start_pfn == CHUNK and r.ha_end_pfn == r.end_pfn
    assert r.covered_end_pfn == pg_start + CHUNK > r.ha_end_pfn  # covered past what was added
    assert g.stats.add_calls == 1 and drv.num_pages_added == CHUNK  # page_count: all of it
    (b,) = g.blocks.values()
    assert b.withheld == CHUNK // 2  # the first 64 MiB of the chunk: not covered, fake-offline
    # the host goes on after the request: a new region at the next chunk, whose first 64 MiB (backed by the
    # host in the first request) stay fake-offline too
    _request(sim, CHUNK)
    assert len(drv.regions) == 2
    b2 = g.blocks[b.id + 1]
    assert b2.backed.total == CHUNK  # 64 MiB from each request
    assert b2.withheld == CHUNK // 2
    assert drv.num_pages_added == 2 * CHUNK and drv.num_pages_onlined == CHUNK  # the host counts 256 MiB


def test_request_into_an_existing_region_extends_it_by_whole_chunks():
    """pfn_covered(): pg_start inside [start_pfn, end_pfn) joins the region; a gap if it skips pages; end_pfn
    grows by ALIGN(residual, chunk)."""
    sim = _sim()
    drv = sim.driver
    _request(sim, CHUNK // 2)
    (r,) = drv.regions
    assert drv.pfn_covered(r.start_pfn + CHUNK // 2 + 100, CHUNK)
    assert r.gaps.total == 100
    assert r.end_pfn - r.start_pfn == 2 * CHUNK


@pytest.mark.parametrize(("kernel", "ok"), [("6.8", False), ("6.12", True)])
def test_chunk_is_128m_before_6_10(kernel, ok):
    """HA_CHUNK was 128 MiB until 8852ebf1948d (6.10): with 256 MiB memory blocks every add_memory() of a chunk
    fails check_hotplug_memory_range() with -EINVAL, a transient failure the host retries forever."""
    m = simulate(
        {
            "duration": "10m",
            "guest": {"boot": "2G", "kernel": kernel, "block_size": "256M"},
            "driver": {"name": "hyperv"},
            "workload": {"name": "idle"},
            "onlining": {"agent": "auto"},
            "host": {"controller": "schedule", "steps": [[10, "3G"]]},
        },
        1,
    ).metrics
    if ok:
        assert m["hotadd_ok"] > 0 and m["hotadd_einval"] == 0
    else:
        assert m["hotadd_ok"] == 0 and m["hotadd_einval"] > 1 and m["hv_hotadd_transient"] > 1


def test_mem_offline_and_cancel_online_notifications():
    """hv_memory_notifier(): MEM_ONLINE and MEM_CANCEL_ONLINE complete the wait; MEM_OFFLINE takes the range's
    backed pages (hv_page_offline_check()) off num_pages_onlined, clamped at 0."""
    sim = _sim()
    drv, g = sim.driver, sim.guest
    _request(sim, CHUNK)
    (b,) = g.blocks.values()
    assert b.state is BlockState.ONLINE and drv.num_pages_onlined == CHUNK
    drv.ol_event = sim.env.event()
    drv._memory_notify("MEM_CANCEL_ONLINE", b)
    assert drv.ol_event.triggered
    drv._memory_notify("MEM_OFFLINE", b)
    assert drv.num_pages_onlined == 0
    drv._memory_notify("MEM_OFFLINE", b)
    assert drv.num_pages_onlined == 0  # never below 0


@pytest.mark.parametrize(("kernel", "moves"), [("4.19", False), ("5.12", True), ("6.12", True)])
def test_ballooning_moves_memtotal_from_5_11(kernel, moves):
    """alloc_balloon_pages()/free_balloon_pages() adjust_managed_page_count() from d1df458cbfdb (5.11)."""
    sim = _sim(kernel, boot="8G")
    drv, a = sim.driver, sim.guest.alloc
    total, free = a.total("managed"), a.total("free")
    got = drv.balloon_up(512 * MiB >> PAGE_SHIFT)
    assert got == 512 * MiB >> PAGE_SHIFT
    assert a.total("free") == free - got
    assert a.total("managed") == (total - got if moves else total)
    drv.balloon_down(got)
    assert (a.total("managed"), a.total("free")) == (total, free)


def test_balloon_up_keeps_mem_available_above_the_floor():
    """balloon_up(): avail_pages = si_mem_available(); it never balloons below compute_balloon_floor()."""
    from balloonsim.drivers.hyperv import compute_balloon_floor
    from balloonsim.kernel.meminfo import mem_available

    sim = _sim(boot="4G")
    drv, a = sim.driver, sim.guest.alloc
    drv.balloon_up(8 * GiB >> PAGE_SHIFT)
    assert mem_available(a) >= compute_balloon_floor(a.total("managed") + drv.num_pages_ballooned) - 512


def test_the_hyperv_host_reads_a_pressure_report_every_second_whatever_changed_it():
    """hv_balloon posts num_committed every second (drivers/hv/hv_balloon.c dm_thread_func(): "The host expects us
    to post information on the memory pressure every second", 4.19 to 6.18), and num_committed counts pages added
    but not onlined and the balloon floor (post_status()), which change without any allocation: the host reads
    the change at its next 1 s read, not at the guest's next allocation."""
    sc = {
        "duration": "6m",
        "guest": {"boot": "4G", "max_addr": "64G"},
        "driver": {"name": "hyperv"},
        "workload": {"name": "constant", "size": "3G"},  # committed x 1.2 above the 4 GiB startup memory
        "host": {"controller": "hyperv-buffer"},
    }
    sim = Sim(load_scenario(sc), 0)
    env = sim.env

    def added_not_onlined():
        yield env.timeout(300.5)  # the guest is at rest by now: nothing allocates any more
        sim.driver.num_pages_added += 32768  # 128 MiB the host covered, not onlined yet

    env.process(added_not_onlined())
    gen = []
    env.process(_at(env, 300.4, lambda: gen.append(sim.guest.alloc.gen)))
    env.process(_at(env, 300.99, lambda: gen.append(sim.guest.alloc.gen)))
    sim.run()
    assert gen[0] == gen[1]  # nothing allocated or freed around the change
    ev = sim.result().events
    targets = ev[(ev.kind == "target") & (ev.t > 300)]
    assert targets.t.iloc[0] == 301.0


def _at(env, t: float, fn):
    yield env.timeout(t)
    fn()


def test_ballooned_pages_pin_their_block():
    """alloc_balloon_pages() (drivers/hv/hv_balloon.c, 6.12.118 and 7.3.4 as read) split_page()s each unit and
    __SetPageOffline()s its pages with their reference held; hv_memory_notifier() does nothing on
    MEM_GOING_OFFLINE. offline_pages() -> scan_movable_pages() then returns -EBUSY on the first "PageOffline(page)
    && page_count(page)" ("unmovable page", mm/memory_hotplug.c, same releases). So every hot-added block holding
    a balloon page is not removable and its offline fails -EBUSY; once balloon_down() (free_balloon_pages()) has
    given the pages back, it offlines again."""
    from balloonsim.kernel.errno import EBUSY

    sim = _sim()  # 2 GiB boot: the hot-added memory is the guest's only ZONE_NORMAL, where GFP_HIGHUSER goes first
    drv, g = sim.driver, sim.guest
    for _ in range(16):
        _request(sim, CHUNK)
    assert len(g.blocks) == 16 and all(b.state is BlockState.ONLINE for b in g.blocks.values())
    before = {b.id: b.unmovable for b in g.blocks.values()}
    normal = next(z for z in g.alloc.iter_zones() if z.type.value == "Normal")
    got = drv.balloon_up(1536 * MiB >> PAGE_SHIFT)
    assert got == 1536 * MiB >> PAGE_SHIFT
    assert normal.managed == sum(b.managed for b in g.blocks.values()) - got  # all of it from the hot-added blocks
    pinned = [b.id for b in g.blocks.values() if not g.removable(b)]
    assert len(pinned) >= got // CHUNK  # 1.5 GiB fills at least 12 of the 128 MiB blocks
    assert all(g.offline_memory_block(bid) == -EBUSY for bid in pinned)
    landed: dict[int, int] = {}
    for t in drv.ballooned:
        if t.block is not None:
            landed[t.block.id] = landed.get(t.block.id, 0) + t.pages
    assert sum(landed.values()) == got  # each piece knows its block
    assert set(landed) <= set(pinned)
    for bid, pages in landed.items():
        assert g.blocks[bid].unmovable == before[bid] + pages
    drv.balloon_down(drv.num_pages_ballooned)
    assert not drv.ballooned
    for bid in landed:
        b = g.blocks[bid]
        assert b.unmovable == before[bid]
        if not before[bid]:  # no memmap or other kernel data in it: removable again
            assert g.removable(b)
            assert g.offline_memory_block(bid) == 0


@pytest.mark.parametrize("kernel", ["4.19", "6.12"])
def test_pressure_report_leaves_the_ballooned_pages_out(kernel):
    """get_pages_committed() (drivers/hv/hv_balloon.c, 6.12.118 and 7.3.4 as read) adds num_pages_ballooned to
    num_committed; the model leaves it out on purpose: its host compares target = report x (1 + buffer) with what
    the guest has after the balloon (guest_pages()), so counting the ballooned pages would raise the target by
    what was just ballooned. Ballooning moves the report only through compute_balloon_floor(), which follows
    totalram (MemTotal falls from 5.11, d1df458cbfdb; before, the pages stay managed and look allocated)."""
    from balloonsim.drivers.hyperv import compute_balloon_floor

    sim = _sim(kernel, boot="8G")
    drv, a = sim.driver, sim.guest.alloc
    before, floor = drv.committed_bytes(), compute_balloon_floor(a.total("managed"))
    pages = drv.guest_pages()
    got = drv.balloon_up(1 * GiB >> PAGE_SHIFT)
    assert got == 1 * GiB >> PAGE_SHIFT and drv.guest_pages() == pages - got
    assert drv.committed_bytes() - before == (compute_balloon_floor(a.total("managed")) - floor) << PAGE_SHIFT


def test_pressure_report_counts_no_kernel_allocation():
    """vm_memory_committed() is percpu_counter_sum_positive(&vm_committed_as) (mm/util.c, 6.12.118 and 7.3.4 as
    read): Committed_AS, which only vm_acct_memory() moves (user mappings). The memmap, slab and page tables a
    hot-add allocates are never in it, so with nothing else moving, get_pages_committed() changes by
    (added - onlined) and compute_balloon_floor() only."""
    from balloonsim.drivers.hyperv import compute_balloon_floor

    sim = _sim()
    drv, a = sim.driver, sim.guest.alloc
    kernel, user = a.total("kernel"), a.total("anon") + a.swap.used
    before, floor = drv.committed_bytes(), compute_balloon_floor(a.total("managed"))
    _request(sim, 8 * CHUNK)
    assert a.total("kernel") - kernel >= 4096  # the ordinary memmap of 1 GiB, 16 MiB, and the metadata
    assert a.total("anon") + a.swap.used == user
    pending = max(0, drv.num_pages_added - drv.num_pages_onlined)
    grown = pending + compute_balloon_floor(a.total("managed")) - floor
    assert drv.committed_bytes() - before == grown << PAGE_SHIFT


def test_committed_as_for_a_host_that_asks_any_driver():
    """Driver.committed_bytes() and Controller.used_bytes() stand for vm_memory_committed() (mm/util.c, 6.12.118
    and 7.3.4 as read), Committed_AS: user mappings only, never the kernel's own allocations."""
    sc = {
        "duration": "2m",
        "guest": {"boot": "2G", "kernel": "6.12", "max_addr": "64G"},
        "driver": {"name": "xen"},
        "workload": {"name": "constant", "size": "1800M"},  # x 1.2: more than the boot memory
        "onlining": {"agent": "auto"},
        "host": {"controller": "hyperv-buffer"},
    }
    sim = Sim(load_scenario(sc), 1)
    sim.run()
    a = sim.guest.alloc
    assert a.total("kernel") > 0 and a.total("anon") > 0  # the hot-added section's memmap, the task's memory
    committed_as = sum(t.want for t in sim.memory.tasks.values()) << PAGE_SHIFT
    assert committed_as == 1800 << 20
    assert sim.driver.committed_bytes() == sim.controller.used_bytes() == committed_as

    from balloonsim.kernel.meminfo import vm_memory_committed

    assert vm_memory_committed(a) << PAGE_SHIFT == committed_as


@pytest.mark.parametrize("kernel", ["4.19", "6.12"])
def test_committed_as_is_charged_when_a_task_maps_its_memory_not_when_it_faults(kernel):
    """mmap_region() and do_brk_flags() charge a private writable mapping's whole length to vm_committed_as
    through security_vm_enough_memory_mm() -> __vm_enough_memory() -> vm_acct_memory() before any page of it is
    touched (6.12.118 mm/mmap.c l.1417-1430, l.1810-1817; mm/util.c l.1037, first thing, whatever the overcommit
    mode); exit_mmap() gives it back (vm_unacct_memory()). So hv_balloon's pressure report (get_pages_committed())
    shows a worker's whole size from its start, while it is still faulting in, and drops it when the OOM killer
    ends it. The model counted only the pages already touched, so the host saw demand late under pressure."""
    from balloonsim.kernel.meminfo import vm_memory_committed

    sc = {
        "duration": "3s",
        "guest": {"boot": "2G", "kernel": kernel},
        "driver": {"name": "hyperv"},
        "workload": {"name": "constant", "size": "1G", "task_size": "1G", "fault_rate": "8M"},
        "onlining": {"agent": "auto"},
        "host": {"controller": "schedule", "steps": [[3000, "2G"]]},
    }
    sim = Sim(load_scenario(sc), 1)
    sim.run()
    a, mem = sim.guest.alloc, sim.memory
    (task,) = [t for t in mem.tasks.values() if t.name == "worker"]
    assert 0 < task.rss <= 4 * (8 << 20) >> PAGE_SHIFT  # at most four ticks of faults at 8 MiB/s: of 1 GiB
    before = sim.driver.committed_bytes()
    assert vm_memory_committed(a) == 1 << 30 >> PAGE_SHIFT
    mem.exit(task)
    assert vm_memory_committed(a) == 0
    assert before - sim.driver.committed_bytes() == 1 << 30  # the whole mapping, not the pages touched


def test_balloon_down_of_part_of_a_2m_entry_gives_its_whole_units_back_as_pageblocks():
    """free_balloon_pages() (drivers/hv/hv_balloon.c, 6.12.118 and 7.3.4 as read) frees each page of the host's
    range with __free_page(): the buddy allocator merges every whole 2 MiB unit back to order 9, and only the unit
    freed in part stays in fragments. Unballooning 3 units and 100 pages of a 4-unit entry gives back 3 free
    pageblocks and 100 fragments; the unit's other 412 pages come back as fragments later."""
    sim = _sim(boot="8G")
    drv, a = sim.driver, sim.guest.alloc
    managed = {id(z): z.managed for z in a.iter_zones()}
    pmd_before = a.total("free_pmd")
    got = drv.balloon_up(4 * 512)
    assert got == 2048 and a.total("free_pmd") == pmd_before - 4  # four 2 MiB units
    (zone,) = [z for z in a.iter_zones() if z.managed != managed[id(z)]]
    pmd, base = zone.free_pmd, zone.free_base
    assert base + 512 < 4 * 512  # no fragment coalescing (Zone.give()) in the way of the count
    assert drv.balloon_down(3 * 512 + 100) == 3 * 512 + 100
    assert (zone.free_pmd - pmd, zone.free_base - base) == (3, 100)
    assert drv.balloon_down(412) == 412
    assert (zone.free_pmd - pmd, zone.free_base - base) == (3, 512)
    assert drv.num_pages_ballooned == 0


def test_mem_offline_counts_a_pfn_only_inside_its_region():
    """hv_page_offline_check() (drivers/hv/hv_balloon.c, 6.12.118 and 7.3.4 as read) counts a pfn only while
    "pfn >= has->start_pfn && pfn < has->end_pfn", then asks has_pfn_is_backed(). A region whose covered_end_pfn ran
    past its end (a request 64 MiB into its chunk) does not count the next block's pages, which the next region
    holds: offlining that block takes off only what the next region onlined there."""
    sim = _sim(offset="64M")
    drv, g = sim.driver, sim.guest
    _request(sim, CHUNK)
    _request(sim, CHUNK)
    r1, r2 = drv.regions
    b2 = g.blocks[r2.start_pfn // CHUNK]
    assert r1.covered_end_pfn > r1.end_pfn == b2.start_pfn  # r1's coverage runs into b2
    assert drv.num_pages_onlined == CHUNK
    drv._memory_notify("MEM_OFFLINE", b2)
    assert drv.num_pages_onlined == CHUNK - r2.backed(b2.start_pfn, b2.end_pfn).total == CHUNK // 2


def test_pages_outside_every_region_are_onlined_but_not_counted():
    """hv_online_page() (drivers/hv/hv_balloon.c, 7.3.4 as read; 1da602ec36a3, 6.14) hands a page outside every
    hot-add region to generic_online_page() directly; only hv_page_online_one() does num_pages_onlined++. So
    such pages reach the buddy allocator (6.18 profile) without moving the count the pressure report's
    (added - onlined) is made of."""
    from balloonsim.kernel.block import MemoryBlock
    from balloonsim.kernel.extents import Extents

    sim = _sim("6.18")
    drv, g = sim.driver, sim.guest
    assert not drv.regions
    block = MemoryBlock(40, 40 * CHUNK, CHUNK, 0, 0)  # a block no hv region holds
    span = Extents.span(block.start_pfn, block.end_pfn)
    assert drv.hv_online_page(g, block, span).total == CHUNK
    assert drv.num_pages_onlined == 0


def test_balloon_up_reclaims_page_cache_down_to_the_floor():
    """alloc_balloon_pages() allocates with GFP_HIGHUSER|__GFP_NORETRY (drivers/hv/hv_balloon.c, 6.12.118 and
    7.3.4): each allocation wakes kswapd and reclaims once (__alloc_pages_slowpath()), so with 2 GiB of page cache
    a 3 GiB request is met in full, up to balloon_up()'s si_mem_available() - compute_balloon_floor() limit."""
    from balloonsim.drivers.hyperv import compute_balloon_floor
    from balloonsim.kernel.meminfo import mem_available

    sim = _sim(boot="4G", page_cache="2G")
    drv, a = sim.driver, sim.guest.alloc
    want = 3 * GiB >> PAGE_SHIFT
    limit = mem_available(a) - compute_balloon_floor(a.total("managed"))
    assert limit >= want
    cache = a.total("pagecache")
    assert drv.balloon_up(want) == want
    assert a.total("pagecache") < cache - (1 * GiB >> PAGE_SHIFT)
    assert sim.memory.oom_kills == 0


def test_a_retry_over_sections_a_failed_add_left_stops_hot_add():
    """hv_mem_hot_add() (drivers/hv/hv_balloon.c, 6.12.118 and 7.3.4): a failed add_memory() rolls back
    ha_end_pfn and covered_end_pfn and stops; `if (ret == -EEXIST) do_hot_add = false;`. With 2 GiB blocks (the
    6.10+ chunk is memory_block_size_bytes()) a chunk is 16 sections: __add_pages() (mm/memory_hotplug.c) adds
    them one by one, and when the memmap of a later one fails add_memory_resource() calls no
    arch_remove_memory(), so the earlier ones stay. The host's next request covers the same chunk again, and
    sparse_add_section() -> section_activate() -> fill_subsection_map() returns -EEXIST: hot-add stops for good."""
    sim = _sim(block_size="2G")
    drv, g = sim.driver, sim.guest
    assert drv.chunk == 2 * GiB >> PAGE_SHIFT and drv.do_hot_add
    zl = g.alloc.zonelist(0, kernel_only=False)
    room = sum(max(0, z.free - z.wmark_min - z.lowmem_reserve[USER_ZONEIDX]) for z in zl)
    user = room - 2600  # room for 5 section memmaps (2 MiB each), not 16
    assert g.alloc.alloc(0, user, Gfp.USER) == user
    _request(sim, 2 * GiB >> PAGE_SHIFT)
    assert g.stats.add_errors == {-ENOMEM: 1} and not g.blocks and drv.do_hot_add
    assert g.stale_sections.total == 5 * 32768
    (r,) = drv.regions
    assert r.ha_end_pfn == r.start_pfn  # rolled back: the host may retry
    for z in g.alloc.iter_zones():
        g.alloc.free(z, min(z.anon, user), "anon")
    _request(sim, 2 * GiB >> PAGE_SHIFT)
    assert g.stats.add_errors == {-ENOMEM: 1, -EEXIST: 1} and not g.blocks
    assert not drv.do_hot_add


def _late_onlining(after_partial: str) -> dict:
    """The quickstart's first regime (kmalloc, onlining 60 s late) on a seed whose host gets a partial answer."""
    return {
        "duration": "3m",
        "guest": {"boot": "2G"},
        "workload": {
            "name": "bursts",
            "task_size": "16M",
            "base": "1200M",
            "burst": "2G",
            "fault_rate": "512M",
            "on": {"dist": "exponential", "mean": 120},
            "off": {"dist": "exponential", "mean": 60},
        },
        "memmap": {"strategy": "kmalloc"},
        "driver": {"name": "hyperv", "after_partial": after_partial},
        "host": {"controller": "hyperv-buffer"},
        "onlining": {"agent": "udev", "delay": 60},
    }


def test_after_a_partial_answer_the_host_sends_no_more_hot_adds():
    """struct dm_hot_add_response (drivers/hv/hv_balloon.c, 4.19 to 6.19-rc5): "If page_count is less than the
    requested page count, then the host should assume all further hot add requests will fail"; QEMU's
    hv-balloon host does so (hv_balloon_handle_hot_add_response(): "don't attempt any further hot adds"). A
    request of several chunks whose second add_memory() fails -ENOMEM (the kmalloc'd memmap of a guest short of
    memory) is answered for the first chunk only: the host stops there. after_partial="continue" keeps asking."""
    stop, go_on = (simulate(_late_onlining(a), 2) for a in ("stop", "continue"))
    partial = stop.events[stop.events["kind"] == "hotadd_partial"]
    assert len(partial) == 1
    t = float(partial["t"].iloc[0])
    requests = stop.events[stop.events["kind"] == "hotadd_request"]
    assert not (requests["t"] > t).any() and len(requests)
    assert stop.metrics["hotadd_enomem"] == 1
    more = go_on.events[(go_on.events["kind"] == "hotadd_request") & (go_on.events["t"] > t)]
    assert len(more) > 0 and go_on.metrics["hotadd_enomem"] > 1
