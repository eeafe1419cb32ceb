"""`balloonsim hotplug`: the seed's trace, user errors, and cost that grows with blocks, not bytes."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from balloonsim import cli as cli_mod
from balloonsim.hotplug import HotplugSpec, run_hotplug
from balloonsim.units import GiB, TiB


@pytest.fixture(scope="module")
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli_mod.cli, ["hotplug", *args])

    return invoke


def _err(result) -> str:
    return result.stderr if result.stderr else result.output


def test_seed_trace(run):
    r = run(
        "--boot",
        "2G",
        "--size",
        "10G",
        "--at",
        "4G",
        "--node",
        "1",
        "--strategy",
        "altmap-range",
        "--remove",
        "--trace",
    )
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert "This has added: ffffea0004000000 - ffffea000427ffc0 (refcount: 80)" in lines
    assert sum("ffffea0004000000 - ffffea000427ffc0 (refcount: 80)" in line for line in lines) == 1
    frees = [line for line in lines if line.startswith("vmemmap_free:")]
    expected = [
        f"vmemmap_free: start/end: {0xFFFFEA0004000000 + k * 0x200000:x} - {0xFFFFEA0004000000 + (k + 1) * 0x200000:x}"
        for k in reversed(range(80))
    ]
    assert frees == expected
    assert frees[0] == "vmemmap_free: start/end: ffffea000de00000 - ffffea000e000000"
    assert frees[-1] == "vmemmap_free: start/end: ffffea0004000000 - ffffea0004200000"
    # the 80 lines are consecutive, after the add line
    first = lines.index(frees[0])
    assert lines[first : first + 80] == expected
    assert lines.index("This has added: ffffea0004000000 - ffffea000427ffc0 (refcount: 80)") < first


def test_json_phases_dimm(run):
    r = run("--boot", "2G", "--size", "10G", "--at", "4G", "--node", "1", "--strategy", "kmalloc", "--remove", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    phases = {p["phase"]: p for p in doc["phases"]}
    assert list(phases) == ["boot", "added", "onlined", "offlined", "removed"]
    boot = phases["boot"]
    assert phases["onlined"]["MemTotal_kb"] - boot["MemTotal_kb"] == 10_485_760
    assert phases["added"]["memmap_kmalloc_pages"] == 40960
    assert phases["onlined"]["gigantic_pages"] == 10
    assert phases["removed"]["MemFree_kb"] == boot["MemFree_kb"]
    assert all(c["ret"] == 0 for c in doc["calls"])


def test_dimm_is_backed_no_crash(run):
    r = run("--size", "1G", "--strategy", "altmap", "--debug-vm", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["crash"] is None
    r = run("--size", "1G", "--block-size", "256M", "--json")
    assert r.exit_code == 0
    assert json.loads(r.output)["block_size"] == 256 << 20


def test_error_exit_status(run):
    r = run("--size", "1G", "--at", "1G")  # overlaps boot memory
    assert r.exit_code == 1
    assert "-EEXIST" in r.output


def test_bad_size(run):
    r = run("--size", "12Q")
    assert r.exit_code == 2
    assert "size" in _err(r) and "12Q" in _err(r)
    assert "Traceback" not in r.output


@pytest.mark.parametrize(
    ("name", "suggestion"), [("altmapp", "altmap"), ("kmaloc", "kmalloc"), ("kmalloc,nodepool", "node-pool")]
)
def test_unknown_strategy(run, name, suggestion):
    r = run("--strategy", name)
    assert r.exit_code == 2
    msg = _err(r)
    assert "strategy" in msg
    assert repr(name.split(",")[-1]) in msg
    assert f"did you mean {suggestion!r}" in msg


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--block-size", "100M"], "block-size"),
        (["--at", "4Gx"], "at"),
        (["--boot", "2G,zz"], "boot"),
        (["--param", "mode"], "param"),
    ],
)
def test_other_user_errors(run, args, key):
    r = run(*args)
    assert r.exit_code == 2
    assert f"error: --{key}: " in _err(r)  # named as the user typed it


def test_run_hotplug_api():
    rep = run_hotplug(HotplugSpec(size=1 * GiB, strategy="altmap", remove=True))
    assert [p.name for p in rep.phases] == ["boot", "added", "onlined", "offlined", "removed"]
    assert rep.block_size == 128 << 20


def test_16t_altmap_completes():
    """131072 blocks of 128 MiB: cost grows with blocks, not bytes."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "balloonsim.cli",
            "hotplug",
            "--boot",
            "2G",
            "--size",
            "16T",
            "--at",
            "4G",
            "--block-size",
            "128M",
            "--strategy",
            "altmap",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    phases = {p["phase"]: p for p in doc["phases"]}
    assert phases["onlined"]["blocks_online"] == 131072
    delta = phases["onlined"]["MemTotal_kb"] - phases["boot"]["MemTotal_kb"]
    assert delta == (16 * TiB // 1024) * 63 // 64 == 16_911_433_728
    assert phases["onlined"]["present_pages"] - phases["boot"]["present_pages"] == 16 * TiB // 4096
    assert phases["onlined"]["vmemmap_pages"] == 16 * TiB // 4096 // 64
