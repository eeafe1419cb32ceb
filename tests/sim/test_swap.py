"""Swap as the kernel does it: what reclaim takes (get_scan_count()), when the OOM killer fires
(should_reclaim_retry()), where swapped pages go (conservation), what tasks feel (refaults, work done), oom_badness()
and the restart policies of OOM-killed tasks."""

from __future__ import annotations

import random

import pytest
from sim_support import holding_guest

from balloonsim.errors import ConfigError
from balloonsim.kernel import Guest, GuestConfig
from balloonsim.kernel.page_alloc import MAX_RECLAIM_RETRIES, Gfp
from balloonsim.kernel.vmscan import LruCost, ScanBalance, get_scan_count, scan_fractions
from balloonsim.scenario import load_scenario
from balloonsim.sim import oom_kill
from balloonsim.sim.memory import Task, swapin_reads
from balloonsim.sim.oom_kill import select_bad_process
from balloonsim.sim.simulation import simulate
from balloonsim.sim.world import Sim
from balloonsim.units import GiB, MiB

# a 2 GiB guest that holds on to its memory (no balloon, no hot-add) under a constant demand
TIGHT = holding_guest("2G")


def _scan(cost: LruCost | None = None, anon_refaulted: bool = False, **kw):
    args = dict(anon=100_000, file=100, free=1000, high_wmark=5000, swap_free=10**6, swappiness=60)
    args.update(kw)
    return get_scan_count(cost=cost or LruCost(), anon_refaulted=anon_refaulted, **args)


# -- get_scan_count() (mm/vmscan.c, 5.9-6.18) -----------------------------------------------------------------------
def test_no_free_swap_scans_file_only():
    """ "If we have no swap space, do not bother scanning anon pages.\""""
    assert _scan(swap_free=0) == (ScanBalance.FILE, 0.0)


def test_plenty_of_file_is_trimmed_first():
    """cache_trim_mode: inactive file >> DEF_PRIORITY (4096 pages) that does not refault goes first."""
    assert _scan(file=4096)[0] is ScanBalance.FILE


def test_tiny_file_scans_anon_even_at_swappiness_0():
    """file + free <= the high watermarks: SCAN_ANON ("Global reclaim will swap to prevent OOM even with no
    swappiness"), unless anon pages are refaulting (DEACTIVATE_ANON)."""
    assert _scan(swappiness=0) == (ScanBalance.ANON, 1.0)
    assert _scan(anon_refaulted=True)[0] is ScanBalance.FRACT


def test_scan_fract_weighs_swappiness_against_relative_cost():
    """Equal (no) costs at swappiness 60: ap:fp = 60:140, each list scanned in proportion to its size too."""
    assert scan_fractions(60, LruCost()) == (60, 140)
    assert scan_fractions(200, LruCost())[1] == 0 and scan_fractions(0, LruCost())[0] == 0
    balance, share = _scan(file=3000, free=10_000, anon=3000)
    assert balance is ScanBalance.FRACT and share == pytest.approx(60 / 200)
    # anon that costs IO to reclaim (swap-outs, refaults) tips the balance towards file
    costly = LruCost(anon=10_000)
    assert _scan(file=3000, free=10_000, anon=3000, cost=costly)[1] < share


def test_swappiness_0_reclaims_no_anon_while_anon_refaults():
    """vm.swappiness = 0 with anon refaulting (DEACTIVATE_ANON: no SCAN_ANON for a tiny file list): SCAN_FRACT with
    `ap = swappiness * ...` = 0 scans no anon at any priority, and SCAN_EQUAL needs `swappiness` too
    (get_scan_count(), 6.12.118 and 7.3.4). Reclaim frees the page cache and nothing else; at 60 it swaps."""
    for swappiness, swapped in ((0, False), (60, True)):
        guest = Guest(GuestConfig(boot=[1 * GiB], swap=1 * GiB, swappiness=swappiness))
        a = guest.alloc
        a.alloc(0, a.total("free"), Gfp.USER, partial=True)
        a.rmap = lambda zone, pages: None
        zl = a.zonelist(0, kernel_only=False)
        a.note_refault(1)
        got = a.reclaim(zl, 1000)
        assert (a.swap.used > 0) is swapped
        assert got == (1000 if swapped else 0)


