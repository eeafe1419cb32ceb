"""Executors: bounded work in flight, a dead worker process, progress and interrupts."""

from __future__ import annotations

import concurrent.futures as cf
import gc
import io
import itertools
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from experiment_fakes import dying_run, fake_run, quiet_dask_run, set_aside_run
from experiment_support import subprocess_env

from balloonsim.errors import UserError
from balloonsim.experiment import load_results, run_experiment
from balloonsim.experiment.chunks import ChunkSizer
from balloonsim.experiment.executors import InProcess, LocalProcesses, make_executor
from balloonsim.experiment.progress import Progress
from balloonsim.experiment.runner import _drain
from balloonsim.experiment.spec import experiment_from_dict


def make(**doc):
    doc.setdefault("name", "t")
    return experiment_from_dict(doc)


def test_make_executor():
    assert isinstance(make_executor(1), InProcess)
    pool = make_executor(2)
    try:
        assert isinstance(pool, LocalProcesses) and pool.slots == 4
        assert pool.description == "local processes (2 workers)"
    finally:
        pool.close()
    with pytest.raises(UserError, match="must be at least 1"):
        make_executor(0)


class _Deferred(InProcess):
    """Futures finish one at a time, only when waited on: shows how much the runner keeps in flight."""

    slots = 3
    elsewhere = True  # like workers: submit() only queues the work

    def __init__(self):
        self.queue: list[tuple[cf.Future, tuple]] = []
        self.max_in_flight = 0

    def submit(self, fn, *args):
        future: cf.Future = cf.Future()
        self.queue.append((future, (fn, args)))
        self.max_in_flight = max(self.max_in_flight, sum(not f.done() for f, _ in self.queue))
        return future

    def wait(self, futures, timeout):
        future, (fn, args) = next((f, job) for f, job in self.queue if not f.done())
        future.set_result(fn(*args))
        return {future}


class _Sink:
    """A store stand-in that just counts."""

    events = None

    def __init__(self):
        self.added = []

    def add(self, spec, outcome):
        self.added.append(outcome)

    def seconds_until_due(self):
        return None

    def due(self):
        return False

    def flush(self):
        pass


def test_runner_keeps_a_bounded_number_of_chunks_in_flight_and_expands_lazily():
    consumed = itertools.count()
    exp = make(factors={"a": list(range(50))})
    from balloonsim.experiment.design import iter_runs

    def todo():
        for spec in iter_runs(exp):
            next(consumed)
            yield spec

    executor, sink = _Deferred(), _Sink()

    class Watch:
        def advance(self, ok):
            # when the first result is committed, only the first `slots` specs and the one that took its slot
            # have been taken from the design
            if len(sink.added) == 1:
                assert next(consumed) == 3 + 1

    _drain(todo(), sink, executor, fake_run, Watch(), [])
    assert len(sink.added) == 50 and all(o.ok for o in sink.added)
    assert executor.max_in_flight == 3


@pytest.mark.slow
def test_a_worker_process_that_dies_fails_its_run_and_the_batch_goes_on(tmp_path):
    die = [False, False, True, False, False, False]
    exp = make(factors={"a": list(range(6)), "fake.die": die}, zip=[["a", "fake.die"]])
    summary = run_experiment(exp, out_dir=tmp_path / "out", jobs=2, run_fn=dying_run)
    runs = load_results(summary.out_dir)
    assert len(runs) == 6
    died = runs[runs["fake.die"]]
    assert (died["status"] == "failed").all()
    assert died["error"].str.startswith("BrokenProcessPool").all()
    assert (runs.loc[~runs["fake.die"], "status"] == "ok").all()  # runs that shared the pool were retried
    assert summary.failed == 1 and summary.ok == 5
    again = run_experiment(exp, out_dir=tmp_path / "out", jobs=1, run_fn=fake_run)
    assert again.ok == 6 and again.failed == 0 and again.ran == 1


