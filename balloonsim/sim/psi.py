"""Pressure stall information for memory, as kernel/sched/psi.c defines and averages it.

A task is in a memory stall between psi_memstall_enter() and psi_memstall_leave(): in direct reclaim and direct
compaction, in kswapd's balance_pgdat(), and while it waits for a swapped-out page of its working set to be read
back (swap_readpage() `if (workingset)`, 5.10+). SOME is the time at least one non-idle task is stalled; FULL the
time no non-idle task is productive. With several CPUs the kernel weights the per-CPU states by non-idle time,
which psi.c's header writes as

    threads = min(nr_nonidle_tasks, nr_cpus)
       SOME = min(nr_delayed_tasks / threads, 1)
       FULL = (threads - min(nr_productive_tasks, threads)) / threads

"For memory, productive means a running task that isn't a reclaimer", in every release with PSI, by three
mechanisms in turn. 4.20-5.12: psi_memstall_tick(), from scheduler_tick(), samples a CPU whose current task is
in a memstall as FULL ("a memstall is FULL when there are no other working tasks, but also when the CPU is
actively reclaiming and nothing productive could run even if it were runnable"). 5.13 on: psi_group_change()
sets PSI_MEM_FULL on a CPU whose current task is in_memstall (7fae6c8171d2, "psi: Use ONCPU state tracking
machinery to detect reclaim", scheduler pull for v5.13; 6.12.118 kernel/sched/psi.c:867). 5.17 (cb0e52b77487)
also makes `tasks[NR_MEMSTALL] && tasks[NR_RUNNING] == tasks[NR_MEMSTALL_RUNNING]` FULL, which adds to the
earlier rule only for a cgroup whose reclaimer is runnable but not current; system-wide, where every task is in
the group, the CPU's current task decides, as before. kswapd in balance_pgdat() is such a reclaimer too.

The simulation knows, per interval, what fraction of it each task spent reclaiming (running) and waiting for
swap-in (sleeping), not the exact instants. `stall_rates` takes the tasks' states as independent over the
interval and returns the expected SOME and FULL fractions of the formulas above. `PsiGroup` integrates those
piecewise-constant rates into the cumulative totals and runs the kernel's running averages at its own 2 s
clock, lazily: it is advanced only when something reads it or the rates change, so an interval of any length
with constant rates costs one step (and a quiet one with decayed averages none at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np

# kernel/sched/psi.c and include/linux/sched/loadavg.h (identical from 4.20 to 6.18)
FSHIFT = 11
FIXED_1 = 1 << FSHIFT
EXP_10s = 1677  # 1/exp(2s/10s) as fixed-point
EXP_60s = 1981  # 1/exp(2s/60s)
EXP_300s = 2034  # 1/exp(2s/300s)
HZ = 250  # CONFIG_HZ: the x86 Kconfig default (kernel/Kconfig.hz "default HZ_250")
PSI_FREQ_NS = (2 * HZ + 1) * (1_000_000_000 // HZ)  # PSI_FREQ = 2*HZ+1 jiffies: 2.004 s
_EXPS = (EXP_10s, EXP_60s, EXP_300s)


def calc_load(load: int, exp: int, active: int) -> int:
    """a1 = a0 * e + a * (1 - e), in fixed point, rounding up while rising."""
    newload = load * exp + active * (FIXED_1 - exp)
    if active >= load:
        newload += FIXED_1 - 1
    return newload // FIXED_1


def fixed_power_int(x: int, frac_bits: int, n: int) -> int:
    """x^n in fixed point with frac_bits fractional bits (kernel/sched/loadavg.c)."""
    result = 1 << frac_bits
    half = 1 << (frac_bits - 1)
    while n:
        if n & 1:
            result = (result * x + half) >> frac_bits
        n >>= 1
        if not n:
            break
        x = (x * x + half) >> frac_bits
    return result


def calc_load_n(load: int, exp: int, active: int, n: int) -> int:
    """n periods of calc_load() with the same input, as psi's calc_avgs() decays missed periods."""
    return calc_load(load, fixed_power_int(exp, FSHIFT, n), active)