def test_lru_cost_decays_below_a_quarter_of_the_lru():
    cost = LruCost()
    cost.note(False, 1000, 0, lrusize=40_000)  # 32,000 > 10,000: halved until under
    assert cost.anon + cost.file <= 10_000 and cost.anon > 0


# -- the slow path's OOM decision (mm/page_alloc.c should_reclaim_retry(), 4.7-6.18) ---------------------------------
def _full_guest(swap: int) -> Guest:
    guest = Guest(GuestConfig(boot=[1 * GiB], swap=swap))
    a = guest.alloc
    a.alloc(0, a.total("free"), Gfp.USER, partial=True)  # anon up to the min watermarks
    return guest


def test_reclaimable_counts_anon_only_while_swap_has_room():
    """zone_reclaimable_pages(): file, plus anon `if (get_nr_swap_pages() > 0)`."""
    for swap, counts_anon in ((0, False), (256 * MiB, True)):
        guest = _full_guest(swap)
        a = guest.alloc
        zl = a.zonelist(0, kernel_only=False)
        assert sum(a.zone_reclaimable_pages(z) for z in zl) == (a.total("anon") if counts_anon else 0)
        assert a.should_reclaim_retry(zl, 1) is counts_anon
        assert not a.should_reclaim_retry(zl, MAX_RECLAIM_RETRIES + 1)


def test_reclaim_swaps_anon_out_only_with_a_free_slot():
    guest = _full_guest(64 * MiB)
    a = guest.alloc
    zl = a.zonelist(0, kernel_only=False)
    slots = a.swap.slots
    got = a.reclaim(zl, slots + 1000)
    assert got == slots and a.swap.used == slots and a.swap.free == 0
    assert a.reclaim(zl, 10) == 0  # swap full, no page cache: no progress
    assert a.stats.pswpout_direct == slots


# -- whole runs ------------------------------------------------------------------------------------------------------
def _run_with_monitor(scenario, seed=1, every=5.0):
    """Run a scenario, checking the swap and RSS invariants every `every` seconds; returns the Sim."""
    sim = Sim(load_scenario(scenario), seed)
    env, mem, alloc = sim.env, sim.memory, sim.guest.alloc
    broken: list[str] = []

    def monitor():
        while True:
            swap = mem.swap
            if swap.pswpout != swap.pswpin + swap.used + swap.freed:
                broken.append(f"t={env.now}: out {swap.pswpout} != in {swap.pswpin} + used {swap.used} + freed")
            if sum(t.swapped for t in mem.tasks.values()) != swap.used:
                broken.append(f"t={env.now}: swap entries of live tasks != slots used")
            if sum(t.rss for t in mem.tasks.values()) != alloc.total("anon"):
                broken.append(f"t={env.now}: task RSS != anon pages in the zones")
            if any(z.anon != sum(t.zones.get(z, 0) for t in mem.tasks.values()) for z in alloc.iter_zones()):
                broken.append(f"t={env.now}: a zone's anon pages != what the tasks map there")
            yield env.timeout(every)

    env.process(monitor())
    sim.run()
    assert not broken, broken[:3]
    return sim


def test_swap_conservation_out_equals_in_plus_on_swap_plus_freed_by_exit():
    """pswpout = pswpin + slots in use + slots freed when their task exited, at every instant; every slot in use
    is a live task's swap entry and every resident anon page a task's."""
    sim = _run_with_monitor(
        {
            **TIGHT,
            "guest": {"boot": "2G", "swap": "1G"},
            "workload": {"name": "tasks", "arrival_rate": 0.2, "lifetime": {"dist": "exponential", "mean": 60}},
        }
    )
    swap = sim.memory.swap
    assert swap.pswpout > 10_000 and swap.pswpin > 10_000 and swap.freed > 0  # all three flows happened
    assert swap.pswpout == swap.pswpin + swap.used + swap.freed