@pytest.mark.slow
def test_a_dask_worker_that_dies_is_started_again_and_only_its_run_fails(tmp_path):
    """`--dask local` has no nannies: its own worker processes are started again when they die, so Dask can try
    the fatal run on fresh workers until it gives up on it (KilledWorker), and every other run completes."""
    die = [False, False, True, False, False, False]
    exp = make(factors={"a": list(range(6)), "fake.die": die}, zip=[["a", "fake.die"]])
    summary = run_experiment(exp, out_dir=tmp_path / "out", dask="local", jobs=2, run_fn=dying_run)
    runs = load_results(summary.out_dir)
    died = runs[runs["fake.die"]]
    assert (died["status"] == "failed").all() and died["error"].str.startswith("KilledWorker").all()
    assert (runs.loc[~runs["fake.die"], "status"] == "ok").all()
    assert summary.failed == 1 and summary.ok == 5
    assert gc.get_freeze_count() == 0  # the runner's objects set aside during the batch are collectable again


@pytest.mark.parametrize(
    "jobs, dask",
    [(1, None), (2, None), pytest.param(2, "local", marks=pytest.mark.slow)],
    ids=["in-process", "local", "dask"],
)
def test_runs_find_the_imports_set_aside_from_the_collector_and_the_runner_gets_its_back(tmp_path, jobs, dask):
    """A full collection during a run walks only what is not set aside (gc.freeze): in a worker, everything it
    held once its imports were done; in the runner (--jobs 1), everything it held when the batch began, given
    back to the collector when the batch ends."""
    exp = make(factors={"a": list(range(4))})
    summary = run_experiment(exp, out_dir=tmp_path / "out", jobs=jobs, dask=dask, run_fn=set_aside_run)
    runs = load_results(summary.out_dir)
    assert summary.ok == 4 and runs["set_aside"].all()
    assert gc.get_freeze_count() == 0


@pytest.mark.slow
def test_local_dask_workers_run_with_the_quiet_settings(tmp_path):
    """The settings `--dask local` starts its workers with (QUIET_WORKERS: no statistical profiler sampling every
    run's stack, slower admin ticks and memory checks) reach the worker processes. They are set in the runner
    around the cluster's start; a worker forked later gets them only if they were copied then, as a nanny copies
    them, not a reference to Dask's global settings, which have their defaults back by the time it starts."""
    exp = make(factors={"a": list(range(4))})
    summary = run_experiment(exp, out_dir=tmp_path / "out", jobs=2, dask="local", run_fn=quiet_dask_run)
    runs = load_results(summary.out_dir)
    assert summary.ok == 4 and runs["quiet"].all()


def _one(x: int) -> int:
    return x


@pytest.mark.slow
def test_local_dask_workers_that_cannot_start_end_the_wait_with_a_clear_error():
    """Workers start in the background; one that dies before it joins the scheduler, again and again, must not
    leave the runner waiting for ever (here its Dask preload cannot be imported)."""
    executor = make_executor(2, "local", preload=("balloonsim_no_such_module",))
    try:
        executor.start()
        future = executor.submit(_one, 1)
        deadline = time.monotonic() + 60
        with pytest.raises(UserError, match="before it joined the scheduler"):
            while time.monotonic() < deadline and not executor.wait([future], 1.0):
                pass
    finally:
        executor.close(cancel=True)


def test_progress_bar_shows_done_failures_and_eta_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    monkeypatch.setattr("sys.stderr", stream)
    bar = Progress(total=4, done=1, label="exp", quiet=False)
    bar.advance(ok=True)
    bar.advance(ok=False)
    bar.close()
    text = stream.getvalue()
    assert "exp:" in text and "3/4" in text and "failed=1" in text and "<" in text  # elapsed<remaining

    quiet = Tty()
    monkeypatch.setattr("sys.stderr", quiet)
    Progress(total=4, done=0, label="exp", quiet=True).close()
    assert quiet.getvalue() == ""

    class Pipe(io.StringIO):
        def isatty(self):
            return False

    pipe = Pipe()
    monkeypatch.setattr("sys.stderr", pipe)
    Progress(total=4, done=0, label="exp", quiet=False).close()
    assert pipe.getvalue() == ""


def test_keyboard_interrupt_exits_130_and_keeps_finished_runs(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from balloonsim.cli import cli
    from balloonsim.experiment import worker

    calls = []

    def stop_on_third(config, seed):
        calls.append(seed)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return fake_run(config, seed)

    monkeypatch.setattr(worker, "simulate_run", stop_on_third)
    path = tmp_path / "e.toml"
    path.write_text('name = "e"\n[base]\ndriver.name = "xen"\n[factors]\n"onlining.delay" = [1, 2, 3, 4]\n')
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "o"), "--jobs", "1"])
    assert result.exit_code == 130
    assert "interrupted; finished runs are kept" in result.stderr
    assert len(load_results(tmp_path / "o")) == 2


