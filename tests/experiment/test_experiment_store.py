"""The result store: torn lines, resume, refusing a different experiment, staged tables seen exactly once."""

from __future__ import annotations

import json
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from experiment_fakes import CALLS, counting_run, fake_run, flaky_run

from balloonsim.errors import UserError
from balloonsim.experiment import load_results, load_timeseries, run_experiment
from balloonsim.experiment.columns import to_arrow
from balloonsim.experiment.csvlog import CsvLog, format_line, recover, rewrite_rows
from balloonsim.experiment.design import iter_runs
from balloonsim.experiment.parts import PartDataset
from balloonsim.experiment.spec import experiment_from_dict
from balloonsim.experiment.store import (
    ResultStore,
    StoreOptions,
    metric_order,
    ok_run_ids,
)
from balloonsim.experiment.worker import execute_run


def make(**doc):
    doc.setdefault("name", "t")
    doc.setdefault("factors", {"a": [1, 2, 3]})
    doc.setdefault("replications", 2)
    return experiment_from_dict(doc)


def run(exp, out, **kw):
    kw.setdefault("jobs", 1)
    kw.setdefault("run_fn", fake_run)
    return run_experiment(exp, out_dir=out, **kw)


# ---- csvlog ---------------------------------------------------------------------------------------------


def test_format_line_is_one_line_per_row():
    assert format_line(["a", 1, 0.1, True, None, {"b": 1, "a": [1]}]) == 'a,1,0.1,true,,"{""a"":[1],""b"":1}"\n'
    assert format_line(["two\nlines", "x,y"]) == 'two lines,"x,y"\n'
    assert format_line([float("nan"), float("inf"), 1e-300]) == "nan,inf,1e-300\n"


