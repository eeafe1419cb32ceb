"""Hostile conditions: signals at every step of the store, links planted in the results directory, growth and
re-runs of a finished directory. Stand-in runs (experiment_fakes) keep each case to a second or two."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from experiment_fakes import fake_run
from experiment_support import REPO, subprocess_env

from balloonsim.errors import UserError
from balloonsim.experiment import load_events, load_results, load_timeseries, run_experiment
from balloonsim.experiment.design import iter_runs
from balloonsim.experiment.spec import experiment_from_dict
from balloonsim.experiment.store import FlushPolicy

HERE = Path(__file__).resolve().parent
DOC = {"name": "h", "factors": {"fake.k": [1, 2, 3]}, "replications": 4, "seed": 5}

# A runner in its own process that sends itself SIGNAL at the COUNT-th call of HOOK (a function the store
# calls at one step of its protocol), then, after the signal, carries on as a real process would.
DRIVER = textwrap.dedent(
    """
    import os, sys, signal
    sys.path.insert(0, {here!r})
    from experiment_fakes import fake_run
    from balloonsim.experiment import experiment_from_dict, run_experiment
    from balloonsim.experiment.store import FlushPolicy
    import balloonsim.experiment.store as store, balloonsim.experiment.parts as parts
    import balloonsim.experiment.csvlog as csvlog

    hook, count, sig = {hook!r}, {count}, {sig}
    if hook:
        module, name = hook.split(":")
        target = {{"store": store, "parts": parts, "csvlog": csvlog}}[module]
        original, calls = getattr(target, name), [0]

        def wrapped(*args, **kwargs):
            calls[0] += 1
            if calls[0] == count:
                os.kill(os.getpid(), sig)
            return original(*args, **kwargs)

        setattr(target, name, wrapped)
    exp = experiment_from_dict({doc!r})
    run_experiment(exp, out_dir={out!r}, jobs={jobs}, run_fn=fake_run, events=True, flush=FlushPolicy(max_runs=3))
    """
)

# (function, which call): inside add (building the row), writing a part, appending rows, saving metadata
# and rewriting runs.csv, the merge's journal and renames.
KILL_POINTS = [
    ("store:factor_cells", 2),
    ("store:factor_cells", 7),
    ("parts:_write_parquet", 2),
    ("parts:fsync_dir", 3),
    ("csvlog:fsync_dir", 4),
    ("store:rewrite_rows", 1),
    ("parts:fsync_dir", 9),
    ("csvlog:fsync_dir", 12),
]


# With worker processes, runs come back in chunks of several: the same points, each run still committed once.
CHUNKED_KILL_POINTS = [("store:factor_cells", 7), ("parts:_write_parquet", 2), ("csvlog:fsync_dir", 4)]


def _run_driver(out: Path, hook: str = "", count: int = 0, sig: int = 0, jobs: int = 1) -> subprocess.CompletedProcess:
    code = DRIVER.format(here=str(HERE), hook=hook, count=count, sig=sig, doc=DOC, out=str(out), jobs=jobs)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
@pytest.mark.parametrize(
    ("hook", "count", "jobs"),
    [(h, c, 1) for h, c in KILL_POINTS] + [(h, c, 2) for h, c in CHUNKED_KILL_POINTS],
    ids=[f"{h}#{c}" for h, c in KILL_POINTS] + [f"{h}#{c}-jobs2" for h, c in CHUNKED_KILL_POINTS],
)
def test_a_signal_at_any_step_then_resume_keeps_every_run_once_with_all_its_parts(tmp_path, hook, count, jobs, sig):
    out = tmp_path / "out"
    first = _run_driver(out, hook, count, sig, jobs)
    if sig == signal.SIGKILL:
        assert first.returncode in (-signal.SIGKILL, 0), first.stderr
    else:
        assert first.returncode in (-signal.SIGINT, 0), first.stderr  # an uncaught KeyboardInterrupt: -SIGINT
        assert first.returncode == 0 or "KeyboardInterrupt" in first.stderr
    second = _run_driver(out, jobs=jobs)
    assert second.returncode == 0, second.stderr

    expected = [spec.run_id for spec in iter_runs(experiment_from_dict(DOC))]
    runs = load_results(out)
    assert list(runs["run_id"]) == expected  # each exactly once, in design order
    assert (runs["status"] == "ok").all()
    assert load_timeseries(out).groupby("run_id").size().to_dict() == dict.fromkeys(expected, 5)
    assert load_events(out).groupby("run_id").size().to_dict() == dict.fromkeys(expected, 2)
    assert Counter(pd.read_csv(out / "timing.csv", dtype={"run_id": str})["run_id"]) == Counter(expected)
    assert not (out / "timeseries.parts").exists() and not list(out.glob("*.tmp"))


def test_an_ok_run_whose_table_rows_are_missing_runs_again(tmp_path):
    exp = experiment_from_dict(DOC)
    out = tmp_path / "out"
    run_experiment(exp, out_dir=out, jobs=1, run_fn=fake_run, events=True)
    series = pd.read_parquet(out / "events.parquet")
    victim = series["run_id"].iloc[0]
    series[series["run_id"] != victim].to_parquet(out / "events.parquet", index=False)
    meta = json.loads((out / "metadata.json").read_text())
    meta["status"] = "interrupted"
    (out / "metadata.json").write_text(json.dumps(meta))
    summary = run_experiment(exp, out_dir=out, jobs=1, run_fn=fake_run, events=True)
    assert (summary.repaired, summary.ran) == (1, 1)
    assert load_events(out).groupby("run_id").size().to_dict() == dict.fromkeys(load_results(out)["run_id"], 2)


def test_a_corrupt_part_is_dropped_and_its_runs_run_again(tmp_path):
    exp = experiment_from_dict(DOC)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(exp, out_dir=out, jobs=1, run_fn=_interrupt_after(5), flush=FlushPolicy(max_runs=2))
    parts = sorted((out / "timeseries.parts").iterdir())
    parts[0].write_bytes(b"PAR1 not really")
    summary = run_experiment(exp, out_dir=out, jobs=1, run_fn=fake_run)
    assert summary.repaired == 2 and summary.ok == 12
    assert load_timeseries(out).groupby("run_id").size().eq(5).all()


def _interrupt_after(n: int):
    calls = [0]

    def run(config, seed):
        calls[0] += 1
        if calls[0] > n:
            raise KeyboardInterrupt
        return fake_run(config, seed)

    return run


# ---- links planted in a results directory ---------------------------------------------------------------


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


def test_links_planted_at_every_temporary_and_lock_path_write_nothing_outside(tmp_path):
    exp = experiment_from_dict(DOC)
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me\n")
    (outside / "dir").mkdir()
    run_experiment(exp.model_copy(update={"replications": 2}), out_dir=out, jobs=1, run_fn=fake_run, events=True)
    names = [
        "metadata.json.tmp",
        "runs.csv.tmp",
        "timing.csv.tmp",
        "experiment.toml.tmp",
        "timeseries.parquet.tmp",
        "events.parquet.tmp",
        "timeseries.merge.json.tmp",
        "metadata.json.x.tmp",
    ]
    for name in names:
        (out / name).symlink_to(outside / "precious.txt")
    (out / "timeseries.parts").symlink_to(outside / "dir")
    before = _tree_digest(outside)
    with pytest.raises(UserError, match="symbolic link"):  # more replications: the parts dir is needed
        run_experiment(exp, out_dir=out, jobs=1, run_fn=fake_run, events=True)
    assert _tree_digest(outside) == before
    (out / "timeseries.parts").unlink()
    run_experiment(exp, out_dir=out, jobs=1, run_fn=fake_run, events=True)
    assert _tree_digest(outside) == before
    assert len(load_results(out)) == 12

    lock = tmp_path / "lockdir"
    lock.mkdir()
    (lock / ".lock").symlink_to(outside / "new-file")
    with pytest.raises(UserError, match="symbolic link"):
        run_experiment(exp, out_dir=lock, jobs=1, run_fn=fake_run)
    assert not (outside / "new-file").exists()
    for name in ("runs.csv", "metadata.json"):
        target = tmp_path / f"planted-{name}"
        run_dir = tmp_path / f"with-{name}"
        run_experiment(exp, out_dir=run_dir, jobs=1, run_fn=fake_run)
        (run_dir / name).unlink()
        target.write_text("not yours\n")
        (run_dir / name).symlink_to(target)
        with pytest.raises(UserError):
            run_experiment(exp.model_copy(update={"replications": 5}), out_dir=run_dir, jobs=1, run_fn=fake_run)
        assert target.read_text() == "not yours\n"


# ---- provenance and growth --------------------------------------------------------------------------------


def test_rerunning_a_finished_experiment_changes_no_byte(tmp_path):
    exp = experiment_from_dict(DOC)
    out = tmp_path / "out"
    run_experiment(exp, out_dir=out, jobs=1, run_fn=fake_run)
    before = _tree_digest(out)
    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    summary = run_experiment(exp, out_dir=out, jobs=1, run_fn=fake_run)
    assert summary.unchanged and summary.ran == 0 and "nothing changed" in summary.text()
    assert _tree_digest(out) == before
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_more_replications_and_levels_run_only_the_new_runs_with_unchanged_seeds(tmp_path):
    out = tmp_path / "out"
    small = experiment_from_dict({**DOC, "replications": 2})
    run_experiment(small, out_dir=out, jobs=1, run_fn=fake_run)
    old = load_results(out).set_index("run_id")["seed"].to_dict()
    meta = json.loads((out / "metadata.json").read_text())

    more = experiment_from_dict(DOC)
    summary = run_experiment(more, out_dir=out, jobs=1, run_fn=fake_run)
    assert (summary.skipped, summary.ran) == (6, 6)
    rows = load_results(out)
    assert list(rows["run_id"]) == [spec.run_id for spec in iter_runs(more)]
    assert {rid: seed for rid, seed in zip(rows["run_id"], rows["seed"], strict=True) if rid in old} == old
    # the same runs as a fresh directory of the bigger experiment: more replications keep seeds anyway
    fresh = tmp_path / "fresh"
    run_experiment(more, out_dir=fresh, jobs=1, run_fn=fake_run)
    assert (fresh / "runs.csv").read_bytes() == (out / "runs.csv").read_bytes()

    wider = experiment_from_dict({**DOC, "factors": {"fake.k": [0, 1, 2, 3, 4]}})
    summary = run_experiment(wider, out_dir=out, jobs=1, run_fn=fake_run)
    assert (summary.skipped, summary.ran) == (12, 8)
    rows = load_results(out)
    assert list(rows["run_id"]) == [spec.run_id for spec in iter_runs(wider, summary_basis(out))]
    assert {rid: seed for rid, seed in zip(rows["run_id"], rows["seed"], strict=True) if rid in old} == old
    assert len(set(rows["seed"])) == len(rows)  # new points get seeds of their own
    after = json.loads((out / "metadata.json").read_text())
    assert after["seed_basis"] == meta["seed_basis"] and len(after["sessions"]) == 3
    assert after["commits"] == meta["commits"] or after["commits"][0] == meta["commits"][0]
    assert after["run_time_s"] == pytest.approx(sum(s["wall_time_s"] for s in after["sessions"]))

    with pytest.raises(UserError, match="level 0 of factor 'fake.k' is gone"):
        run_experiment(experiment_from_dict({**DOC, "factors": {"fake.k": [1, 2]}}), out_dir=out, run_fn=fake_run)
    with pytest.raises(UserError, match="replications lowered"):
        run_experiment(
            experiment_from_dict({**DOC, "replications": 1, "factors": {"fake.k": [0, 1, 2, 3, 4]}}),
            out_dir=out,
            run_fn=fake_run,
        )


def summary_basis(out: Path):
    from balloonsim.experiment.design import SeedBasis

    return SeedBasis.from_json(json.loads((out / "metadata.json").read_text())["seed_basis"])


def test_an_older_results_directory_is_read_but_not_extended(tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "metadata.json").write_text(json.dumps({"format": "balloonsim-results/1", "experiment": "h"}))
    (out / "runs.csv").write_text("run_id,index,replicate,seed,status,error,fake.k,score\na,0,0,1,ok,,1,2.5\n")
    with pytest.raises(UserError, match="older balloonsim .* --force"):
        run_experiment(experiment_from_dict(DOC), out_dir=out, jobs=1, run_fn=fake_run)
    assert load_results(out)["score"].tolist() == [2.5]
    summary = run_experiment(experiment_from_dict(DOC), out_dir=out, jobs=1, run_fn=fake_run, force=True)
    assert summary.ok == 12


def test_missing_or_corrupt_metadata_is_explained_and_force_starts_over(tmp_path):
    exp = experiment_from_dict(DOC)
    out = tmp_path / "out"
    run_experiment(exp, out_dir=out, jobs=1, run_fn=fake_run)
    for damage in ("{not json", None):
        if damage is None:
            (out / "metadata.json").unlink()
        else:
            (out / "metadata.json").write_text(damage)
        with pytest.raises(UserError, match="metadata.json is missing or unreadable.*--force"):
            run_experiment(exp, out_dir=out, jobs=1, run_fn=fake_run)
        assert run_experiment(exp, out_dir=out, jobs=1, run_fn=fake_run, force=True).ok == 12
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    with pytest.raises(UserError, match="holds no balloonsim results"):
        run_experiment(exp, out_dir=foreign, jobs=1, run_fn=fake_run, force=True)
    assert (foreign / "thesis.tex").exists()


def test_progress_lines_off_a_terminal():
    import io

    from balloonsim.experiment.progress import Progress

    stream = io.StringIO()
    progress = Progress(10, 2, "pressure", quiet=False, stream=stream, every_s=0.0)
    progress.advance(True)
    progress.advance(False)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("pressure: 3/10 runs (30%), 0 failed, ")
    assert "runs/s, ETA " in lines[0]
    assert lines[-1].startswith("pressure: 4/10 runs (40%), 1 failed, ")
    quiet = io.StringIO()
    Progress(10, 0, "p", quiet=True, stream=quiet, every_s=0.0).advance(True)
    assert quiet.getvalue() == ""


# ---- the data --------------------------------------------------------------------------------------------


def test_partial_backing_runs_csv_has_numeric_table_keys_and_readable_labels(tmp_path):
    from balloonsim.analysis.labels import level_text
    from balloonsim.experiment import load_experiment

    exp = load_experiment(REPO / "experiments" / "partial-backing.toml", ["replications=1"])
    out = tmp_path / "pb"
    run_experiment(exp, out_dir=out, jobs=1, run_fn=fake_run)
    header = (out / "runs.csv").read_text().splitlines()[0].split(",")
    assert "index" not in header
    columns = ["driver", "driver.name", "driver.request_offset", "driver.populate_memmap_first"]
    assert header[5:10] == ["memmap.strategy", *columns]
    runs = pd.read_csv(out / "runs.csv")
    assert pd.api.types.is_numeric_dtype(runs["driver.request_offset"])
    assert sorted(runs["driver.request_offset"].dropna().unique()) == [0, 2 << 20, 16 << 20, 64 << 20, 120 << 20]
    assert set(runs["driver"]) == {level_text("driver", level) for level in exp.factors["driver"]}
    assert "hyperv request_offset=2M" in set(runs["driver"])
    assert list(runs["run_id"]) == [spec.run_id for spec in iter_runs(exp)]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["factors"] == ["memmap.strategy", "driver"] and meta["factor_columns"]["driver"] == columns
    assert meta["metrics"] == ["score", "blocks", "oom", "label"]

    series = load_timeseries(out).merge(runs[["run_id", "memmap.strategy", *columns]], on="run_id")
    assert len(series) == 5 * len(runs) and series["driver.name"].notna().all()


def test_sizes_are_stored_as_numbers(tmp_path):
    exp = experiment_from_dict({"name": "g", "factors": {"guest.block_size": ["128M", "2G"]}})
    from balloonsim.experiment.validation import validate_runs

    validate_runs(exp)
    out = tmp_path / "g"
    run_experiment(exp, out_dir=out, jobs=1, run_fn=fake_run, check_runs=False)
    assert pd.read_csv(out / "runs.csv")["guest.block_size"].tolist() == [128 << 20, 2 << 30]