def test_no_oom_kill_while_swap_has_room_and_reclaim_progresses():
    """3 GiB of demand in 2 GiB of RAM and 2 GiB of swap: the guest thrashes instead of killing."""
    m = simulate({**TIGHT, "guest": {"boot": "2G", "swap": "2G"}, "workload": {"name": "constant", "size": "3G"}}, 1)
    assert m.metrics["oom_kills"] == 0
    assert m.metrics["swap_out_pages"] > 100_000 and m.metrics["psi_some_fraction"] > 0.5


def test_the_oom_killer_fires_only_once_swap_is_full():
    sim = Sim(
        load_scenario(
            {**TIGHT, "guest": {"boot": "2G", "swap": "256M"}, "workload": {"name": "constant", "size": "3G"}}
        ),
        1,
    )
    mem = sim.memory
    free_at_kill: list[int] = []
    original = mem.out_of_memory

    def recorded():
        free_at_kill.append(mem.swap.free)
        return original()

    mem.out_of_memory = recorded  # type: ignore[method-assign]
    sim.run()
    assert free_at_kill and set(free_at_kill) == {0}


def test_without_swap_the_same_demand_kills():
    m = simulate({**TIGHT, "workload": {"name": "constant", "size": "3G"}}, 1).metrics
    assert m["oom_kills"] > 0 and m["swap_out_pages"] == 0


def test_swapped_out_tasks_run_slower():
    """The same demand with and without enough RAM: the tasks that refault from swap do less work, and the
    stall shows as PSI."""
    roomy = simulate({**TIGHT, "guest": {"boot": "4G", "swap": "2G"}, "workload": {"name": "constant", "size": "3G"}})
    tight = simulate({**TIGHT, "guest": {"boot": "2G", "swap": "2G"}, "workload": {"name": "constant", "size": "3G"}})
    # with room, reclaim still swaps a little while the tasks fault in (SCAN_FRACT takes anon too), then nothing
    assert roomy.metrics["swap_in_pages"] < 0.01 * tight.metrics["swap_in_pages"]
    assert roomy.metrics["psi_some_fraction"] < 0.01
    assert tight.metrics["work_done_s"] < 0.1 * roomy.metrics["work_done_s"]
    assert tight.timeseries.psi_some_avg10.max() > 0.9


def test_a_slower_disk_thrashes_harder():
    scenario = {**TIGHT, "workload": {"name": "constant", "size": "3G"}}
    fast = simulate({**scenario, "guest": {"boot": "2G", "swap": "2G"}}).metrics
    slow = simulate({**scenario, "guest": {"boot": "2G", "swap": "2G", "swap_bandwidth": "16M"}}).metrics
    assert slow["swap_in_pages"] < fast["swap_in_pages"] and slow["work_done_s"] < fast["work_done_s"]


def test_oom_badness_counts_swap_entries_page_tables_and_scales_adj_by_ram_plus_swap():
    """oom_badness(): rss + MM_SWAPENTS + mm_pgtables_bytes / PAGE_SIZE + oom_score_adj * (totalpages / 1000)."""
    t = Task(1, "t", want=0, started=0.0, rss=512 * 512, swapped=512 * 512, oom_score_adj=100)
    ptes = 2 * 512  # one PTE page per 512 mapped pages, resident or swapped
    assert t.pgtables == ptes + 2  # and a PMD page per 512 PTE pages
    assert Task(3, "small", 0, 0.0, rss=513).pgtables == 2 + 1  # each a whole page, however little it holds
    assert t.badness(2_000_000) == 2 * 512 * 512 + ptes + 2 + 100 * 2000
    assert Task(2, "udevd", 0, 0.0, rss=10, oom_score_adj=-1000).badness(10**6) is None