def test_recover_drops_torn_line_failed_rows_and_duplicates(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text(
        "run_id,status,v\na,ok,1\nb,failed,\nc,ok,3\na,ok,1\nb,ok,2\nd,ok,4\ne,o"  # torn by a crash mid-write
    )
    header, kept = recover(path, "run_id", lambda row: row["status"] == "ok")
    assert header == ["run_id", "status", "v"]
    assert kept == {"a", "b", "c", "d"}
    assert path.read_text() == "run_id,status,v\nc,ok,3\na,ok,1\nb,ok,2\nd,ok,4\n"
    assert not (tmp_path / "runs.csv.tmp").exists()


def test_recover_of_a_torn_header_starts_over(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("run_id,sta")
    assert recover(path, "run_id", lambda row: True) == (None, set())
    assert not path.exists()


def test_csvlog_appends_and_widens(tmp_path):
    path = tmp_path / "x.csv"
    log = CsvLog(path, ["run_id", "a"])
    log.append([{"run_id": "r1", "a": 1}])
    log.add_columns(["b", "a"])
    log.append([{"run_id": "r2", "a": 2, "b": "x"}])
    log.close()
    assert path.read_text() == "run_id,a,b\nr1,1,\nr2,2,x\n"
    reopened = CsvLog(path, ["run_id", "a", "b"])
    reopened.close()
    with pytest.raises(ValueError):
        CsvLog(path, ["run_id"])


# ---- batches and resume ---------------------------------------------------------------------------------


def test_batch_writes_every_file(tmp_path):
    exp = make()
    summary = run(exp, tmp_path / "out", events=True)
    assert (summary.total, summary.ok, summary.failed, summary.skipped) == (6, 6, 0, 0)
    out = summary.out_dir
    names = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert names == {
        "runs.csv",
        "timing.csv",
        "metadata.json",
        "experiment.toml",
        "timeseries.parquet",
        "events.parquet",
    }
    runs = load_results(out)
    assert list(runs.columns) == [
        "run_id",
        "replicate",
        "seed",
        "status",
        "error",
        "a",
        "score",
        "blocks",
        "oom",
        "label",
    ]
    assert sorted(runs["run_id"]) == sorted(s.run_id for s in iter_runs(exp))
    assert (runs["status"] == "ok").all() and (runs["error"] == "").all()
    series = pd.read_parquet(out / "timeseries.parquet")
    assert list(series.columns) == ["run_id", "t", "used"]
    assert series.groupby("run_id").size().to_dict() == {rid: 5 for rid in runs["run_id"]}
    events = pd.read_parquet(out / "events.parquet")
    assert len(events) == 12
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["status"] == "complete"
    assert meta["counts"] == {"runs": 6, "ok": 6, "failed": 0, "pending": 0}
    assert meta["factors"] == ["a"] and meta["metrics"] == ["score", "blocks", "oom", "label"]
    assert meta["source"]["design_sha256"] == exp.design_sha256
    assert meta["environment"]["packages"]["pandas"] == pd.__version__
    assert meta["executor"] == "in-process (1 worker)"
    timing = pd.read_csv(out / "timing.csv")
    assert list(timing.columns) == ["run_id", "wall_time_s", "worker", "timeseries_rows", "events_rows"]
    assert len(timing) == 6 and (timing["timeseries_rows"] == 5).all() and (timing["events_rows"] == 2).all()


def test_failed_runs_are_recorded_and_retried_on_resume(tmp_path):
    exp = make()
    out = tmp_path / "out"
    first = run(exp, out, run_fn=flaky_run)
    odd = [s for s in iter_runs(exp) if s.seed % 2]
    assert odd, "the fixed seeds happen to include odd ones"
    assert (first.failed, first.ok, first.status) == (len(odd), 6 - len(odd), "incomplete")
    rows = load_results(out)
    failed = rows[rows["status"] == "failed"]
    assert set(failed["run_id"]) == {s.run_id for s in odd}
    assert failed["error"].str.startswith("ValueError: odd seed").all()
    assert failed["score"].isna().all()

    CALLS.clear()
    second = run(exp, out, run_fn=counting_run)
    assert sorted(CALLS) == sorted(s.seed for s in odd)
    assert (second.ok, second.failed, second.skipped, second.status) == (6, 0, 6 - len(odd), "complete")
    rows = load_results(out)
    assert len(rows) == 6 and (rows["status"] == "ok").all()
    assert len((out / "runs.csv").read_text().splitlines()) == 7
    assert pd.read_parquet(out / "timeseries.parquet").groupby("run_id").size().eq(5).all()
    assert len(json.loads((out / "metadata.json").read_text())["sessions"]) == 2

    CALLS.clear()
    third = run(exp, out, run_fn=counting_run)
    assert CALLS == [] and third.skipped == 6 and third.ran == 0


def test_error_text_is_one_line(tmp_path):
    exp = make(factors={"fake.fail": [True]}, replications=1)
    summary = run(exp, tmp_path / "out")
    assert summary.failed == 1
    (error,) = load_results(summary.out_dir)["error"]
    assert error.startswith("RuntimeError: injected failure for seed ")
    assert "\n" not in (summary.out_dir / "runs.csv").read_text().split("\n", 1)[1].rstrip("\n")


def test_different_experiment_is_refused_without_force(tmp_path):
    out = tmp_path / "out"
    run(make(), out)
    before = (out / "runs.csv").read_bytes()
    with pytest.raises(UserError, match="holds results of a different experiment"):
        run(make(factors={"a": [1, 2, 4]}), out)
    assert (out / "runs.csv").read_bytes() == before
    summary = run(make(factors={"a": [1, 2, 4]}), out, force=True)
    assert summary.skipped == 0 and summary.ok == 6
    assert set(load_results(out)["a"]) == {1, 2, 4}


def test_changed_options_are_refused(tmp_path):
    out = tmp_path / "out"
    run(make(), out)
    with pytest.raises(UserError, match="resume with the same options"):
        run(make(), out, timeseries="csv")


def test_foreign_directory_is_refused_even_with_force(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    for force in (False, True):
        with pytest.raises(UserError, match="holds no balloonsim results"):
            run(make(), out, force=force)
    assert (out / "notes.txt").read_text() == "precious"


def test_empty_existing_directory_is_used(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert run(make(), out).ok == 6


def test_timeseries_csv(tmp_path):
    exp = make()
    out = tmp_path / "out"
    run(exp, out, run_fn=flaky_run, timeseries="csv")
    run(exp, out, timeseries="csv")
    series = pd.read_csv(out / "timeseries.csv", dtype={"run_id": str})
    assert series.groupby("run_id").size().to_dict() == {s.run_id: 5 for s in iter_runs(exp)}
    assert list(series.columns) == ["run_id", "t", "used"]
    assert len(load_timeseries(out)) == 30


# ---- crash states ---------------------------------------------------------------------------------------


def _table(rid, n=3):
    return pa.table({"run_id": [rid] * n, "t": [float(i) for i in range(n)]})


def test_parts_of_uncommitted_runs_are_dropped_on_recover(tmp_path):
    data = PartDataset(tmp_path, "timeseries")
    data.write_part([_table("a"), _table("b")])
    data.write_part([_table("c")])
    (data.parts_dir / "part-000002.parquet.tmp").write_bytes(b"torn")
    data.recover_merge()
    data.recover({"a", "x"})
    assert [p.name for p in data.parts()] == ["part-000000.parquet"]
    assert not list(data.parts_dir.glob("*.tmp"))
    assert set(pq.read_table(data.parts()[0])["run_id"].to_pylist()) == {"a"}
    data.finalize()
    assert not data.parts_dir.exists()
    assert pq.read_table(tmp_path / "timeseries.parquet")["run_id"].to_pylist() == ["a"] * 3


def test_finalize_merges_previous_file_and_widens_schema(tmp_path):
    data = PartDataset(tmp_path, "timeseries")
    data.write_part([_table("a")])
    data.finalize()
    data = PartDataset(tmp_path, "timeseries")
    data.write_part([pa.table({"run_id": ["b"], "t": [1], "extra": ["x"]})])
    data.finalize()
    merged = pd.read_parquet(tmp_path / "timeseries.parquet")
    assert list(merged.columns) == ["run_id", "t", "extra"]
    assert merged["run_id"].tolist() == ["a", "a", "a", "b"]
    assert merged["extra"].isna().sum() == 3


@pytest.mark.parametrize("stage", ["tmp-only", "journal-and-tmp", "journal-after-replace"])
def test_crash_during_finalize_never_loses_or_duplicates(tmp_path, stage):
    data = PartDataset(tmp_path, "timeseries")
    data.write_part([_table("a")])
    data.finalize()
    data = PartDataset(tmp_path, "timeseries")
    part = data.write_part([_table("b")])
    tmp = tmp_path / "timeseries.parquet.tmp"
    if stage == "tmp-only":
        tmp.write_bytes(b"half a parquet file")
    elif stage == "journal-and-tmp":
        tmp.write_bytes(b"half a parquet file")
        data.journal.write_text(json.dumps({"parts": [part.name]}))
    else:  # merged file in place, parts not yet deleted
        pq.write_table(pa.concat_tables([_table("a"), _table("b")]), tmp_path / "timeseries.parquet")
        data.journal.write_text(json.dumps({"parts": [part.name]}))
    data = PartDataset(tmp_path, "timeseries")
    data.recover_merge()
    data.recover({"a", "b"})
    data.finalize()
    counts = pd.read_parquet(tmp_path / "timeseries.parquet").groupby("run_id").size().to_dict()
    assert counts == {"a": 3, "b": 3}
    assert not tmp.exists() and not data.journal.exists()


def test_store_resume_after_crash_between_part_and_rows(tmp_path):
    """Parts written, rows not yet: those runs are redone, and their first tables are not kept."""
    exp = make()
    out = tmp_path / "out"
    specs = list(iter_runs(exp))
    store = ResultStore.open(out, exp, StoreOptions())
    for spec in specs[:2]:
        store.add(spec, execute_run(spec, fake_run))
    store.flush()
    for spec in specs[2:4]:
        store.add(spec, execute_run(spec, fake_run))
    entries = store._pending.entries
    store.timeseries.write_part([e.timeseries for e in entries])  # the crash comes right after the part
    store._timing.append([e.timing for e in entries])
    with open(out / "runs.csv", "a") as handle:
        handle.write(specs[2].run_id + ",0,0,12")  # and a torn row
    os.close(store._lock)  # the process dies: its lock goes with it

    assert ok_run_ids(out) == {specs[0].run_id, specs[1].run_id}
    summary = run(exp, out)
    assert (summary.skipped, summary.ok) == (2, 6)
    rows = load_results(out)
    assert sorted(rows["run_id"]) == sorted(s.run_id for s in specs)
    assert pd.read_parquet(out / "timeseries.parquet").groupby("run_id").size().eq(5).all()
    assert pd.read_csv(out / "timing.csv")["run_id"].value_counts().eq(1).all()


def test_interrupted_batch_keeps_finished_runs_and_readers_see_them_once(tmp_path):
    exp = make()
    out = tmp_path / "out"

    class Boom(KeyboardInterrupt):
        pass

    calls = []

    def interrupt_third(config, seed):
        calls.append(seed)
        if len(calls) == 3:
            raise Boom
        return fake_run(config, seed)

    with pytest.raises(Boom):
        run(exp, out, run_fn=interrupt_third)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["status"] == "interrupted"
    assert (out / "timeseries.parts").is_dir()  # not merged: the next run will
    assert len(load_results(out)) == 2
    assert load_timeseries(out).groupby("run_id").size().to_dict() == {rid: 5 for rid in load_results(out)["run_id"]}
    assert run(exp, out).skipped == 2
    assert not (out / "timeseries.parts").exists()


def test_metric_columns_that_vary_get_a_canonical_order(tmp_path):
    exp = make(factors={"fake.extra_metric": [False, True]}, replications=1)
    out = tmp_path / "out"
    run(exp, out)
    header = (out / "runs.csv").read_text().splitlines()[0].split(",")
    assert header[5:] == ["fake.extra_metric", "score", "blocks", "oom", "label", "extra"]

    path = tmp_path / "r.csv"
    path.write_text("run_id,replicate,seed,status,error,z,a\nx,0,1,ok,,1,\ny,0,2,ok,,,2\n")
    rewrite_rows(path, ["run_id", "replicate", "seed", "status", "error", "a", "z"], ["y", "x"])
    assert path.read_text() == "run_id,replicate,seed,status,error,a,z\ny,0,2,ok,,2,\nx,0,1,ok,,,1\n"


def test_metric_order_does_not_depend_on_completion_order():
    common = ["oom", "stall"]
    xen, hv = [*common, "xen_a", "xen_b"], [*common, "hv_a"]
    assert metric_order([hv, xen]) == metric_order([xen, hv]) == ["oom", "stall", "xen_a", "xen_b", "hv_a"]
    assert metric_order([["a", "c"], ["a", "b", "c"]]) == ["a", "b", "c"]
    assert metric_order([]) == []


def test_metric_named_like_a_fixed_column_is_prefixed(tmp_path):
    exp = make(factors={"a": [1]}, replications=1)

    def clash(config, seed):
        result = fake_run(config, seed)
        result.metrics = {"seed": 1, "a": 2, "ok": 3}
        return result

    summary = run(exp, tmp_path / "out", run_fn=clash)
    assert list(load_results(summary.out_dir).columns)[5:] == ["a", "metric.seed", "metric.a", "ok"]


def test_a_second_writer_is_refused_while_a_batch_holds_the_directory(tmp_path):
    exp = make()
    out = tmp_path / "out"
    store = ResultStore.open(out, exp, StoreOptions())
    with pytest.raises(UserError, match="being written by another balloonsim run"):
        run(exp, out)
    store.close("interrupted", {}, finalize=False)
    assert run(exp, out).ok == 6


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_per_run_tables_are_the_same_bytes_whatever_order_the_runs_finished_in(tmp_path, monkeypatch, fmt):
    """Same seed, same bytes: the time series and events files hold the runs in design order, with their columns
    in one order and Parquet row groups of a fixed size, so batches whose runs finished in different orders and
    were flushed at different points write the same bytes, as does a batch interrupted and resumed (its parts
    merged, or its earlier final file merged with the new parts)."""
    from balloonsim.experiment import parts

    monkeypatch.setattr(parts, "ROW_GROUP_ROWS", 7)  # runs of 5 rows straddle row groups
    monkeypatch.setattr(parts, "ROW_GROUPS_CACHED", 1)  # a source is read again whenever the merge returns to it
    exp = make(factors={"a": [1, 2, 3, 4]}, replications=3)
    options = StoreOptions(timeseries=fmt, events=True)

    def batch(out, order, flush_every, sessions=1, finalize_between=False):
        done = 0
        for session in range(sessions):
            store = ResultStore.open(out, exp, options)
            specs = {spec.run_id: spec for spec in store.iter_runs()}
            ids = order(list(specs))
            todo = [rid for rid in ids if rid not in store.done][: len(ids) // sessions + 1]
            for rid in todo:
                store.add(specs[rid], execute_run(specs[rid], fake_run, True))
                done += 1
                if done % flush_every == 0:
                    store.flush()
            last = session == sessions - 1
            store.close("complete" if last else "interrupted", {}, finalize=last or finalize_between)
        return [(out / name).read_bytes() for name in ("runs.csv", f"timeseries.{fmt}", f"events.{fmt}")]

    straight = batch(tmp_path / "straight", lambda ids: ids, flush_every=100)
    assert batch(tmp_path / "reversed", lambda ids: ids[::-1], flush_every=1) == straight
    shuffled = lambda ids: [ids[i] for i in (5, 0, 11, 3, 8, 1, 10, 2, 7, 4, 9, 6)]  # noqa: E731
    assert batch(tmp_path / "resumed", shuffled, flush_every=2, sessions=2) == straight
    assert batch(tmp_path / "merged", shuffled, flush_every=3, sessions=3, finalize_between=True) == straight
    store = ResultStore.open(tmp_path / "straight", exp, options)
    design = [spec.run_id for spec in store.iter_runs()]
    store.close("complete", {})
    series = load_timeseries(tmp_path / "straight")
    assert list(dict.fromkeys(series["run_id"])) == design and len(series) == 5 * len(design)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_merge_decodes_a_few_row_groups_however_many_runs_a_part_holds(tmp_path, monkeypatch, fmt):
    """A part is written in row groups of ROW_GROUP_ROWS rows, so the merge, which decodes one row group at a
    time and keeps the last ROW_GROUPS_CACHED, holds at most their product in rows: a runner's memory at the end
    of a batch does not grow with the runs a flush put in one part (a part of 80 three-hour runs was one row
    group of 86,400 rows, and the merge of a 720-run batch peaked 105 MiB above the batch)."""
    from balloonsim.experiment import parts

    monkeypatch.setattr(parts, "ROW_GROUP_ROWS", 16)
    monkeypatch.setattr(parts, "ROW_GROUPS_CACHED", 2)
    held: list[int] = []
    get = parts._RowGroups.get

    def counted(self, source, group):
        table = get(self, source, group)
        held.append(sum(t.num_rows for t in self._cache.values()))
        return table

    monkeypatch.setattr(parts._RowGroups, "get", counted)
    data = PartDataset(tmp_path, "timeseries", fmt)
    order = [f"r{i}" for i in range(12)]
    data.write_part([_table(rid, 25) for rid in order[1::2]])  # one flush of six runs, then another
    data.write_part([_table(rid, 25) for rid in order[::2]])
    groups = [pq.ParquetFile(p).metadata for p in data.parts()]
    assert all(m.row_group(g).num_rows <= 16 for m in groups for g in range(m.num_row_groups))
    data.finalize(order)
    assert held and max(held) <= 2 * 16
    merged = pd.read_parquet(data.final) if fmt == "parquet" else pd.read_csv(data.final)
    assert list(merged["run_id"]) == [rid for rid in order for _ in range(25)]
    assert list(merged["t"]) == [float(i) for _ in order for i in range(25)]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_final_file_that_lost_a_run_is_merged_again(tmp_path, monkeypatch, fmt):
    """A run found incomplete on resume leaves the final file; if nothing new is merged after (it failed again),
    the final file is still rewritten as a merge writes it: the same bytes as a batch in which that run failed."""
    from balloonsim.experiment import parts

    monkeypatch.setattr(parts, "ROW_GROUP_ROWS", 4)
    order = ["a", "b", "c"]
    (tmp_path / "whole").mkdir()
    whole = PartDataset(tmp_path / "whole", "timeseries", fmt)
    whole.write_part([_table("a"), _table("b"), _table("c")])
    whole.finalize(order)
    whole.recover({"a", "c"})
    whole.finalize(order)
    (tmp_path / "without").mkdir()
    without = PartDataset(tmp_path / "without", "timeseries", fmt)
    without.write_part([_table("c")])
    without.write_part([_table("a")])
    without.finalize(order)
    assert whole.final.read_bytes() == without.final.read_bytes()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_row_counts_are_counted_a_row_group_at_a_time(tmp_path, monkeypatch, fmt):
    """A resume checks every committed run's rows against timing.csv: the rows per run id of the final file
    and the parts, counted by Arrow one row group (or CSV block) at a time, never every row's run id at once
    (as Python strings that was 130 MiB for a 720-run sweep-180 batch)."""
    from collections import Counter

    from balloonsim.experiment import parts

    monkeypatch.setattr(parts, "ROW_GROUP_ROWS", 4)
    data = PartDataset(tmp_path, "timeseries", fmt)
    data.write_part([_table("a", 5), _table("b", 2)])
    data.finalize(["b", "a"])
    data = PartDataset(tmp_path, "timeseries", fmt)  # the next session
    data.write_part([_table("c", 6), _table("a", 1)])  # a part beside the final file (a retried run's rows too)
    data.write_part([_table("d", 3)])
    (data.parts_dir / "part-000009.parquet").write_bytes(b"not parquet")  # a torn part: deleted, not counted
    read_whole = []
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: read_whole.append(a) or pytest.fail("read whole"))
    groups = []
    read_row_group = pq.ParquetFile.read_row_group

    def one_group(self, i, columns=None, **kwargs):
        groups.append(columns)
        return read_row_group(self, i, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", one_group)
    assert data.row_counts() == Counter({"a": 6, "b": 2, "c": 6, "d": 3})
    assert not read_whole and groups and all(columns == ["run_id"] for columns in groups)
    assert len(groups) == (2 + 1 if fmt == "csv" else 2 + 2 + 1)  # parts of 7 and 3 rows; the final file's 2 groups
    assert not (data.parts_dir / "part-000009.parquet").exists()


def test_runs_dropped_on_resume_are_filtered_out_a_row_group_at_a_time(tmp_path, monkeypatch):
    """A resume that finds a run incomplete drops its rows from the final file (which may hold a whole study's
    time series) and from the parts, copying them a row group at a time, never reading a file whole."""
    from balloonsim.experiment import parts

    monkeypatch.setattr(parts, "ROW_GROUP_ROWS", 4)
    data = PartDataset(tmp_path, "timeseries")
    data.write_part([_table("a", 5), _table("b", 6), _table("c", 3)])
    data.finalize(["a", "b", "c"])
    data = PartDataset(tmp_path, "timeseries")  # the next session
    data.write_part([_table("d", 5), _table("e", 2)])
    read_table = pq.read_table

    def by_column(source, columns=None, **kwargs):
        assert columns is not None, f"{source} read whole"
        return read_table(source, columns=columns, **kwargs)

    monkeypatch.setattr(pq, "read_table", by_column)
    data.recover({"a", "c", "e"})
    monkeypatch.setattr(pq, "read_table", read_table)
    final = pq.read_table(data.final).to_pydict()
    assert final["run_id"] == ["a"] * 5 + ["c"] * 3 and final["t"] == [*map(float, range(5)), 0.0, 1.0, 2.0]
    assert pq.read_table(data.parts()[0]).to_pydict() == {"run_id": ["e", "e"], "t": [0.0, 1.0]}
    data.finalize(["a", "b", "c", "d", "e"])
    assert pq.read_table(data.final)["run_id"].to_pylist() == ["a"] * 5 + ["c"] * 3 + ["e"] * 2


def test_a_flush_is_due_once_the_buffered_tables_reach_max_bytes(tmp_path):
    """FlushPolicy.max_bytes bounds what a runner buffers between flushes, whatever max_runs and max_age_s allow."""
    from balloonsim.experiment.store import FlushPolicy

    exp = make(replications=4)
    specs = list(iter_runs(exp))
    outcome = execute_run(specs[0], fake_run, True)
    one = sum(t.get_total_buffer_size() for t in (to_arrow("x", outcome.timeseries), to_arrow("x", outcome.events)))
    policy = FlushPolicy(max_runs=1000, max_bytes=3 * one - 1, max_age_s=3600.0)
    store = ResultStore.open(tmp_path / "out", exp, StoreOptions(events=True), policy=policy)
    due = []
    for spec in specs[:4]:
        store.add(spec, execute_run(spec, fake_run, True))
        due.append(store.due())
    assert due == [False, False, True, True]
    store.flush()
    assert not store.due()
    store.close("interrupted", {}, finalize=False)
