"""`balloonsim run` through the top-level CLI group: bad input, --dry-run, exit codes, the report hook."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from experiment_fakes import fake_run, flaky_run
from experiment_support import subprocess_env

from balloonsim.cli import cli
from balloonsim.environ import SETTINGS
from balloonsim.errors import UserError
from balloonsim.experiment import worker
from balloonsim.experiment.cli import run as run_command

BAD = sorted((Path(__file__).parent / "bad").glob("*.toml"))

cli.add_command(run_command)  # what balloonsim.cli.main() registers, without importing every other command


def invoke(*args: str):
    return CliRunner().invoke(cli, ["run", *args], catch_exceptions=False)


def header(path: Path, key: str) -> list[str]:
    """Values of `# key: value` comment lines at the top of a corpus file."""
    prefix = f"# {key}: "
    return [line[len(prefix) :] for line in path.read_text().splitlines() if line.startswith(prefix)]


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: bad input must be refused up front, in well under this."""

    def expired(signum, frame):
        raise AssertionError(f"still running after {seconds} s: bad input must be refused, not run")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_experiment_is_rejected_with_its_message(path, tmp_path, monkeypatch):
    (expected,) = header(path, "expect")
    args = [arg for line in header(path, "args") for arg in shlex.split(line)]
    monkeypatch.chdir(tmp_path)  # the default results/<name> would land here
    out = tmp_path / "out"
    with deadline(30):
        result = invoke(str(path), "--out", str(out), *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("balloonsim: error: "), result.stderr
    assert expected in lines[0]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_corpus_covers_the_required_cases():
    names = {p.stem for p in BAD}
    assert {
        "unknown_top_key",
        "wrong_type",
        "impossible_size",
        "unknown_strategy",
        "unknown_driver",
        "empty_factor",
        "zip_length_mismatch",
        "toml_syntax",
        "unknown_set_key",
    } <= names
    for path in BAD:
        assert len(header(path, "expect")) == 1, f"{path.name} needs one '# expect:' line"


def test_missing_file_and_bad_options_exit_2(tmp_path):
    assert invoke(str(tmp_path / "nope.toml")).exit_code == 2
    good = tmp_path / "good.toml"
    good.write_text('name = "g"\n')
    for args in (["--jobs", "0"], ["--timeseries", "xml"], ["--set", "novalue"]):
        result = invoke(str(good), "--out", str(tmp_path / "o"), *args)
        assert result.exit_code == 2, (args, result.output)
        assert not (tmp_path / "o").exists()


def test_dask_address_is_checked(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('name = "g"\n[base]\ndriver.name = "xen"\n')
    result = invoke(str(good), "--out", str(tmp_path / "o"), "--dask", "not an address")
    assert result.exit_code == 2 and "expected 'local' or a scheduler address" in result.stderr
    result = invoke(str(good), "--out", str(tmp_path / "o"), "--dask", "tcp://127.0.0.1:9", "--jobs", "2")
    assert result.exit_code == 2 and "--jobs does not apply" in result.stderr
    assert not (tmp_path / "o").exists()


EXPERIMENT = """\
name = "small"
replications = 2
seed = 3
[base]
driver.name = "xen"
[factors]
memmap.strategy = ["kmalloc", "altmap"]
"onlining.delay" = [0, 5, 30]
"""


def test_dry_run_prints_the_design_and_writes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "small.toml"
    path.write_text(EXPERIMENT)
    monkeypatch.chdir(tmp_path)
    result = invoke(str(path), "--dry-run", "--set", "replications=3")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "experiment small: 6 design points x 3 replications = 18 runs" in text
    assert "factors: memmap.strategy (2), onlining.delay (3); design full" in text
    assert "results: results/small" in text
    assert "... 8 more runs" in text
    table = text.split("\n\n", 1)[1].splitlines()
    assert table[0].split() == ["#", "run_id", "point", "rep", "seed", "memmap.strategy", "onlining.delay"]
    assert table[1].split()[2:] == ["0", "0", table[1].split()[4], "kmalloc", "0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.toml"]


def test_dry_run_spells_table_levels_as_the_report_does(tmp_path, monkeypatch):
    path = tmp_path / "tables.toml"
    path.write_text(
        'name = "tables"\n[factors]\nmemmap.strategy = ["kmalloc"]\n'
        'driver = [{ name = "hyperv", request_offset = "64M" }, { name = "dimm", dimm_size = "1G" }]\n'
        'host = [{ controller = "schedule", steps = [[10, "4G"], [60, "6G"], [120, "8G"]] }]\n'
    )
    monkeypatch.chdir(tmp_path)
    result = invoke(str(path), "--dry-run")
    assert result.exit_code == 0, result.output
    rows = result.stdout.split("\n\n", 1)[1].splitlines()[1:3]
    assert "hyperv request_offset=64M" in rows[0] and "dimm dimm_size=1G" in rows[1]
    assert all("schedule steps=[[10, 4G], [60, 6G], [120, 8G]]" in row for row in rows)
    assert "{" not in "".join(rows)


def _fake(monkeypatch, fn):
    """Replace the simulator in this process (the CLI runs are --jobs 1: in-process)."""
    monkeypatch.setattr(worker, "simulate_run", fn)


def test_run_reports_failures_with_exit_code_1_and_resumes(tmp_path, monkeypatch):
    path = tmp_path / "small.toml"
    path.write_text(EXPERIMENT)
    out = tmp_path / "out"
    _fake(monkeypatch, flaky_run)
    first = invoke(str(path), "--out", str(out), "--jobs", "1", "--no-report")
    assert first.exit_code == 1, first.output
    assert "small: 12 runs:" in first.stdout and "failed" in first.stdout
    assert "ValueError: odd seed" in first.stdout
    assert "rerun the same command to retry" in first.stdout

    _fake(monkeypatch, fake_run)
    second = invoke(str(path), "--out", str(out), "--jobs", "1", "--no-report", "--quiet")
    assert second.exit_code == 0, second.output
    assert "12 ok" in second.stdout and "0 failed" in second.stdout
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["counts"]["ok"] == 12 and meta["status"] == "complete"


def test_report_hook_runs_unless_no_report(tmp_path, monkeypatch):
    import balloonsim.analysis as analysis

    calls = []
    monkeypatch.setattr(analysis, "finish", lambda out: calls.append(Path(out)))
    _fake(monkeypatch, fake_run)
    path = tmp_path / "small.toml"
    path.write_text(EXPERIMENT)
    assert invoke(str(path), "--out", str(tmp_path / "a"), "--jobs", "1").exit_code == 0
    assert calls == [tmp_path / "a"]
    assert invoke(str(path), "--out", str(tmp_path / "b"), "--jobs", "1", "--no-report").exit_code == 0
    assert calls == [tmp_path / "a"]

    def broken(out):
        raise RuntimeError("no plots today")

    monkeypatch.setattr(analysis, "finish", broken)
    result = invoke(str(path), "--out", str(tmp_path / "c"), "--jobs", "1")
    assert result.exit_code == 1
    assert "balloonsim: report failed: RuntimeError: no plots today" in result.stderr
    assert (tmp_path / "c" / "runs.csv").exists()


def test_refuses_a_different_experiment_with_exit_2(tmp_path, monkeypatch):
    _fake(monkeypatch, fake_run)
    path = tmp_path / "small.toml"
    path.write_text(EXPERIMENT)
    out = tmp_path / "out"
    assert invoke(str(path), "--out", str(out), "--jobs", "1", "--no-report").exit_code == 0
    path.write_text(EXPERIMENT.replace("seed = 3", "seed = 4"))
    refused = invoke(str(path), "--out", str(out), "--jobs", "1", "--no-report")
    assert refused.exit_code == 2
    assert "holds results of a different experiment" in refused.stderr
    forced = invoke(str(path), "--out", str(out), "--jobs", "1", "--no-report", "--force")
    assert forced.exit_code == 0


def _refused(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("balloonsim: error: "), result.stderr
    assert fragment in lines[0], lines[0]


def test_experiment_file_must_be_a_regular_readable_utf8_file(tmp_path):
    fifo = tmp_path / "exp.toml"
    os.mkfifo(fifo)
    with deadline(10):  # reading a FIFO would block for ever
        _refused(invoke(str(fifo), "--out", str(tmp_path / "o")), "not a regular file")
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'name = "caf\xe9"\n')
    _refused(invoke(str(latin), "--out", str(tmp_path / "o")), "not UTF-8 text")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.toml", "latin.toml"]


def test_results_paths_that_cannot_be_a_directory_are_refused_in_words(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('name = "g"\n[base]\ndriver.name = "xen"\n')
    afile = tmp_path / "afile"
    afile.write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    before = sorted(p.name for p in tmp_path.iterdir())
    cases = {
        str(afile / "below"): "a part of the path is a file, not a directory",
        str(afile): "exists and is not a directory",
        str(tmp_path / "dangling"): "a symbolic link that leads nowhere",
        str(tmp_path / "loop"): "a symbolic link that leads nowhere (or into a loop)",
        str(tmp_path / ("x" * 300)): "a name is too long",
    }
    for out, fragment in cases.items():
        with deadline(30):
            _refused(invoke(str(good), "--out", out, "--jobs", "1"), fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
def test_a_read_only_parent_is_refused(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('name = "g"\n[base]\ndriver.name = "xen"\n')
    parent = tmp_path / "ro"
    parent.mkdir(mode=0o555)
    _refused(invoke(str(good), "--out", str(parent / "out")), "is not writable")


def test_analyze_refuses_a_batch_that_is_still_running(tmp_path):
    import fcntl

    from balloonsim.experiment.store import check_not_running

    (tmp_path / ".lock").touch()
    fd = os.open(tmp_path / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(UserError, match="still being written"):
            check_not_running(tmp_path)
    finally:
        os.close(fd)
    check_not_running(tmp_path)


def test_run_starts_the_workers_forkserver_before_it_loads_the_experiment(tmp_path, monkeypatch):
    """The workers' forkserver imports the simulator (~0.3 s of CPU) while the runner imports its own libraries and
    loads the experiment, so it must be started first; `--dry-run` and `--jobs 1` run no workers and start none."""
    from balloonsim.experiment import forkserver, runner

    calls: list[tuple] = []
    monkeypatch.setattr(forkserver, "start_forkserver", lambda modules: calls.append(("forkserver", tuple(modules))))
    load = runner.load_experiment
    monkeypatch.setattr(runner, "load_experiment", lambda *a, **k: calls.append(("load",)) or load(*a, **k))
    path = tmp_path / "small.toml"
    path.write_text(EXPERIMENT.replace("replications = 2", "replications = 1").replace("[0, 5, 30]", "[0]"))
    out = tmp_path / "out"
    for args, expected in (
        (["--dry-run"], []),
        (["--jobs", "1", "--out", str(out / "1")], [("load",)]),
        (["--jobs", "2", "--out", str(out / "2")], [("forkserver", forkserver.SIMULATOR_MODULES), ("load",)]),
    ):
        calls.clear()
        result = invoke(str(path), "--no-report", "-q", *args)
        assert result.exit_code == 0, result.output
        assert calls == expected, args
    assert (out / "2" / "runs.csv").read_text() == (out / "1" / "runs.csv").read_text()


ENVIRON_PROBE = """
import json, os, sys, time
from balloonsim.experiment import forkserver
from balloonsim.environ import SETTINGS
forkserver.start_early(2, None)
import numpy
threads = len(os.listdir("/proc/self/task"))
import pyarrow
from multiprocessing import forkserver as mp_forkserver
time.sleep(0.05)
server = mp_forkserver._forkserver._forkserver_pid
environ = dict(
    item.split("=", 1) for item in open(f"/proc/{server}/environ").read().split("\\0") if "=" in item
)
print(json.dumps({
    "threads": threads,
    "pool": pyarrow.default_memory_pool().backend_name,
    "env": {name: os.environ.get(name) for name in SETTINGS},
    "server_env": {name: environ.get(name) for name in SETTINGS},
}))
"""


@pytest.mark.parametrize("user", [None, {"OPENBLAS_NUM_THREADS": "2", "ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}])
def test_balloonsim_run_sets_its_environment_unless_the_user_chose(user):
    """`balloonsim run` starts with one BLAS thread and Arrow's system allocator, in the runner and in the
    workers' forkserver (which inherits the runner's environment): OpenBLAS would otherwise start a thread per
    core when numpy loads, which spins for ~0.1 s of CPU, in both processes at once under --jobs 2; mimalloc kept
    the runner's freed tables resident. A user's own setting is kept."""
    env = {k: v for k, v in subprocess_env().items() if k not in SETTINGS}
    env.update(user or {})
    proc = subprocess.run(
        [sys.executable, "-c", ENVIRON_PROBE], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = json.loads(proc.stdout.strip().splitlines()[-1])
    assert said["env"] == said["server_env"] == {**SETTINGS, **(user or {})}
    assert said["pool"] == (user or SETTINGS)["ARROW_DEFAULT_MEMORY_POOL"]
    if user is None:
        assert said["threads"] == 1  # numpy loaded without a BLAS thread of its own


def test_the_early_forkserver_imports_what_the_executor_asks_for(monkeypatch):
    """A forkserver's preload is fixed once it runs: the one `balloonsim run` starts early must import what the
    executor's workers need (the simulator; and Dask for `--dask local`), and none starts where no local workers
    will run (`--jobs 1`, one core, a remote scheduler)."""
    from balloonsim.experiment import executors, forkserver

    asked: list[tuple[str, ...]] = []
    monkeypatch.setattr(forkserver, "start_forkserver", lambda modules: asked.append(tuple(modules)))
    monkeypatch.setattr(executors, "start_forkserver", lambda modules: asked.append(tuple(modules)))
    sim, dask = forkserver.SIMULATOR_MODULES, forkserver.DASK_WORKER_MODULES
    forkserver.start_early(2, None)
    executors.LocalProcesses(2, sim).start()
    assert asked == [sim, sim]
    asked.clear()
    forkserver.start_early(None, "local")
    assert asked == [(*dask, *sim)] and "distributed" in dask
    asked.clear()
    forkserver.start_early(1, None)
    forkserver.start_early(None, "tcp://127.0.0.1:8786")
    monkeypatch.setattr(forkserver.os, "cpu_count", lambda: 1)
    forkserver.start_early(None, None)
    assert asked == []
    monkeypatch.setattr(forkserver.os, "cpu_count", lambda: 4)
    forkserver.start_early(None, None)
    assert asked == [sim]