def test_the_oom_killer_picks_swapped_memory_too_and_ties_go_to_the_youngest():
    sim = Sim(load_scenario({**TIGHT, "workload": {"name": "idle"}}), 1)
    mem = sim.memory
    a = mem.spawn("resident", 100)
    b = mem.spawn("swapped", 100)
    c = mem.spawn("twin", 100)
    a.rss, b.swapped, c.rss = 1000, 1500, 1000
    for t in (a, b, c):
        mem.note_mapped(t)
    assert mem.out_of_memory() is b
    assert mem.out_of_memory() is c  # a and c tie: the later one in the task list


def test_a_task_killed_while_stalled_keeps_its_stall_in_psi():
    """A task that waited on memory this tick and then ended (the OOM killer's victim is often the task that was
    faulting) was in a memstall until then: psi_memstall_leave() ran, the time counts in /proc/pressure/memory.
    Its stall enters the tick's SOME as if it were still there; it does no work."""
    for killed in (False, True):
        sim = Sim(load_scenario({**TIGHT, "workload": {"name": "idle"}}), 1)
        mem = sim.memory
        a = mem.spawn("faulting", 100)
        mem.spawn("other", 100)
        a.wait_s = 0.5
        if killed:
            mem.exit(a)
        mem.account(0.0, 1.0, 0.0)
        mem.psi.advance(1.0)
        assert mem.psi.total[0] == pytest.approx(0.5 / 2)  # one of two tasks on two CPUs, half the tick


@pytest.mark.parametrize("kernel", ["5.12", "6.12"])
def test_a_reclaiming_task_is_full_pressure_on_its_cpu_in_every_release(kernel):
    """A task in direct reclaim runs on its CPU in a memstall: that CPU is FULL, not productive. 4.20-5.12:
    psi_memstall_tick() samples a CPU whose current task is in a memstall as FULL at each scheduler tick; 5.13
    on: psi_group_change() sets PSI_MEM_FULL when cpu_curr(cpu)->in_memstall (7fae6c8171d2; 6.12.118
    kernel/sched/psi.c:867). One reclaimer and one working task on two CPUs: SOME and FULL are both half the
    tick, on 5.12 as on 6.12 (the model counted 5.12's reclaimer as productive: FULL 0)."""
    sim = Sim(load_scenario({**TIGHT, "guest": {"boot": "2G", "kernel": kernel}, "workload": {"name": "idle"}}), 1)
    mem = sim.memory
    a = mem.spawn("reclaiming", 100)
    mem.spawn("working", 100)
    a.blocked = "reclaim"
    mem.account(0.0, 1.0, 0.0)
    mem.psi.advance(1.0)
    assert mem.psi.total[0] == pytest.approx(0.5) and mem.psi.total[1] == pytest.approx(0.5)


def test_select_bad_process_picks_what_oom_badness_picks():
    """select_bad_process() (mm/oom_kill.c, 4.19-6.18: oom_evaluate_task() keeps a later task of equal points)
    chooses without calling oom_badness() per task (the hot path of OOM-heavy runs): over
    random tasks, page-table boundaries, swapped pages, unkillable and adjusted tasks, and rivals whose badness is
    within a page of another task's under a different oom_score_adj (where a page table counted wrong changes the
    victim), the OOM killer picks what `Task.badness` picks, kill after kill."""
    rng = random.Random(5)
    edges = [1, 511, 512, 513, 512 * 512 - 1, 512 * 512, 512 * 512 + 1]
    for _ in range(40):
        sim = Sim(load_scenario({**TIGHT, "workload": {"name": "idle"}}), 1)
        mem = sim.memory
        totalpages = sim.guest.alloc.total("managed") + mem.swap.slots
        for i in range(rng.randrange(1, 20)):
            t = mem.spawn(f"t{i}", 1, oom_score_adj=rng.choice([0, 0, 0, -1000, -500, 300, 1000]))
            t.rss = rng.choice([0, rng.randrange(600_000), rng.choice(edges)])
            t.swapped = rng.choice([0, 0, rng.randrange(600_000), rng.choice(edges)])
            mem.note_mapped(t)
            points = t.badness(totalpages)
            if points is None or not (t.rss or t.swapped):
                continue
            rival = mem.spawn(f"r{i}", 1, oom_score_adj=t.oom_score_adj + rng.choice([-7, 1, 3]))
            target = points + rng.choice([-1, 0, 1])
            for mapped in range(max(1, t.rss + t.swapped - 8 * 600), t.rss + t.swapped + 8 * 600):
                rival.rss = mapped
                if (rival.badness(totalpages) or 0) >= target:
                    break
            mem.note_mapped(rival)
        while True:
            expected = None
            best = 0
            for t in mem.tasks.values():  # select_bad_process() over oom_badness(), later tasks win ties
                points = t.badness(totalpages) if t.rss or t.swapped or t.oom_score_adj > 0 else None
                if points is not None and (expected is None or points >= best):
                    expected, best = t, points
            assert select_bad_process(list(mem.tasks.values()), totalpages) is expected  # finding the adjusted
            assert mem.out_of_memory() is expected  # and UserMemory's order of the tasks
            if expected is None:
                break


