"""The Xen balloon (drivers/xen/balloon.c): when it hot-adds more address space."""

from __future__ import annotations

from balloonsim.sim.simulation import simulate
from balloonsim.units import GiB, MiB


def _run(steps, onlining: str = "offline", kernel: str = "6.12") -> dict:
    return simulate(
        {
            "duration": "5m",
            "guest": {"boot": "2G", "kernel": kernel},
            "driver": {"name": "xen"},
            "workload": {"name": "idle"},
            "onlining": {"agent": onlining},
            "host": {"controller": "schedule", "steps": [[t, f"{size >> 20}M"] for t, size in steps]},
        },
        1,
    ).metrics


def test_credit_adds_more_while_earlier_sections_are_offline():
    """reserve_additional_memory(): credit = target_pages - total_pages, total_pages counting every hot-added
    section whether onlined or not; BP_WAIT only when that is <= 0. A target raised again while the first
    section is still offline hot-adds what is missing (round_up(credit, PAGES_PER_SECTION))."""
    m = _run([(10, 2 * GiB + 100 * MiB), (60, 2 * GiB + 300 * MiB)])
    assert m["xen_hotplug_segments"] == 2
    assert m["blocks_added_end"] == 3  # 128 MiB, then round_up(300 - 128 = 172 MiB) = 256 MiB
    assert m["blocks_online_end"] == 0


def test_no_more_address_space_while_what_was_added_covers_the_target():
    m = _run([(10, 2 * GiB + 100 * MiB), (60, 2 * GiB + 120 * MiB)])
    assert m["xen_hotplug_segments"] == 1 and m["blocks_added_end"] == 1


def test_the_e820_holes_are_not_a_credit():
    """watch_target() (drivers/xen/xen-balloon.c): an HVM/PVH guest subtracts target_diff = static_max -
    target_pages (its RAM pages at boot, get_num_physpages()) from every target, so a target equal to the
    domain's memory asks for nothing although page 0 and 640 KiB-1 MiB are not RAM (97 pages fewer present)."""
    m = _run([(10, 2 * GiB)])
    assert m["xen_hotplug_segments"] == 0 and m["blocks_added_end"] == 0
    assert m["xen_populate_batches"] == 0 and m["xen_decrease_pages"] == 0


def _events(steps, onlining: str, kernel: str, boot: str = "2G", duration: str = "2m"):
    result = simulate(
        {
            "duration": duration,
            "guest": {"boot": boot, "kernel": kernel, "max_addr": "256G"},
            "driver": {"name": "xen"},
            "workload": {"name": "idle"},
            "onlining": {"agent": onlining},
            "host": {"controller": "schedule", "steps": [[t, f"{size >> 20}M"] for t, size in steps]},
        },
        1,
    )
    return result.metrics, result.events


def _first(events, kind: str) -> float:
    return float(events[events["kind"] == kind]["t"].min())


def test_the_kthread_populates_an_onlined_block_at_its_next_round():
    """balloon_thread() (5.15+; read in Debian's 6.12.118 and 7.3.4 sources) sleeps in BP_WAIT with a 1 s
    timeout, woken early only by balloon_thread_cond(): the credit differs from what it was. MEM_ONLINE's
    wake_up() (xen_memory_notifier()) changes no credit, so the pages that onlining put on the balloon list are
    populated at the thread's next round: a whole second after the hot-add, not at the onlining."""
    m, ev = _events([(10, 3 * GiB)], "udev", "6.12")
    added, onlined, populated = _first(ev, "add_memory"), _first(ev, "online"), _first(ev, "populate")
    assert added == 10.0 and 10.0 < onlined < 11.0  # udev's median delay 0.5 s
    assert populated == 11.0
    # auto-onlining puts the pages on the list inside add_memory_resource(): still the next round, 1 s on
    m, ev = _events([(10, 3 * GiB)], "auto", "6.12")
    assert _first(ev, "online") == 10.0 and _first(ev, "populate") == 11.0
    assert m["xen_current_pages_end"] > (3 * GiB >> 12) - 512