_NUMPY_FROM = 24  # events from which numpy's whole-array steps beat Python's per-element ones


def poisson_binomial(ps: Sequence[float]) -> list[float]:
    """P(exactly k of independent events with probabilities ps happen), k = 0..len(ps): each event in turn,
    P'(k) = P(k - 1) p + P(k) q. A pressured run of ~200 tasks calls this at every tick and an indexed loop made
    it a third of the run, so many events take whole-array steps in numpy: the same products and the same
    single sum per entry in IEEE double, so the same bits (tests/sim/test_psi.py). An event that surely happens
    (p = 1: a task stalled the whole tick, often half of them) only moves the distribution up by one, exactly
    (P(k - 1) * 1.0 + P(k) * 0.0 is P(k - 1)), before or after the others: those are counted and the
    distribution shifted once."""
    return [0.0] * ps.count(1.0) + _distribution([p for p in ps if p > 0.0 and p != 1.0])


def _distribution(ps: list[float]) -> list[float]:
    """poisson_binomial of events with 0 < p (< 1, though 1 gives the same bits)."""
    if len(ps) < _NUMPY_FROM:
        dist = [1.0]
        for p in ps:
            q = 1.0 - p
            dist = [dist[0] * q, *[a * p + b * q for a, b in pairwise(dist)], dist[-1] * p]
        return dist
    n = len(ps)
    dist_a = np.zeros(n + 1)
    dist_a[0] = 1.0
    carry = np.empty(n + 1)
    for m, p in enumerate(ps, start=1):  # dist_a[:m] holds the distribution over the first m - 1 events
        np.multiply(dist_a[:m], p, out=carry[1 : m + 1])  # P(k - 1) p, k = 1..m
        np.multiply(dist_a[:m], 1.0 - p, out=dist_a[:m])  # P(k) q, k = 0..m-1
        dist_a[1:m] += carry[1:m]
        dist_a[m] = carry[m]
    return dist_a.tolist()


def stall_rates(tasks: Sequence[tuple[float, float]], kswapd: float, cpus: int) -> tuple[float, float]:
    """Expected SOME and FULL fractions of an interval.

    `tasks`: one (reclaiming, waiting) pair of fractions per non-idle task (their sum at most 1); `kswapd`: the
    fraction of the interval kswapd was reclaiming (it is non-idle only then)."""
    n = len(tasks)
    if not n and kswapd <= 0.0:
        return 0.0, 0.0
    delayed = poisson_binomial([min(1.0, r + w) for r, w in tasks])  # a reclaimer that runs is not productive
    some = full = 0.0
    for k_on, p_k in ((1, kswapd), (0, 1.0 - kswapd)):
        if p_k <= 0.0:
            continue
        threads = min(n + k_on, cpus)
        if threads == 0:
            continue
        s = _expected_some(delayed, k_on, threads)
        # productive: the workers that neither wait nor reclaim (kswapd, when on, is a thread that reclaims)
        f = _expected_idle_threads(delayed, n, threads) / threads
        some += p_k * s
        full += p_k * f
    return min(some, 1.0), min(full, 1.0)


def _expected_some(delayed: list[float], k_on: int, threads: int) -> float:
    """sum(p * min((d + k_on) / threads, 1)) over the counts d of delayed tasks, added left to right. Past
    _NUMPY_FROM counts it is numpy's elementwise IEEE operations and a running sum (np.add.accumulate): the same
    operations in the same order as the loop's, so the same bits (tests/sim/test_psi.py). (A loop, not sum(),
    which from Python 3.12 on is compensated for floats: the two sides of _NUMPY_FROM would then differ.)"""
    if len(delayed) < _NUMPY_FROM:
        total = 0.0
        for d, p in enumerate(delayed):
            total += p * min((d + k_on) / threads, 1.0)
        return total
    share = np.minimum(np.arange(k_on, k_on + len(delayed)) / threads, 1.0)
    return float(np.add.accumulate(np.multiply(delayed, share))[-1])