def test_a_task_of_positive_oom_score_adj_is_chosen_even_mapping_nothing():
    """oom_badness() (6.12.118 mm/oom_kill.c l.203-241) scores every task with an mm: a daemon restarted with
    oom_score_adj 500 that has not faulted a page yet still has 500 * totalpages / 1000 points, more than a
    16 MiB worker's, and is the victim (the model used to leave out every task that mapped nothing)."""
    sim = Sim(load_scenario({**TIGHT, "workload": {"name": "idle"}}), 1)
    mem = sim.memory
    worker = mem.spawn("worker", 4096)
    worker.rss = 4096
    mem.note_mapped(worker)
    daemon = mem.spawn("daemon", 16384, oom_score_adj=500)
    assert mem.out_of_memory() is daemon
    assert mem.out_of_memory() is worker


BURSTS = {"name": "bursts", "task_size": "16M", "base": "1200M", "burst": "2G", "fault_rate": "512M"}
KILLING = {
    # the quickstart's workers under late onlining, with a killable onlining daemon of raised oom_score_adj
    "adjusted": {
        "duration": "10m",
        "guest": {"boot": "2G"},
        "workload": BURSTS,
        "driver": {"name": "hyperv"},
        "host": {"controller": "hyperv-buffer"},
        "onlining": {"agent": "starving-agent", "oom_score_adj": 500},
    },
    # the same workers with swap: refaults change what the tasks map between kills
    "swapping": {**TIGHT, "guest": {"boot": "2G", "swap": "512M"}, "workload": BURSTS},
}


@pytest.mark.parametrize("rebuilt", [False, True], ids=["heap", "rebuilt-at-every-choice"])
@pytest.mark.parametrize("case", sorted(KILLING))
def test_the_oom_order_chooses_what_the_scan_chooses_kill_after_kill(case, rebuilt, monkeypatch):
    """UserMemory keeps its tasks in an OomOrder (a heap told of every change of a task's mapped pages) instead
    of scanning them at every kill. In runs that kill thousands of times, with refaults from swap between the
    kills, an adjusted daemon that is killed and restarted, and the heap rebuilt at every choice, every victim is
    the one select_bad_process()'s scan of all tasks picks."""
    if rebuilt:
        monkeypatch.setattr(oom_kill, "REBUILD_FACTOR", 0)
        monkeypatch.setattr(oom_kill, "REBUILD_SLACK", 0)
    sim = Sim(load_scenario(KILLING[case]), 3)
    mem = sim.memory
    chosen = mem.out_of_memory
    victims: list[Task] = []

    def checked():
        totalpages = sim.guest.alloc.total("managed") + mem.swap.slots
        expected = select_bad_process(list(mem.tasks.values()), totalpages)
        victim = chosen()
        assert victim is expected, f"kill {len(victims) + 1}"
        victims.append(victim)
        return victim

    mem.out_of_memory = checked  # type: ignore[method-assign]
    sim.run()
    assert len(victims) > 1000
    if case == "adjusted":
        assert 0 < sum(1 for v in victims if v is not None and v.oom_score_adj) < len(victims)
    else:
        assert mem.swap.pswpin > 0


