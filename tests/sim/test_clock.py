"""balloonsim.sim.clock: a Poll runs its check where a process waking every period would have run it, and only
where it has something to do."""

from __future__ import annotations

import math

import simpy

from balloonsim.sim.clock import URGENT, At, Clock, Poll


class _NoObserver:
    next_t = math.inf

    def has_instant(self, t: float) -> bool:
        return False

    def catch_up(self, key) -> None:  # pragma: no cover - next_t is never reached
        raise AssertionError


def _others(env: simpy.Environment, log: list) -> None:
    """Processes whose timeouts land on the poll's 1 s grid: exactly one period long (scheduled at an instant of
    the grid, like the poll's own), longer, shorter, and an event triggered for the instant itself."""

    def one_shot(start: float, delay: float, tag: str):
        yield env.timeout(start)
        yield env.timeout(delay)
        log.append((env.now, tag))

    def chain(tag: str):  # at 3.0 it schedules a timeout of exactly 1 s, then triggers an event for 5.0 itself
        yield env.timeout(3.0)
        yield env.timeout(1.0)
        log.append((env.now, tag))
        yield env.timeout(1.0)
        ev = env.event()
        ev.callbacks.append(lambda _: log.append((env.now, tag + "-now")))
        ev.succeed()

    env.process(one_shot(1.0, 1.0, "a"))  # made at 1, lands at 2: ties with the poll's timeout made at 1
    env.process(one_shot(0.0, 3.0, "b"))  # made at 0, lands at 3: before the poll's timeout made at 2
    env.process(one_shot(2.5, 0.5, "c"))  # made at 2.5, lands at 3: after it
    env.process(chain("d"))
    env.process(one_shot(0.0, 6.0, "e"))


def _periodic(wanted: set[float], log: list) -> list:
    """What a SimPy process waking every second logs at the instants in `wanted`."""
    env = simpy.Environment()
    _others(env, log)

    def poll():
        while True:
            if env.now in wanted:
                log.append((env.now, "poll"))
            yield env.timeout(1.0)

    env.process(poll())
    env.run(until=8)
    return log


def _skipping(wanted: set[float], log: list) -> list:
    """The same with a Poll that runs only at the instants in `wanted`."""
    env = Clock()
    _others(env, log)
    instants = sorted(int(t) for t in wanted)

    def check(k: int) -> int | None:
        if k in instants:
            log.append((env.now, "poll"))
        later = [i for i in instants if i > k]
        return later[0] if later else None

    poll = Poll(env, [], 0.0, 1.0, 0, check)
    At(env, 0.0, URGENT).callbacks.append(lambda _: poll.run(0))  # where the process's first step ran
    env.run_until(8, _NoObserver())
    return log


def test_a_skipping_poll_runs_in_the_place_of_the_periodic_process_timeouts():
    for wanted in ({2.0, 3.0, 4.0, 5.0, 6.0}, {2.0}, {3.0, 6.0}, {4.0}, {5.0}, {6.0}, {1.0, 7.0}):
        expect = _periodic(wanted, [])
        assert _skipping(wanted, []) == expect, wanted


def test_a_poll_poked_by_a_change_runs_at_the_first_instant_after_it():
    env = Clock()
    seen: list[float] = []
    watchers: list = []

    def check(k: int) -> None:
        seen.append(env.now)

    poll = Poll(env, [watchers.append], 0.0, 1.0, 0, check)
    At(env, 0.0, URGENT).callbacks.append(lambda _: poll.run(0))

    def changes():
        for t in (2.5, 2.75, 7.25):
            yield env.timeout(t - env.now)
            for w in watchers[:]:
                watchers.remove(w)
                w()

    env.process(changes())
    env.run_until(20, _NoObserver())
    assert seen == [0.0, 3.0, 8.0]  # two changes before 3 make one check; nothing in between
    assert env.checks == 2  # the timed ones (the first ran from the owner's start)


def test_a_quiet_poll_costs_nothing_per_period():
    env = Clock()
    poll = Poll(env, [lambda cb: None], 0.0, 1.0, 0, lambda k: None)
    At(env, 0.0, URGENT).callbacks.append(lambda _: poll.run(0))
    env.run_until(1e6, _NoObserver())
    assert env.checks == 0
    assert env.scheduled_events == 3  # start-up, stop, and SimPy re-queueing the stop when it ends the run
