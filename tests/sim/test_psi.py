"""PSI memory as kernel/sched/psi.c defines it: SOME and FULL on small hand-computed cases, and the running
averages' fixed-point decay (calc_load() with EXP_10s = 1677 every PSI_FREQ = 2*HZ+1 jiffies)."""

from __future__ import annotations

import math
import random

import pytest

from balloonsim.sim.psi import FIXED_1, PSI_FREQ_NS, EXP_10s, PsiGroup, calc_load_n, poisson_binomial, stall_rates

PERIOD = PSI_FREQ_NS / 1e9  # 2.004 s at HZ=250


def test_one_cpu_one_task_waiting_half_the_time_is_half_some_and_half_full():
    # the task is the only non-idle one: while it waits nobody is productive
    assert stall_rates([(0.0, 0.5)], 0.0, 1) == pytest.approx((0.5, 0.5))


def test_one_cpu_two_independent_tasks_each_waiting_half_the_time():
    # SOME: P(at least one waits) = 1 - 0.5 * 0.5; FULL: P(both wait) = 0.25
    assert stall_rates([(0.0, 0.5), (0.0, 0.5)], 0.0, 1) == pytest.approx((0.75, 0.25))


def test_psi_header_example_one_of_four_tasks_delayed_on_four_cpus():
    """psi.c: "For the 1 out of 4 memory-delayed tasks, this yields: threads = min(4, 4), SOME = min(1 / 4, 1) =
    25%, FULL = (4 - min(3, 4)) / 4 = 25%"."""
    tasks = [(0.0, 1.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0)]
    assert stall_rates(tasks, 0.0, 4) == pytest.approx((0.25, 0.25))


def test_more_delayed_tasks_than_cpus_saturate_some():
    """threads = min(nr_nonidle, nr_cpus): 3 of 8 tasks delayed on 2 CPUs is SOME = min(3/2, 1) = 100%, and FULL =
    (2 - min(5, 2)) / 2 = 0: five productive tasks still fill both CPUs."""
    tasks = [(0.0, 1.0)] * 3 + [(0.0, 0.0)] * 5
    assert stall_rates(tasks, 0.0, 2) == pytest.approx((1.0, 0.0))


def test_kswapd_reclaiming_alone_is_full_in_every_release_with_psi():
    """kswapd is in a memstall while balance_pgdat() runs, and the current task of its CPU: that CPU is FULL.
    4.20-5.12 by psi_memstall_tick() (scheduler_tick() samples a CPU whose current task is in a memstall as FULL,
    "a memstall is FULL ... also when the CPU is actively reclaiming"), 5.13 on by psi_group_change()'s
    `cpu_curr(cpu)->in_memstall` test (7fae6c8171d2; 6.12.118 kernel/sched/psi.c:867). The 5.17 test
    (tasks[NR_RUNNING] == tasks[NR_MEMSTALL_RUNNING], cb0e52b77487) adds nothing system-wide."""
    assert stall_rates([], 0.1, 2) == pytest.approx((0.1, 0.1))


def test_a_direct_reclaimer_and_a_swap_in_waiter_are_both_unproductive():
    assert stall_rates([(0.5, 0.0)], 0.0, 1) == pytest.approx((0.5, 0.5))
    assert stall_rates([(0.0, 0.5)], 0.0, 1) == pytest.approx((0.5, 0.5))
    # a reclaimer on one CPU while another task works on the other: SOME, not FULL (one productive thread)
    assert stall_rates([(1.0, 0.0), (0.0, 0.0)], 0.0, 2) == pytest.approx((0.5, 0.5))


def test_nothing_stalled_is_no_pressure():
    assert stall_rates([(0.0, 0.0)] * 3, 0.0, 2) == (0.0, 0.0)
    assert stall_rates([], 0.0, 2) == (0.0, 0.0)


def _kernel_avg10(pcts: list[int]) -> list[int]:
    """The recurrence written out: avg = (avg * e + pct * FIXED_1 * (FIXED_1 - e) [+ FIXED_1 - 1 rising]) / FIXED_1."""
    out, avg = [], 0
    for pct in pcts:
        active = pct * FIXED_1
        new = avg * EXP_10s + active * (FIXED_1 - EXP_10s)
        if active >= avg:
            new += FIXED_1 - 1
        avg = new // FIXED_1
        out.append(avg)
    return out


def test_avg10_on_a_step_follows_the_kernel_recurrence():
    """Full SOME for 5 periods, then none: avg10 at each 2 s update is the kernel's fixed-point recurrence, and
    approaches 1 - e^(-t/10) while rising."""
    psi = PsiGroup()
    psi.set_rates(0.0, 1.0, 0.0)
    seen = []
    for n in range(1, 6):
        psi.advance(n * PERIOD + 1e-6)
        seen.append(psi.avg[0][0])
    psi.set_rates(5 * PERIOD + 1e-6, 0.0, 0.0)
    for n in range(6, 16):
        psi.advance(n * PERIOD + 1e-6)
        seen.append(psi.avg[0][0])
    expected = _kernel_avg10([100] * 5 + [0] * 10)
    assert seen == expected
    assert expected[0] == 37100  # 18.11 %: the first 2 s sample of a full stall
    assert psi.avg10() == pytest.approx(expected[-1] / (100 * FIXED_1))
    assert expected[4] / (100 * FIXED_1) == pytest.approx(1 - math.exp(-1.0), abs=0.005)  # 10 s in: 63 %
    assert psi.peak10() == pytest.approx(expected[4] / (100 * FIXED_1))


