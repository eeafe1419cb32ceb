"""The drawing processes: imported once and shared by fork, every job answered, errors raised in the caller,
nothing left running; figures drawn by them are the figures drawn in one process."""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
import signal
import time
import weakref

import pytest

from balloonsim.analysis import analyze
from balloonsim.analysis.drawers import Drawers
from balloonsim.analysis.plots import make_plots

pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")

LOADED_BY: list[int] = []
MEET = None  # a Barrier(2), made fresh by each test that uses it (the drawers inherit it by fork)


@pytest.fixture(autouse=True)
def _meeting_point():
    global MEET
    MEET = multiprocessing.get_context("fork").Barrier(2)


def _load() -> None:
    LOADED_BY.append(os.getpid())


def _run(name: str, args: tuple):
    if name == "fail":
        raise ValueError(f"cannot draw {args[0]}")
    if name == "meet":
        MEET.wait(timeout=30)  # returns only when a second process runs a `meet` job at the same time
    if name == "cycle":  # garbage only the cyclic collector frees, watched through a weak reference
        cycle: dict = {}
        cycle["self"] = cycle
        WATCHED.append(weakref.ref(_Node(cycle)))
        return gc.isenabled(), gc.get_freeze_count()
    if name == "watched":
        return [ref() is None for ref in WATCHED]
    return os.getpid(), list(LOADED_BY), args


WATCHED: list[weakref.ref] = []


class _Node:
    def __init__(self, cycle: dict):
        self.cycle = cycle
        cycle["node"] = self


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_second_drawer_starts_with_the_first_ones_imports():
    drawers = Drawers(2, _load, _run)
    try:
        answers = [p.get() for p in [drawers.submit("meet", (i,)) for i in range(2)]]
    finally:
        drawers.close()
    pids = {pid for pid, _, _ in answers}
    assert len(pids) == 2  # two processes drew
    first = drawers._first.pid
    assert all(loaded == [first] for _, loaded, _ in answers), (first, answers)  # load() ran once, in the first
    assert sorted(args for _, _, args in answers) == [(0,), (1,)]


def test_an_error_is_raised_in_the_caller_and_the_rest_still_drawn():
    drawers = Drawers(2, _load, _run)
    try:
        pending = [drawers.submit("fail", ("x",)), drawers.submit("ok", (1,)), drawers.submit("ok", (2,))]
        with pytest.raises(ValueError, match="cannot draw x"):
            pending[0].get()
        assert [p.get()[2] for p in pending[1:]] == [(1,), (2,)]
    finally:
        drawers.close()


@pytest.mark.parametrize("wait", [True, False])
def test_close_leaves_no_drawer_running(wait):
    drawers = Drawers(2, _load, _run)
    for p in [drawers.submit("meet", (i,)) for i in range(2)]:
        p.get()  # both drawers have answered, so both said who they are
    if not wait:
        drawers.submit("meet", (3,))  # never met: that drawer is killed mid-job
    drawers.close(wait=wait)
    assert len(drawers._pids) == 2
    assert not any(_alive(pid) for pid in drawers._pids), [
        (pid, open(f"/proc/{pid}/stat").read()) for pid in drawers._pids if _alive(pid)
    ]


def test_figures_drawn_by_two_processes_equal_those_drawn_in_one(realistic_dir, tmp_path):
    other = tmp_path / "serial"
    shutil.copytree(realistic_dir, other)
    made = {}
    for root, workers in ((realistic_dir, 2), (other, 0)):
        made[workers] = [p.name for p in make_plots(analyze(root), workers=workers)]
    assert made[2] == made[0] and made[2]
    for name in [*made[2], "index.json"]:
        assert (realistic_dir / "plots" / name).read_bytes() == (other / "plots" / name).read_bytes(), name


class _Recorder:
    """Stands in for the drawers: draws each figure at once, in this process, and notes the order."""

    def __init__(self):
        self.order: list[str] = []

    def submit(self, name: str, args: tuple):
        from balloonsim.analysis.plots import _Done, _draw

        self.order.append(name)
        return _Done(_draw(name, args))

    def close(self, wait: bool = True) -> None:
        pass


def test_the_time_line_goes_first_and_the_figures_of_the_comparisons_before_the_rest(realistic_dir):
    from balloonsim.analysis.plots import Drawing

    analysis = analyze(realistic_dir)
    with Drawing(analysis.results, analysis.by, workers=2) as drawing:
        drawing._pool.close(wait=False)
        drawing._pool = recorder = _Recorder()
        drawing.start_timeline(lambda m: analysis.comparisons[analysis.comparisons["metric"] == m])
        queued_early = list(recorder.order)
        drawing.add(analysis)
        made = drawing.finish()
    order = recorder.order
    # the time line, then as many figures that need no comparisons as there are drawers; the figures that read
    # the comparisons come next, ahead of the remaining ones, so that no long figure starts last
    assert queued_early == ["draw_timeline", "memmap_figure", "factor_figure"]
    late = [i for i, name in enumerate(order) if name in ("overview_map", "pair_map")]
    rest = [i for i, name in enumerate(order) if name == "factor_figure"][1:]
    assert late and rest and max(late) < min(rest)
    assert len(made) == len(order)


def _caller(pids) -> None:
    """A process that starts two drawers, says who they are, and waits to be killed."""
    drawers = Drawers(2, _load, _run)
    for p in [drawers.submit("meet", (i,)) for i in range(2)]:
        p.get()
    pids.put(sorted(drawers._pids))
    multiprocessing.Event().wait(60)


def test_a_caller_killed_outright_leaves_no_drawer_running():
    """SIGKILL gives the caller no chance to stop its drawers: they notice its end themselves (die_with_runner),
    as the simulation workers do, instead of waiting for a job for ever."""
    ctx = multiprocessing.get_context("fork")
    pids = ctx.Queue()
    caller = ctx.Process(target=_caller, args=(pids,))
    caller.start()
    drawers = pids.get(timeout=30)
    assert len(drawers) == 2 and all(_alive(pid) for pid in drawers)
    os.kill(caller.pid, signal.SIGKILL)
    caller.join()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in drawers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in drawers)


def test_a_drawer_collects_between_jobs_with_what_it_inherited_frozen():
    """No collection while a figure is drawn, none ever walks the caller's objects; a job's garbage is freed
    before the next job."""
    drawers = Drawers(1, _load, _run)
    try:
        enabled, frozen = drawers.submit("cycle", ()).get()
        freed = drawers.submit("watched", ()).get()
    finally:
        drawers.close()
    assert not enabled
    assert frozen > 1000  # at least this test's imports (pytest, balloonsim) are frozen
    assert freed == [True]
