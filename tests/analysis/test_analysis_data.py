"""What the analysis writes beside the runs: metrics.csv, progress lines, the results index; and runs.csv read
whichever way the runner spells a table-valued factor."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_synth import planted, table_factor, write_results
from click.testing import CliRunner

from balloonsim.analysis import analyze, finish
from balloonsim.analysis import cli as analysis_cli
from balloonsim.analysis.index import write_index
from balloonsim.analysis.load import RESERVED, load
from balloonsim.analysis.metrics import TABLE, describe
from balloonsim.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.parent for p in (ROOT / "results").glob("*/runs.csv"))


@pytest.mark.parametrize("study", SHIPPED, ids=lambda p: p.name)
def test_the_shipped_metrics_csv_says_what_the_code_measures(study):
    """A study re-run byte-identical keeps its old metrics.csv; when a metric's definition changes, every shipped
    study's metrics.csv must be written again (`balloonsim analyze results/NAME`), not only the re-run ones."""
    shipped = pd.read_csv(study / "metrics.csv").set_index("name")
    current = describe(list(shipped.index)).set_index("name")
    stale = [n for n in shipped.index if shipped.loc[n, "definition"] != current.loc[n, "definition"]]
    assert stale == []


@pytest.mark.parametrize("study", SHIPPED, ids=lambda p: p.name)
def test_every_metric_column_of_the_shipped_runs_is_described(study):
    results = load(study)
    header = pd.read_csv(study / "runs.csv", nrows=0).columns
    keys = {c for c in header for f in results.factors if c.startswith(f + ".")}  # a table-valued level's keys
    metric_columns = [c for c in header if c not in RESERVED and c not in results.factors and c not in keys]
    assert sorted(set(metric_columns) - set(TABLE)) == []
    assert set(metric_columns) <= set(results.columns)


def test_metrics_csv_describes_every_column(finished_dir):
    table = pd.read_csv(finished_dir / "metrics.csv")
    assert list(table.columns) == ["name", "unit", "direction", "definition", "producer"]
    results = load(finished_dir)
    assert set(results.columns) <= set(table["name"])
    assert "blocks_removable_fraction" not in set(table["name"])  # no blocks_added_end in this data
    row = table.set_index("name").loc["memmap_bytes_unbacked"]
    assert row["unit"] == "bytes" and row["direction"] == "lower is better"
    assert "never backed" in row["definition"] and "not memmap placed on unbacked memory" in row["definition"]
    assert not table["definition"].str.startswith("not described").any()
    summary = pd.read_csv(finished_dir / "summary.csv")
    sizes = summary[summary["metric"] == "memmap_bytes_kmalloc"]["mean"]
    assert pd.api.types.is_float_dtype(sizes) and sizes.max() > 1 << 20  # bytes, as numbers


def test_an_unknown_metric_is_listed_as_undescribed(tmp_path):
    root = planted(tmp_path / "plugin")
    runs = pd.read_csv(root / "runs.csv").assign(frobnications=3)
    runs.to_csv(root / "runs.csv", index=False)
    meta = json.loads((root / "metadata.json").read_text())
    meta["metrics"].append("frobnications")
    (root / "metadata.json").write_text(json.dumps(meta))
    analyze(root)
    row = pd.read_csv(root / "metrics.csv").set_index("name").loc["frobnications"]
    assert row["definition"].startswith("not described") and row["producer"].startswith("unknown")


def test_describe_command(planted_dir):
    runner = CliRunner()
    everything = runner.invoke(analysis_cli.analyze, ["--describe"])
    assert everything.exit_code == 0 and f"{len(TABLE)} metrics" in everything.output
    assert "\nguest_crashed  [0/1 per run" in everything.output
    here = runner.invoke(analysis_cli.analyze, ["--describe", str(planted_dir)])
    assert here.exit_code == 0 and "3 metrics (the metric columns of" in here.output
    assert "oom_kills  [count per run; lower is better; simulation (Sim.metrics())]" in here.output
    missing = runner.invoke(analysis_cli.analyze, [])
    assert missing.exit_code == 2 and "missing DIR" in missing.output


def test_progress_names_each_phase_and_ends_with_the_report(planted_dir):
    lines: list[str] = []
    md, _ = finish(planted_dir, progress=lines.append)
    assert len(lines) == 4
    assert "summary.csv" in lines[0] and "comparisons.csv" in lines[1] and "figures drawn" in lines[2]
    assert lines[-1].endswith(str(md))
    again: list[str] = []
    finish(planted_dir, progress=again.append)
    assert "figures reused" in again[2]