def test_missed_periods_decay_like_calc_load_n():
    """calc_avgs() fills in zeroes for missed periods with calc_load_n(avg, EXP_10s, 0, n)."""
    avg = 150_000
    assert calc_load_n(avg, EXP_10s, 0, 1) == avg * EXP_10s // FIXED_1
    assert calc_load_n(avg, EXP_10s, 0, 5) == pytest.approx(avg * (EXP_10s / FIXED_1) ** 5, rel=0.01)


def test_one_long_advance_equals_many_short_ones():
    a, b = PsiGroup(), PsiGroup()
    for g in (a, b):
        g.set_rates(0.0, 0.4, 0.1)
        g.set_rates(7.3, 0.0, 0.0)
        g.set_rates(20.0, 1.0, 1.0)
        g.set_rates(21.0, 0.0, 0.0)
    a.advance(500.0)
    t = 21.0
    while t < 500.0:
        t = min(500.0, t + 0.7)
        b.advance(t)
    assert a.avg == b.avg and a.total == pytest.approx(b.total)
    assert a.total[0] == pytest.approx(0.4 * 7.3 + 1.0)
    assert a.total[1] == pytest.approx(0.1 * 7.3 + 1.0)


def test_an_idle_stretch_jumps_the_clock_and_keeps_the_period_grid():
    psi = PsiGroup()
    psi.advance(10_000.0)
    assert psi.avg == [[0, 0, 0], [0, 0, 0]]
    psi.set_rates(10_000.0, 1.0, 0.0)
    psi.advance(10_000.0 + 3 * PERIOD)
    assert psi.avg[0][0] > 0
    # the updates stay on the PSI_FREQ grid from boot, as group->avg_next_update does
    assert psi._next_ns % PSI_FREQ_NS == 0  # noqa: SLF001


def _poisson_binomial_indexed(ps):
    """The recurrence as an indexed loop (what psi.py did until 2026-12-01): P'(k) += P(k) q; P'(k + 1) += P(k) p."""
    dist = [1.0]
    for p in ps:
        if p <= 0.0:
            continue
        nxt = [0.0] * (len(dist) + 1)
        for k, v in enumerate(dist):
            nxt[k] += v * (1.0 - p)
            nxt[k + 1] += v * p
        dist = nxt
    return dist


def test_poisson_binomial_is_the_recurrence_to_the_last_bit():
    """The shipped studies' PSI columns stay the same bytes: every probability equal as a float, not approximately,
    for tasks that never stall (0), always stall (1), and anything between."""
    rng = random.Random(7)
    for n in (0, 1, 2, 5, 40, 300):
        ps = [rng.choice([0.0, 1.0, rng.random(), rng.random() * 1e-9, 1 - 1e-12]) for _ in range(n)]
        assert poisson_binomial(ps) == _poisson_binomial_indexed(ps)
    assert poisson_binomial([0.5, 0.5]) == [0.25, 0.5, 0.25]
    assert poisson_binomial([0.0, 0.0]) == [1.0]  # a task that never stalls adds no count


def _stall_rates_as_lists(tasks, kswapd, cpus):
    """stall_rates as psi.py computed it until 2026-12-01: every event through the recurrence, the expectations
    added left to right (as sum() did on Python 3.11)."""
    n = len(tasks)
    if not n and kswapd <= 0.0:
        return 0.0, 0.0
    delayed = _poisson_binomial_indexed([min(1.0, r + w) for r, w in tasks])
    some = full = 0.0
    for k_on, p_k in ((1, kswapd), (0, 1.0 - kswapd)):
        if p_k <= 0.0:
            continue
        threads = min(n + k_on, cpus)
        if threads == 0:
            continue
        s = _left_to_right(p * min((d + k_on) / threads, 1.0) for d, p in enumerate(delayed))
        f = _left_to_right(p * (threads - min(n - u, threads)) for u, p in enumerate(delayed)) / threads
        some += p_k * s
        full += p_k * f
    return min(some, 1.0), min(full, 1.0)


def _left_to_right(terms) -> float:
    total = 0.0
    for x in terms:
        total += x
    return total


def test_stall_rates_are_the_lists_to_the_last_bit():
    """Tasks stalled the whole tick shift the distribution instead of stepping it, and past a few dozen counts
    the expectations are numpy's running sums: SOME and FULL stay the same floats, not approximately, on both
    sides of the thresholds, with and without kswapd."""
    rng = random.Random(11)
    fractions = [rng.random() for _ in range(6)]
    for n in (1, 3, 20, 23, 24, 25, 31, 32, 33, 60, 200):
        for _ in range(3):
            tasks = [
                rng.choice([(1.0, 0.0), (0.0, 1.0), (0.0, 0.0), (0.0, rng.choice(fractions)), (rng.random() / 2, 0.25)])
                for _ in range(n)
            ]
            for kswapd in (0.0, 0.3, 1.0):
                for cpus in (1, 2, 4, 64):
                    assert stall_rates(tasks, kswapd, cpus) == _stall_rates_as_lists(tasks, kswapd, cpus), (
                        n,
                        kswapd,
                        cpus,
                    )