# ---- chunks ---------------------------------------------------------------------------------------------


def test_chunk_sizes_start_at_one_follow_the_run_time_and_shrink_at_the_end():
    sizer = ChunkSizer(workers=2, target_s=0.3)
    assert sizer.next_size(remaining=1000) == 1  # nothing measured yet
    sizer.observe([0.05] * 9 + [2.0])  # a slow first run does not steer the size (median)
    assert sizer.per_run_s == 0.05
    assert sizer.next_size(remaining=1000) == 6  # 0.3 s of 50 ms runs
    assert sizer.next_size(remaining=12) == 3  # the tail: a quarter of what is left for two workers
    assert sizer.next_size(remaining=1) == 1
    sizer.observe([1e-5] * 64)
    assert sizer.next_size(remaining=10**6) == 256  # bounded however fast the runs
    sizer.observe([5.0] * 64)
    assert sizer.next_size(remaining=10**6) == 1  # slow runs go one by one
    assert ChunkSizer(workers=2, chunked=False).next_size(remaining=100) == 1


class _Chunked(_Deferred):
    """A deferred executor that takes chunks, like local processes and Dask do."""

    chunked = True
    workers = 2
    slots = 4

    def __init__(self):
        super().__init__()
        self.sizes: list[int] = []

    def submit(self, fn, *args):
        self.sizes.append(len(args[0]))
        return super().submit(fn, *args)


def test_the_runner_hands_out_chunks_and_records_every_run_once_in_order_of_return():
    exp = make(factors={"a": list(range(200))})
    from balloonsim.experiment.design import iter_runs

    executor, sink = _Chunked(), _Sink()
    _drain(iter_runs(exp), sink, executor, fake_run, _NoProgress(), [], ChunkSizer(2, target_s=0.3), 200)
    assert sorted(o.run_id for o in sink.added) == sorted(s.run_id for s in iter_runs(exp))
    assert executor.sizes[:4] == [1, 1, 1, 1] and max(executor.sizes) > 10  # fake runs take microseconds
    assert sum(executor.sizes) == 200 and executor.sizes[-1] < max(executor.sizes)  # smaller again at the end


class _Logging:
    """An executor that notes each submission in `log` (beside a sink that notes each commit)."""

    log: list[str]

    def submit(self, fn, *args):
        self.log.append("submit")
        return super().submit(fn, *args)  # type: ignore[misc]


class _LoggedChunks(_Logging, _Chunked):
    pass


class _LoggedInProcess(_Logging, InProcess):
    pass


class _LoggedSink(_Sink):
    def __init__(self, log):
        super().__init__()
        self.log = log

    def add(self, spec, outcome):
        self.log.append("add")
        super().add(spec, outcome)


def test_workers_get_their_next_chunk_before_the_runner_commits_what_came_back():
    """Committing the first runs loads the runner's table code (~0.05 s): workers elsewhere are handed their next
    chunk first. In-process (--jobs 1), where submit() runs the work, what came back is committed first, so that
    an interrupt keeps every run finished before it."""
    from balloonsim.experiment.design import iter_runs

    exp = make(factors={"a": list(range(6))})
    log: list[str] = []
    elsewhere, here = _LoggedChunks(), _LoggedInProcess()
    elsewhere.log = here.log = log
    _drain(iter_runs(exp), _LoggedSink(log), elsewhere, fake_run, _NoProgress(), [], ChunkSizer(2), 6)
    assert log == ["submit"] * 4 + ["submit", "add"] * 2 + ["add"] * 4  # four slots, then refill, then commit
    log.clear()
    _drain(iter_runs(exp), _LoggedSink(log), here, fake_run, _NoProgress(), [], None, 6)
    assert log == ["submit", "add"] * 6


class _FailingChunks(_Chunked):
    """Chunks of several runs fail as a lost Dask worker would fail them; chunks of one run fine, except the run
    that is fatal to its worker."""

    def __init__(self, fatal: str):
        super().__init__()
        self.fatal = fatal

    def wait(self, futures, timeout):
        future, (fn, args) = next((f, job) for f, job in self.queue if not f.done())
        specs = args[0]
        if len(specs) > 1 or specs[0].run_id == self.fatal:
            future.set_exception(RuntimeError("worker lost"))
        else:
            future.set_result(fn(*args))
        return {future}