def _expected_idle_threads(unproductive: list[float], workers: int, threads: int) -> float:
    """sum(p * (threads - min(workers - u, threads))) over the counts u of unproductive tasks: the threads left
    without productive work, added left to right (the same bits past _NUMPY_FROM counts, as _expected_some)."""
    if len(unproductive) < _NUMPY_FROM:
        total = 0.0
        for u, p in enumerate(unproductive):
            total += p * (threads - min(workers - u, threads))
        return total
    idle = threads - np.minimum(workers - np.arange(len(unproductive)), threads)
    return float(np.add.accumulate(np.multiply(unproductive, idle))[-1])


class PsiGroup:
    """/proc/pressure/memory: cumulative SOME/FULL stall time and the avg10/avg60/avg300 running averages."""

    def __init__(self) -> None:
        self.t = 0.0  # the totals are integrated up to this time (s)
        self.rates = (0.0, 0.0)  # SOME and FULL fractions holding since self.t
        self.total = [0.0, 0.0]  # seconds in SOME, FULL
        self.avg = [[0, 0, 0], [0, 0, 0]]  # fixed-point percent (pct * FIXED_1), per state
        self.peak_avg10 = [0, 0]
        self._avg_total_ns = [0, 0]  # group->avg_total: stall time already folded into the averages
        self._next_ns = PSI_FREQ_NS  # group->avg_next_update
        self._last_ns = 0  # group->avg_last_update
        self._quiet = True  # averages all 0 and every stall folded into them: idle periods change nothing

    @property
    def idle(self) -> bool:
        """Nothing has ever stalled, or everything has decayed: advancing would change nothing that shows."""
        return self._quiet and not (self.rates[0] or self.rates[1])

    def set_rates(self, now: float, some: float, full: float) -> None:
        """From `now` on, SOME and FULL hold for these fractions of the time."""
        if (some, full) != self.rates:
            self.advance(now)
            self.rates = (some, full)

    def advance(self, now: float) -> None:
        """Integrate the totals to `now` and run every 2 s averaging that fell due (psi_avgs_work)."""
        now_ns = round(now * 1e9)
        while self._next_ns <= now_ns:
            if self._quiet and self.rates == (0.0, 0.0):
                # nothing stalls, nothing is pending, the averages are 0: every period up to now is the same no-op
                # (calc_load(0, e, 0) == 0), so the clock jumps
                skipped = (now_ns - self._next_ns) // PSI_FREQ_NS + 1
                self._last_ns = self._next_ns + (skipped - 1) * PSI_FREQ_NS
                self._next_ns += skipped * PSI_FREQ_NS
                break
            self._integrate(self._next_ns / 1e9)
            self._update(self._next_ns)
        self._integrate(now)

    def _integrate(self, t: float) -> None:
        dt = t - self.t
        if dt > 0:
            some, full = self.rates
            if some:
                self.total[0] += some * dt
            if full:
                self.total[1] += full * dt
            self.t = t

    def _update(self, now_ns: int) -> None:
        """update_averages() run exactly at its period boundary (no missed periods: the guest is never idle)."""
        period = now_ns - self._last_ns
        self._last_ns = now_ns
        self._next_ns += PSI_FREQ_NS
        for s in (0, 1):
            total_ns = round(self.total[s] * 1e9)
            sample = min(total_ns - self._avg_total_ns[s], period)
            self._avg_total_ns[s] += sample
            pct = sample * 100 // period * FIXED_1
            avg = self.avg[s]
            for i, exp in enumerate(_EXPS):
                avg[i] = calc_load(avg[i], exp, pct)
            if avg[0] > self.peak_avg10[s]:
                self.peak_avg10[s] = avg[0]
        self._quiet = not (any(self.avg[0]) or any(self.avg[1])) and all(
            round(self.total[s] * 1e9) == self._avg_total_ns[s] for s in (0, 1)
        )

    # -- what /proc/pressure/memory shows, as fractions ------------------------------------------------------
    def avg10(self, state: int = 0) -> float:
        return self.avg[state][0] / (100 * FIXED_1)

    def avg60(self, state: int = 0) -> float:
        return self.avg[state][1] / (100 * FIXED_1)

    def peak10(self, state: int = 0) -> float:
        return self.peak_avg10[state] / (100 * FIXED_1)
