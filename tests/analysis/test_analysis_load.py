"""A broken results directory gives one UserError naming the file, not a stack trace."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from balloonsim.analysis import analyze
from balloonsim.analysis.load import load
from balloonsim.errors import UserError


def test_missing_directory(tmp_path):
    with pytest.raises(UserError, match="no such results directory"):
        load(tmp_path / "nope")


@pytest.mark.parametrize(
    ("name", "breakage", "message"),
    [
        ("runs.csv", lambda p: p.unlink(), "runs.csv: missing"),
        ("runs.csv", lambda p: p.write_text(""), "runs.csv: empty file"),
        ("runs.csv", lambda p: p.write_text('run_id,status\n"a,ok\n'), "runs.csv: not a readable CSV"),
        ("runs.csv", lambda p: p.write_text("run_id,x\n1,2\n"), "runs.csv: missing column"),
        ("metadata.json", lambda p: p.unlink(), "metadata.json: missing"),
        ("metadata.json", lambda p: p.write_text("{not json"), "metadata.json: not valid JSON"),
        ("metadata.json", lambda p: p.write_text("[1, 2]"), "metadata.json: expected a JSON object"),
        (
            "metadata.json",
            lambda p: p.write_text(json.dumps({"factors": ["ghost"]})),
            "runs.csv: factor column",
        ),
    ],
)
def test_broken_files_name_the_file(planted_dir, name, breakage, message):
    breakage(planted_dir / name)
    with pytest.raises(UserError, match=message) as info:
        analyze(planted_dir)
    assert name in str(info.value) or "runs.csv" in str(info.value)


def test_all_runs_failed(planted_dir):
    runs = pd.read_csv(planted_dir / "runs.csv")
    runs["status"] = "failed"
    runs["error"] = "ValueError: boom"
    runs.to_csv(planted_dir / "runs.csv", index=False)
    with pytest.raises(UserError, match="no successful runs.*boom"):
        load(planted_dir)


def test_failed_runs_are_set_aside_and_bools_become_numbers(planted_dir):
    runs = pd.read_csv(planted_dir / "runs.csv")
    runs.loc[:2, "status"] = "failed"
    runs.loc[:2, "oom_kills"] = None
    runs.to_csv(planted_dir / "runs.csv", index=False)
    results = load(planted_dir)
    assert len(results.failed) == 3 and len(results.runs) == 37
    assert results.runs["guest_crashed"].dtype == float
    assert results.varying_factors == ["memmap.strategy"]


def test_unknown_by_is_a_user_error(planted_dir):
    with pytest.raises(UserError, match="--by 'ghost' is not a factor"):
        analyze(planted_dir, by="ghost")


def test_time_series_of_a_few_runs_decode_only_their_row_groups(tmp_path, monkeypatch):
    """The time line reads a few runs of a batch: only the row groups that hold them are decoded (run ids are
    hashes and the rows in design order, so Parquet statistics cannot skip any, and pd.read_parquet's filter
    decoded the whole file), and the frame is the one pd.read_parquet's filter gives: values, dtypes, order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from balloonsim.analysis import load as load_module
    from balloonsim.experiment import parts

    monkeypatch.setattr(parts, "ROW_GROUP_ROWS", 10)
    order = [f"{n:02x}{'fedcba'[n % 6]}" for n in range(12)]
    data = parts.PartDataset(tmp_path, "timeseries")
    for chunk in (order[6:], order[:6]):
        data.write_part(
            [
                pa.table(
                    {
                        "run_id": [rid] * 7,
                        "t": [float(t) for t in range(7)],
                        "memfree_bytes": [None if t == 3 else t << 20 for t in range(7)],
                        "psi_some": [t / 7 for t in range(7)],
                        "note": [None if t % 2 else f"{rid}:{t}" for t in range(7)],
                    }
                )
                for rid in chunk
            ]
        )
    data.finalize(order)
    wanted = [order[1], order[7], order[8]]
    decoded: list[list[int]] = []
    read_row_groups = pq.ParquetFile.read_row_groups

    def recorded(self, groups, *args, **kwargs):
        decoded.append(list(groups))
        return read_row_groups(self, groups, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", recorded)
    got = load_module._read_table(tmp_path, "timeseries", wanted)
    holding = {row // 10 for rid in wanted for row in range(order.index(rid) * 7, order.index(rid) * 7 + 7)}
    assert decoded == [sorted(holding)] and len(holding) < pq.ParquetFile(data.final).num_row_groups
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", read_row_groups)
    expected = pd.read_parquet(data.final, filters=[("run_id", "in", wanted)])
    expected["run_id"] = expected["run_id"].astype(str)
    expected = expected.sort_values(["run_id", "t"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)
    assert set(got["run_id"]) == set(wanted) and len(got) == 21