def test_cli_progress_goes_to_stderr_and_report_md_is_the_last_line(planted_dir):
    result = CliRunner().invoke(analysis_cli.report, [str(planted_dir)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].endswith("REPORT.md")
    assert re.search(r"analysis: .*summary\.csv", result.stderr)
    assert result.stderr.strip().splitlines()[-1].endswith("REPORT.md")


def test_index_is_made_of_the_reports(tmp_path):
    root = tmp_path / "results"
    for name, (k, a) in {"one": (6.0, 1.0), "two": (2.0, 2.0)}.items():
        study = planted(root / name, kmalloc_mean=k, altmap_mean=a, seed=4)
        meta = json.loads((study / "metadata.json").read_text())
        meta["source"] = {"resolved": {"question": f"Question {name}?", "primary": ["oom_kills"]}}
        (study / "metadata.json").write_text(json.dumps(meta))
        finish(study, progress=lambda line: None)
    readme = write_index(root).read_text()
    assert readme.index("## [one](one/REPORT.md)") < readme.index("## [two](two/REPORT.md)")
    assert "*Question one?*" in readme and "do not edit by hand" in readme
    one = readme.split("## [one]")[1].split("## [two]")[0]
    assert "**kmalloc**: " in one and "more OOM kills than **altmap**" in one and "Holm p" in one
    two = readme.split("## [two]")[1]
    assert "OOM kills: no difference between any two levels" in two
    with pytest.raises(UserError, match="no study directory"):
        write_index(tmp_path)


def _expanded(tmp_path, with_label: bool) -> Path:
    """The runner's newer layout: driver.name/driver.request_offset columns (bytes), no JSON, no index."""
    root = table_factor(tmp_path / "json")
    runs = pd.read_csv(root / "runs.csv")
    tables = [json.loads(v) for v in runs["driver"]]
    runs["driver.name"] = [t["name"] for t in tables]
    runs["driver.request_offset"] = [2 << 20 if "request_offset" in t else np.nan for t in tables]
    runs["driver.populate_memmap_first"] = [t.get("populate_memmap_first", np.nan) for t in tables]
    if not with_label:
        runs = runs.drop(columns=["driver"])
    runs = runs.drop(columns=["index"])
    target = tmp_path / ("labelled" if with_label else "expanded")
    target.mkdir()
    runs.to_csv(target / "runs.csv", index=False)
    meta = json.loads((root / "metadata.json").read_text())
    if not with_label:
        meta["factors"] = ["memmap.strategy", "driver.name", "driver.request_offset", "guest.movable_node"]
    (target / "metadata.json").write_text(json.dumps(meta))
    return target


@pytest.mark.parametrize("with_label", [False, True])
def test_expanded_table_factors_read_like_json_ones(tmp_path, with_label):
    reference = analyze(table_factor(tmp_path / "ref")).comparisons
    root = _expanded(tmp_path, with_label)
    results = load(root)
    assert results.factors == ["memmap.strategy", "driver", "guest.movable_node"]
    assert results.levels("driver") == ["xen populate_memmap_first=true", "hyperv request_offset=2M", "xen"]
    assert not any(m.startswith("driver.") for m in results.metrics)
    comp = analyze(root).comparisons
    columns = ["regime", "metric", "a", "b", "mean_a", "mean_b", "test", "winner"]
    pd.testing.assert_frame_equal(comp[columns], reference[columns])


def test_sizes_as_numbers_sort_as_numbers(tmp_path):
    rows = [
        {"memmap.strategy": s, "driver.request_offset": off, "oom_kills": i % 3}
        for s in ("kmalloc", "altmap")
        for off in (16 << 20, 2 << 20, 120 << 20)
        for i in range(3)
    ]
    factors = ["memmap.strategy", "driver.request_offset"]
    root = write_results(tmp_path / "sizes", pd.DataFrame(rows), factors, ["oom_kills"])
    comp = analyze(root).comparisons
    assert list(dict.fromkeys(comp["regime"])) == [
        f"driver.request_offset={v}" for v in ("2M", "16M", "120M")
    ]  # 2M < 16M < 120M, not text order