def test_the_workqueue_populates_at_the_onlining():
    """4.x: xen_memory_notifier() does schedule_delayed_work(&balloon_worker, 0) on MEM_ONLINE, so
    balloon_process() runs at once and populates the onlined block's pages."""
    _, ev = _events([(10, 3 * GiB)], "udev", "4.19")
    assert _first(ev, "populate") == _first(ev, "online") > 10.0


def test_a_hot_add_of_sections_fails_on_larger_blocks_and_the_kthread_tries_again_hourly():
    """reserve_additional_memory() rounds the credit up to PAGES_PER_SECTION (128 MiB) and nothing in
    drivers/xen or arch/x86/xen sets the memory block size (6.12.118, 7.3.4), so on a guest whose
    probe_memory_block_size() chose 1 GiB (64 GiB of RAM ending at 65 GiB, above the PCI hole)
    check_hotplug_memory_range() refuses the range: -EINVAL, "Cannot add additional memory", BP_ECANCELED. The
    kthread then sleeps for 3600 s unless the credit changes, and tries again; the 4.x workqueue waits for a
    target write."""
    steps = [(10, 64 * GiB + 100 * MiB)]
    m, ev = _events(steps, "udev", "6.12", boot="64G", duration="2h")
    assert list(ev[ev["kind"] == "add_memory"]["t"]) == [10.0, 3610.0]
    assert m["hotadd_einval"] == 2 and m["xen_cancelled"] == 2 and m["blocks_added_end"] == 0
    m, _ = _events(steps, "udev", "4.19", boot="64G", duration="2h")
    assert m["hotadd_einval"] == 1 and m["xen_cancelled"] == 1


def test_ballooned_pages_pin_their_block():
    """decrease_reservation() (drivers/xen/balloon.c, 6.12.118 and 7.3.4 as read) keeps each page it takes with
    alloc_page(GFP_BALLOON) and balloon_append() marks it __SetPageOffline(); xen_memory_notifier() acts on
    MEM_ONLINE only, so nothing drops the reference on MEM_GOING_OFFLINE. offline_pages() -> scan_movable_pages()
    returns -EBUSY on "PageOffline(page) && page_count(page)" ("unmovable page", mm/memory_hotplug.c): a
    hot-added block holding a ballooned page cannot be offlined until increase_reservation() ->
    balloon_retrieve() gives the page back."""
    from balloonsim.kernel.errno import EBUSY
    from balloonsim.scenario import load_scenario
    from balloonsim.sim.simulation import Sim

    sc = {
        "duration": "10m",
        "guest": {"boot": "2G", "kernel": "6.12", "max_addr": "64G"},
        "driver": {"name": "xen"},
        "workload": {"name": "idle"},
        "onlining": {"agent": "auto"},
        # 1 GiB hot-added and populated, 512 MiB ballooned out of it again, then given back
        "host": {"controller": "schedule", "steps": [[10, "3G"], [120, "2560M"], [240, "3G"]]},
    }
    sim = Sim(load_scenario(sc), 1)
    g, env = sim.guest, sim.env
    seen: dict[float, set[int]] = {}
    offline: list[int] = []

    def at(t: float):
        yield env.timeout(t)
        seen[t] = {b.id for b in g.blocks.values() if not g.removable(b)}
        if t == 230:
            offline.extend(g.offline_memory_block(bid) for bid in seen[t] - seen[110])

    for t in (110.0, 230.0, 400.0):
        env.process(at(t))
    sim.run()
    assert sim.driver.stats["xen_decrease_pages"] == 512 * MiB >> 12
    assert len(g.blocks) == 8 and not any(b.withheld for b in g.blocks.values())  # populated: no fake-offline page
    assert seen[230] > seen[110]  # blocks the balloon took pages from
    assert offline and all(ret == -EBUSY for ret in offline)
    assert seen[400] == seen[110]  # the pages came back: removable again


