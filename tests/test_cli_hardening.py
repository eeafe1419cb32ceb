"""The single-guest commands on hostile or mistaken input, what they explain, and every help example run."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from balloonsim.cli import cli
from balloonsim.commands import COMMANDS
from balloonsim.kernel.errno import E2BIG, EEXIST, EINVAL, ENOMEM


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def refused(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.output


def test_simulate_prints_why_the_guest_crashed():
    result = invoke(
        "simulate", "--driver", "hyperv", "--strategy", "altmap", "--set", "driver.request_offset=64M",
        "--set", "guest.boot=2G", "--workload", "ramp", "--set", "workload.end_size=3G", "--duration", "10m",
        "--seed", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "guest_crashed              True" in result.stdout
    crash = r"guest crashed at \d+\.\d s: memmap_init_range of memory32: write to unbacked memory at 0x100000000"
    assert re.search(crash, result.stdout)


def test_simulate_show_config_prints_the_resolved_scenario(tmp_path):
    result = invoke("simulate", "--duration", "1m", "--set", "guest.boot=2G", "--show-config", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["scenario"]["guest"]["boot"] == [2 << 30] and doc["scenario"]["duration"] == 60.0
    assert doc["scenario"]["driver"]["name"] == "hyperv" and doc["crash"] is None
    text = invoke("simulate", "--duration", "1m", "--show-config").stdout
    assert text.startswith("# resolved scenario\n") and "[workload]" in text and "oom_kills" in text


def test_simulate_refuses_before_running(tmp_path):
    refused(invoke("simulate", "--timeseries", "/nonexistent/ts.csv"), "--timeseries /nonexistent/ts.csv")
    assert invoke("simulate", "--seed", "-1").exit_code == 2
    latin = tmp_path / "s.toml"
    latin.write_bytes(b'duration = "1m"\n# caf\xe9\n')
    refused(invoke("simulate", "--scenario", str(latin)), "not UTF-8 text")
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 3000 + "]" * 3000 + "\n")
    refused(invoke("simulate", "--scenario", str(deep)), "nested too deeply")
    trace = tmp_path / "trace.csv"
    trace.write_text("0," + "9" * 200_000 + "\n")
    refused(invoke("simulate", "--workload", "trace", "--set", f"workload.path={trace}"), "trace.csv:1")
    refused(invoke("simulate", "--set", "guest.boot=inf"), "guest.boot: not a size: inf")
    refused(invoke("simulate", "--set", "workload.on=fast"), "workload.on: expected a number or a table")
    assert not list(tmp_path.glob("*.csv"))[1:]  # only the trace written by this test


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--boot", "3M"], "--boot: 3M: each node's boot memory must be a multiple of 2M"),
        (["--size", "0xffffffffffffffff"], "--size: '0xffffffffffffffff' exceeds 4P"),
        (["--size", "0"], "--size: must not be 0"),
        (["--at", "0x1000000000000000"], "--at: '0x1000000000000000' exceeds 4P"),
        (["--block-size", "96M"], "--block-size: must be a power of two from 128M to 2G"),
        (["--param", "mode"], "--param: expected KEY=VALUE"),
    ],
)
def test_hotplug_refuses_absurd_values_naming_the_option(args, fragment):
    refused(invoke("hotplug", *args), fragment)


def test_hotplug_node_is_below_max_numnodes():
    result = invoke("hotplug", "--node", "1000000")
    assert result.exit_code == 2 and "0<=x<=1023" in result.output


def test_hotplug_explains_errnos_in_words():
    from balloonsim.hotplug_cli import ERRNO_WORDS

    assert {-EEXIST, -EINVAL, -E2BIG, -ENOMEM} <= set(ERRNO_WORDS)
    result = invoke("hotplug", "--boot", "4G", "--at", "0x100000000")
    assert result.exit_code == 1
    assert "= -17 (-EEXIST)" in result.stdout
    assert "add_memory: the range overlaps memory the guest already has" in result.stdout
    result = invoke("hotplug", "--boot", "4G", "--at", "0x141000000", "--size", "1G")
    assert "(-EINVAL)" in result.stdout and "not aligned to the memory block size" in result.stdout
    assert invoke("hotplug", "--boot", "4G").exit_code == 0  # the default --at is the first free block


def _examples() -> list[tuple[str, list[str]]]:
    found = []
    for name, ref in COMMANDS.items():
        for line in (ref.load().help or "").splitlines():
            line = line.strip()
            if line.startswith("balloonsim "):
                found.append((name, shlex.split(line)[1:]))
    return found


EXAMPLES = _examples()


def test_the_commands_have_examples():
    assert {name for name, _ in EXAMPLES} >= {"run", "simulate", "hotplug"}


@pytest.mark.parametrize("args", [a for _, a in EXAMPLES], ids=[" ".join(a)[:60] for _, a in EXAMPLES])
def test_every_help_example_runs(args, tmp_path, monkeypatch):
    """Each example as printed, run from a copy of the checkout's experiments/ and results/: `analyze DIR` and
    `index results/` write into what they are given, and a test must not rewrite tracked files (with a local
    results/quickstart, `index results/` added it to the shipped studies' README)."""
    root = Path(__file__).resolve().parents[1]
    work = tmp_path / "checkout"
    shutil.copytree(root / "experiments", work / "experiments")
    shutil.copytree(root / "results", work / "results", ignore=shutil.ignore_patterns("plots", "report.html"))
    monkeypatch.chdir(work)
    args = [str(tmp_path / "out") if a.startswith("/tmp/") else a for a in args]
    result = invoke(*args)
    assert result.exit_code in (0, 1), result.output  # 1: the example shows a failure on purpose (a crash)
    assert "Traceback" not in result.output
