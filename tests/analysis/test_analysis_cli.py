"""The click commands work end to end and turn a broken directory into exit status 2."""

from __future__ import annotations

import click
from click.testing import CliRunner

from balloonsim.analysis import cli as analysis_cli
from balloonsim.cli import _Group


def _group() -> click.Group:
    group = _Group(name="balloonsim")
    for command in (analysis_cli.analyze, analysis_cli.plot, analysis_cli.report):
        group.add_command(command)
    return group


def test_analyze_plot_report(planted_dir):
    runner = CliRunner()
    result = runner.invoke(_group(), ["analyze", str(planted_dir), "--alpha", "0.01"])
    assert result.exit_code == 0, result.output
    assert "1 significant after Holm (alpha 0.01)" in result.output
    result = runner.invoke(_group(), ["plot", str(planted_dir), "--metric", "oom_kills"])
    assert result.exit_code == 0, result.output
    assert "policy_overview.png" in result.output
    index = (planted_dir / "plots" / "index.json").read_bytes()
    result = runner.invoke(_group(), ["report", str(planted_dir), "--keep-plots"])
    assert result.exit_code == 0, result.output
    assert (planted_dir / "REPORT.md").is_file() and (planted_dir / "report.html").is_file()
    assert (planted_dir / "plots" / "index.json").read_bytes() == index  # the figures of `plot` were kept


def test_broken_directory_exits_2(tmp_path):
    result = CliRunner().invoke(_group(), ["analyze", str(tmp_path)])
    assert result.exit_code == 2
    assert "metadata.json: missing" in result.output


def test_bad_by_exits_2(planted_dir):
    result = CliRunner().invoke(_group(), ["report", str(planted_dir), "--by", "ghost"])
    assert result.exit_code == 2 and "--by 'ghost' is not a factor" in result.output
