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