def test_a_task_that_ends_leaves_the_oom_orders_changed_set():
    """Between kills the order only marks the tasks that changed; one that ends is unmarked, so a run that rarely
    kills does not keep every task it ever ran."""
    sim = Sim(load_scenario({**TIGHT, "workload": {"name": "idle"}}), 1)
    mem = sim.memory
    tasks = [mem.spawn(f"t{i}", 10) for i in range(5)]
    for t in tasks:
        mem.allocate(t, 10)
    for t in tasks[:3]:
        mem.exit(t)
    assert mem._oom.changed == set(tasks[3:])


def test_a_choice_inside_a_swap_in_leaves_the_oom_order_right(monkeypatch):
    """A swap-in allocates (rss grows: the task is marked changed), then gives back the swap entries (swapped
    shrinks): its mapped count ends where it began. A kill inside that allocation takes the mark at the passing
    count, so the swap-in marks the task again: with a choice forced inside every swap-in's allocation and the
    heap rebuilt at each, the order's choice after every swap-in is still the scan's."""
    monkeypatch.setattr(oom_kill, "REBUILD_FACTOR", 0)
    monkeypatch.setattr(oom_kill, "REBUILD_SLACK", 0)
    sim = Sim(load_scenario(KILLING["swapping"]), 3)
    mem = sim.memory
    allocate, swapped_in = mem.allocate, mem._refault
    checked = 0

    def allocate_then_choose(task, pages):
        got = allocate(task, pages)
        mem._oom.top()  # what a kill here would do to the order
        return got

    def refault(*args):
        nonlocal checked
        mem.allocate = allocate_then_choose  # type: ignore[method-assign]
        try:
            pages = swapped_in(*args)
        finally:
            mem.allocate = allocate  # type: ignore[method-assign]
        if pages:
            totalpages = sim.guest.alloc.total("managed") + mem.swap.slots
            assert mem._oom.top() is select_bad_process(list(mem.tasks.values()), totalpages)
            checked += 1
        return pages

    mem._refault = refault  # type: ignore[method-assign]
    sim.run()
    assert checked > 100


def test_swapin_reads_is_the_lists_sum_to_the_last_bit():
    """The bisection of a swap-in tick compares wanted(cost) with the device's capacity, so a last bit that moved
    could move a comparison and the shipped studies' bytes: on both sides of the numpy threshold, for tasks with
    nothing, little or everything still on swap, wanted(cost) equals the left-to-right sum as a float, not
    approximately, on every Python (sum() of floats is compensated from 3.12 on: neither path may use it)."""
    rng = random.Random(11)
    for n in (1, 2, 31, 32, 33, 250):
        terms = []
        for _ in range(n):
            swapped = rng.choice([0, 1, rng.randrange(1, 1 << 20), rng.randrange(1 << 30, 1 << 40)])
            k = rng.choice([0.0, rng.random() * 1e-6, rng.random(), rng.random() * 1e4])
            terms.append((swapped, k * rng.choice([1.0, 0.25, rng.random()]), k))
        wanted = swapin_reads(terms)
        for _ in range(300):
            cost = 10 ** rng.uniform(-9, 3)
            expected = 0.0  # added left to right, as sum() did on Python 3.11
            for s, ka, k in terms:
                expected += x if (x := ka / (1 + k * cost)) < s else s
            assert wanted(cost) == expected, (n, cost)


def _killing(restart: dict, seed=1):
    """A 3 GiB demand in a 2 GiB guest without swap: the OOM killer strikes again and again."""
    return simulate({**TIGHT, "workload": {"name": "constant", "size": "3G", **restart}}, seed).metrics