def test_decrease_reservation_takes_up_to_si_mem_available_reclaiming_page_cache():
    """balloon_thread(): n_pages = min(-credit, si_mem_available()) (drivers/xen/balloon.c, 6.12.118 l.546, 7.3.4
    l.550), page cache included, and decrease_reservation()'s GFP_BALLOON allocations (GFP_HIGHUSER|__GFP_NORETRY)
    reclaim it: with 100 pages free above the low watermarks and 1 GiB of page cache, a 512-page round is whole."""
    from balloonsim.kernel.page_alloc import Gfp
    from balloonsim.scenario import load_scenario
    from balloonsim.sim.world import Sim

    sc = {
        "duration": "5m",
        "guest": {"boot": "2G", "page_cache": "1G"},
        "driver": {"name": "xen"},
        "workload": {"name": "idle"},
        "onlining": {"agent": "offline"},
        "host": {"controller": "schedule", "steps": [[3000, "2G"]]},
    }
    sim = Sim(load_scenario(sc), 1)
    drv, a = sim.driver, sim.guest.alloc
    zl = a.zonelist(0, kernel_only=False)
    above_low = sum(max(0, z.free - z.wmark_low) for z in zl)
    assert a.alloc(0, above_low - 100, Gfp.USER) == above_low - 100
    cache, current = a.total("pagecache"), drv.current_pages
    assert drv.decrease_reservation(4096) == "BP_DONE"
    assert current - drv.current_pages == 512  # frame_list's worth
    assert a.total("pagecache") < cache


def _short_of_memory(kernel: str, available: int):
    """A Xen guest of `kernel` with `available` pages of MemAvailable left (no page cache, no swap: nothing to
    reclaim), and its driver."""
    from balloonsim.kernel.meminfo import mem_available
    from balloonsim.kernel.page_alloc import Gfp
    from balloonsim.scenario import load_scenario
    from balloonsim.sim.world import Sim

    sc = {
        "duration": "5m",
        "guest": {"boot": "2G", "kernel": kernel},
        "driver": {"name": "xen"},
        "workload": {"name": "idle"},
        "onlining": {"agent": "offline"},
        "host": {"controller": "schedule", "steps": [[3000, "2G"]]},
    }
    sim = Sim(load_scenario(sc), 1)
    a = sim.guest.alloc
    while (take := min(mem_available(a) - available, 65536)) > 0:
        assert a.alloc(0, take, Gfp.USER) == take
    assert mem_available(a) == available
    return sim.driver


def test_before_xsa_300_a_balloon_round_is_neither_capped_nor_told_to_wait():
    """XSA-300, "xen: let alloc_xenballooned_pages() fail if not enough memory free" (a1078e821b60, 5.3; the stable
    mail "[PATCH 5.1 228/371]" quotes its diff): balloon_process() went from decrease_reservation(-credit,
    GFP_BALLOON) to n_pages = min(-credit, si_mem_available()), BP_EAGAIN when so capped below
    totalreserve_pages, and max_retry_count from RETRY_UNLIMITED to 4. Profile 4.19 (mainline) has neither half:
    with 3,000 pages of MemAvailable (below totalreserve_pages) its rounds of a frame_list are BP_DONE, and the
    loop goes on at once until an allocation fails; 5.12's are BP_EAGAIN, each followed by update_schedule()'s
    back-off."""
    from balloonsim.kernel.profiles import get_profile

    old, new = get_profile("4.19"), get_profile("5.12")
    assert (old.xen_max_retry, old.xen_balloon_capped) == (None, False)
    assert (new.xen_max_retry, new.xen_balloon_capped) == (4, True)
    for kernel, state in (("4.19", "BP_DONE"), ("5.12", "BP_EAGAIN")):
        drv = _short_of_memory(kernel, 3000)
        assert 3000 < drv.guest.alloc.totalreserve
        current = drv.current_pages
        assert drv.decrease_reservation(4096) == state
        assert current - drv.current_pages == 512  # a frame_list either way


def test_a_batch_comes_back_first_allocated_first():
    """decrease_reservation() (6.12.118 drivers/xen/balloon.c) list_add()s each page it allocates to a local list
    and then balloon_append()s them from that list's head, the last allocated, each to the ballooned list's head;
    increase_reservation() takes list_first_entry(): the newest batch's first allocated page comes back first."""
    from balloonsim.kernel.page_alloc import Gfp, Transaction

    drv = _short_of_memory("6.12", 100_000)
    a = drv.guest.alloc
    first, second = Transaction(), Transaction()
    assert a.alloc(0, 100, Gfp.BALLOON, first) == 100 and a.alloc(0, 100, Gfp.BALLOON, second) == 100
    entry = ["anon", 200, [*first.takes, *second.takes]]  # one batch of two pieces, in allocation order
    drv._unballoon_anon(entry, 150)
    assert entry[1] == 50 and entry[2] == second.takes and second.takes[0].pages == 50


