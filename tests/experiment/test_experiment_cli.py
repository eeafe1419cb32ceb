"""`balloonsim run` through the top-level CLI group: bad input, --dry-run, exit codes, the report hook."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner
from experiment_fakes import fake_run, flaky_run

from balloonsim.cli import cli
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


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_experiment_is_rejected_with_its_message(path, tmp_path, monkeypatch):
    (expected,) = header(path, "expect")
    args = [arg for line in header(path, "args") for arg in shlex.split(line)]
    monkeypatch.chdir(tmp_path)  # the default results/<name> would land here
    out = tmp_path / "out"
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