def test_restart_never_leaves_the_killed_task_dead():
    m = _killing({"restart": "never"})
    assert m["oom_kills"] >= 1 and m["task_restarts"] == 0
    assert m["work_done_s"] < _killing({"restart": "delay"})["work_done_s"] + 600  # at most one task-run more


def test_restart_delay_restarts_every_killed_task():
    m = _killing({"restart": "delay", "restart_delay": 5})
    assert m["task_restarts"] == m["oom_kills"] > 5 and not m["workload_failed"]


def test_systemd_start_limit_stops_the_unit():
    """Restart=on-failure with StartLimitBurst=3 in StartLimitIntervalSec=60: the fourth start within a minute is
    refused, the unit fails, its processes are killed and nothing runs any more."""
    m = _killing({"restart": "systemd", "restart_delay": 1, "start_limit_interval": 60, "start_limit_burst": 3})
    assert m["workload_failed"] and m["task_restarts"] <= 2
    assert m["work_done_s"] < 0.5 * _killing({"restart": "delay"})["work_done_s"]


def test_restart_accepts_the_older_boolean():
    sc = load_scenario({**TIGHT, "workload": {"name": "tasks", "restart": False}})
    assert sc.components().workload.params.restart == "never"


def test_a_kernel_without_psi_reports_none():
    """/proc/pressure exists from 4.20 on (eb414681d5a0): a 4.19 guest's PSI metrics are NaN, its swap counts."""
    m = simulate(
        {
            **TIGHT,
            "guest": {"boot": "2G", "swap": "2G", "kernel": "4.19"},
            "workload": {"name": "constant", "size": "3G"},
        }
    ).metrics
    assert m["psi_some_fraction"] != m["psi_some_fraction"] and m["swap_out_pages"] > 0


@pytest.mark.parametrize(
    "key, value",
    [
        ("guest.swappiness", 201),
        ("guest.swap_bandwidth", 0),
        ("guest.swap_latency", float("inf")),
        ("guest.swap", "-1G"),
        ("guest.vcpus", 0),
        ("workload.restart", "sometimes"),
        ("workload.start_limit_burst", 0),
        ("workload.touch_rate", 0),
    ],
)
def test_bad_swap_and_restart_settings_are_refused_naming_the_key(key, value):
    section, name = key.split(".")
    scenario = {**TIGHT, "workload": {"name": "constant"}}
    scenario[section] = {**scenario.get(section, {}), name: value}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_scenario(scenario)


def test_a_guest_with_gigabytes_free_neither_swaps_nor_stalls():
    """4 GiB and 2 GiB of swap, bursts of 64 MiB tasks that never leave less than ~1.9 GiB free: the faults fill
    ZONE_NORMAL to its low watermark and go on in DMA32 (get_page_from_freelist() at ALLOC_WMARK_LOW over the whole
    zonelist, 6.12.118 mm/page_alloc.c:3420), and wakeup_kswapd() would not wake kswapd anyway while DMA32 is above
    its high watermark (pgdat_balanced(), 6.12.118 mm/vmscan.c:6694, 7.3.4:6968). No reclaim, no swap, no stall."""
    sc = {
        "duration": "10m",
        "sample_interval": "10s",
        "guest": {"boot": "4G", "swap": "2G"},
        "workload": {
            "name": "bursts",
            "task_size": "64M",
            "base": "1G",
            "burst": "1G",
            "cache_rate": 0,
            "on": {"dist": "exponential", "mean": 60},
            "off": {"dist": "exponential", "mean": 30},
        },
    }
    r = simulate(sc, seed=3)
    assert int(r.timeseries.memfree_bytes.min()) > 1536 * MiB
    assert r.metrics["swap_out_pages"] == 0
    assert r.metrics["psi_some_fraction"] == 0
    assert r.metrics["pressure_to_usable_s"] != r.metrics["pressure_to_usable_s"]  # nan: pressure never began