def test_populate_memmap_first_onlines_the_share_it_populated_when_the_memmap_goes_elsewhere():
    """The ballooned list holds only pages without a frame: xen_online_page() -> balloon_append() for every page
    of a hot-added segment, none of which is populated before its online (6.12.118 drivers/xen/balloon.c
    l.340-353), and increase_reservation() populates what the list holds (l.395-421). The what-if
    populate_memmap_first (never merged) populates each block's memmap share before add_memory(); with kmalloc
    the memmap is not there, so those pages are ordinary memory. The model put them on the list too, and the
    host populated them a second time: the guest stopped 64 MiB short of its target with 16,384 pages still
    ballooned."""
    from balloonsim.scenario import load_scenario
    from balloonsim.sim.world import Sim

    sc = {
        "duration": "15m",
        "guest": {"boot": "2G"},
        "driver": {"name": "xen", "populate_memmap_first": True},
        "memmap": {"strategy": "kmalloc"},
        "workload": {"name": "ramp", "start_size": "512M", "end_size": "4G", "ramp_time": 600},
        "onlining": {"agent": "udev", "delay": 1},
        "host": {"controller": "schedule", "steps": [[30, "3G"], [300, "5G"], [600, "6G"]]},
    }
    sim = Sim(load_scenario(sc), 1)
    sim.run()
    backed = sum(b.backed.total for b in sim.guest.blocks.values())
    assert sim.host.populated == backed  # every frame the host gave is one page of the guest, once
    assert sim.driver.balloon_pages == 0
    assert sim.driver.hotplugged_pages == 0
    assert sim.driver.current_pages == sim.driver.target_pages


def test_without_memory_hotplug_the_target_is_cut_to_what_is_populated_until_the_next_target():
    """Without CONFIG_XEN_BALLOON_MEMORY_HOTPLUG (the model's memory_hotplug=False), reserve_additional_memory()
    is a stub that sets target_pages = current_pages + target_unpopulated and returns BP_ECANCELED (6.12.118
    drivers/xen/balloon.c l.367-373): the credit is 0 from then on, so the kthread's hourly rounds (3600 s after
    BP_ECANCELED) find nothing to do, and only the host's next target write brings a credit back (and one more
    cancelled round). The model kept the credit and cancelled again every hour."""
    m = simulate(
        {
            "duration": "2h",
            "guest": {"boot": "2G"},
            "driver": {"name": "xen", "memory_hotplug": False},
            "workload": {"name": "idle"},
            "onlining": {"agent": "udev"},
            "host": {"controller": "schedule", "steps": [[10, "3G"], [5000, "3500M"]]},
        },
        1,
    ).metrics
    assert m["xen_cancelled"] == 2  # at 10 s and at 5000 s; none at 3610 s or 7210 s
    assert m["blocks_added_end"] == 0 and m["hotadd_requests"] == 0


def test_increase_reservation_asks_the_host_for_no_more_than_the_balloon_holds():
    """increase_reservation() fills frame_list from the ballooned list and stops where the list does
    (6.12.118 drivers/xen/balloon.c l.392-404): XENMEM_populate_physmap asks for at most the pages listed. With
    100 pages listed and a host that has 200 left, the 512-page batch is no short populate."""
    from balloonsim.scenario import load_scenario
    from balloonsim.sim.world import Sim

    sc = {
        "duration": "1m",
        "guest": {"boot": "2G"},
        "driver": {"name": "xen"},
        "workload": {"name": "idle"},
        "onlining": {"agent": "offline"},
        "host": {"controller": "schedule", "steps": [[3000, "2G"]]},
    }
    sim = Sim(load_scenario(sc), 1)
    drv = sim.driver
    assert drv.decrease_reservation(100) == "BP_DONE"  # 100 pages on the ballooned list, back to the host
    sim.host.free_pages = 200
    assert drv.increase_reservation(512) == "BP_DONE"
    assert drv.balloon_pages == 0 and sim.host.free_pages == 100
    assert drv.stats["xen_populate_short"] == 0