def test_a_chunk_that_fails_outside_its_runs_is_split_and_only_the_fatal_run_fails():
    exp = make(factors={"a": list(range(40))})
    from balloonsim.experiment.design import iter_runs

    specs = list(iter_runs(exp))
    executor, sink = _FailingChunks(fatal=specs[25].run_id), _Sink()
    sizer = ChunkSizer(2, target_s=0.3)
    sizer.observe([0.01] * 10)  # chunks of several runs from the start
    errors: list = []
    _drain(iter(specs), sink, executor, fake_run, _NoProgress(), errors, sizer, 40)
    assert sorted(o.run_id for o in sink.added) == sorted(s.run_id for s in specs)
    failed = [o for o in sink.added if not o.ok]
    assert [o.run_id for o in failed] == [specs[25].run_id] and "worker lost" in failed[0].error
    assert errors == [(specs[25].run_id, "RuntimeError: worker lost")]


class _NoProgress:
    def advance(self, ok):
        pass


KILLED_RUNNER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    from experiment_fakes import fake_run
    from balloonsim.experiment import experiment_from_dict, run_experiment
    exp = experiment_from_dict({{"name": "k", "base": {{"fake": {{"sleep": 0.3}}}}, "factors": {{"fake.k": [1, 2]}},
                                "replications": 40}})
    run_experiment(exp, out_dir={out!r}, jobs=2, run_fn=fake_run)
    """
)


@pytest.mark.slow
def test_killing_only_the_runner_ends_its_worker_processes_and_their_forkserver(tmp_path):
    import psutil

    code = KILLED_RUNNER.format(here=str(Path(__file__).parent), out=str(tmp_path / "out"))
    proc = subprocess.Popen([sys.executable, "-c", code], env=subprocess_env())
    runner = psutil.Process(proc.pid)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "out" / "runs.csv").exists() or len(runner.children(recursive=True)) < 3:
            assert time.monotonic() < deadline and proc.poll() is None, "the batch did not get going"
            time.sleep(0.1)
        family = runner.children(recursive=True)  # the forkserver, its two workers, the resource tracker
        runner.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        _, alive = psutil.wait_procs(family, timeout=30)
        assert not alive, [p.cmdline()[:3] for p in alive]
    finally:
        for p in runner.children(recursive=True) if proc.poll() is None else []:
            p.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_existing_dask_scheduler_is_asked_again_how_many_workers_it_has(monkeypatch):
    """A job queue starts workers after the batch has connected: the chunks in flight follow them."""
    from balloonsim.experiment import executors
    from balloonsim.experiment.executors import DaskExecutor

    sizes = [0]

    class Client:
        def nthreads(self):
            return {f"tcp://w{i}": 1 for i in range(sizes[0])}

    ex = object.__new__(DaskExecutor)
    ex._client, ex._local = Client(), None
    assert ex._count_threads() == 0
    sizes[0] = 64
    assert (ex.workers, ex.slots) == (1, 2)  # asked a moment ago: not asked again
    monkeypatch.setattr(executors, "RECOUNT_S", 0.0)
    assert (ex.workers, ex.slots) == (64, 128)


@pytest.mark.slow
def test_two_workers_write_the_bytes_one_writes_though_runs_finish_out_of_order(tmp_path):
    """Same seed, same bytes: the first run is slow, so under two workers every other run finishes before it and
    the batch flushes them in another order; runs.csv, the time series and the events are byte-identical to a
    batch run in one process."""
    sleep = [0.6, 0.0, 0.0, 0.0, 0.0, 0.0]
    exp = make(factors={"fake.k": list(range(6)), "fake.sleep": sleep}, zip=[["fake.k", "fake.sleep"]], replications=2)
    one = run_experiment(exp, out_dir=tmp_path / "one", jobs=1, run_fn=fake_run, events=True)
    two = run_experiment(exp, out_dir=tmp_path / "two", jobs=2, run_fn=fake_run, events=True)
    assert one.ok == two.ok == 12
    finished = list(load_results(two.out_dir).run_id)  # design order
    timing = (tmp_path / "two" / "timing.csv").read_text().splitlines()[1:]
    assert [line.split(",")[0] for line in timing] != finished  # the runs did finish out of order
    for name in ("runs.csv", "timeseries.parquet", "events.parquet"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
