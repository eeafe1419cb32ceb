"""`balloonsim bench`: smoke tests on tiny sizes. They check structure and sanity, never speed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from balloonsim.bench import goals, plan, scale
from balloonsim.bench.tables import format_table
from balloonsim.bench_cli import bench as bench_cmd
from balloonsim.commands import all_commands
from balloonsim.units import GiB, TiB


def test_bench_is_a_command():
    assert "bench" in [c.name for c in all_commands()]


def test_quick_bare_and_reference_json():
    result = CliRunner().invoke(bench_cmd, ["--quick", "--only", "bare,reference", "--json", "-q"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["quick"] is True
    assert out["sections"] == ["bare", "reference"]
    assert set(out["results"]) == {"bare", "reference"}
    bare, ref = out["results"]["bare"], out["results"]["reference"]
    assert bare["events_per_s"] > 0 and bare["events"] > bare["timeouts"] > 0
    assert ref["events_per_s"] > 0 and ref["simpy_events"] > 0 and ref["sim_s_per_wall_s"] > 0
    assert ref["sim_s"] == 3600 and not ref["crashed"]
    assert 0 < ref["ratio_to_bare"] < 2
    (sim_goal,) = out["goals"]  # SimPy events per second are no goal: a run wakes only where something changes
    assert sim_goal["value"] == ref["sim_s_per_wall_s"] / bare["events_per_s"] and sim_goal["reached"] in (True, False)
    for key in ("cpu", "cores", "python", "simpy", "date"):
        assert out["machine"][key]
    text = format_table(out)
    assert "reference / bare SimPy" in text and "simulated s per wall s / bare SimPy events/s" in text
    assert "goals" in text


def test_table_output_without_json():
    result = CliRunner().invoke(bench_cmd, ["--quick", "--only", "bare", "-q"])
    assert result.exit_code == 0, result.output
    assert "bare SimPy: timeout events/s" in result.output


def test_unknown_section_is_a_user_error():
    result = CliRunner().invoke(bench_cmd, ["--only", "bare,nope"])
    assert result.exit_code != 0
    assert "nope" in str(result.exception) or "nope" in result.output


def test_scale_point_in_a_subprocess_reports_its_own_rss():
    p = scale.scale_in_subprocess(1 * GiB, "altmap")
    assert "error" not in p, p
    assert p["ok"] and p["blocks"] == 8 and p["blocks_online"] == 8
    assert p["peak_rss_mib"] > 0 and p["peak_rss_mib"] >= p["rss_before_mib"] > 0
    assert p["wall_s"] > 0 and p["us_per_block"] > 0 and p["marginal_us_per_block"] is not None


def test_kmalloc_gets_enough_boot_memory_and_a_free_range():
    for size in (16 * GiB, 4 * TiB, 16 * TiB):
        spec = scale.scale_spec(size, "kmalloc")
        assert spec.boot[0] >= size // 64 + 2 * GiB
        boot_end = spec.boot[0] + GiB if spec.boot[0] > 3 * GiB else spec.boot[0]
        assert spec.at >= boot_end and spec.at % scale.BLOCK == 0
    assert scale.scale_spec(16 * TiB, "altmap").boot == [2 * GiB]


def test_goals_from_partial_results():
    pts = [
        {"strategy": "altmap", "size": s, "ok": True, "marginal_us_per_block": us, "peak_rss_mib": rss}
        for s, us, rss in ((16 * GiB, 30.0, 31.0), (16 * TiB, 33.0, 290.0))
    ]
    one = [
        {"strategy": "kmalloc", "size": s, "ok": True, "us_per_block": us}
        for s, us in ((64 * GiB, 40.0), (1 * TiB, 3000.0))
    ] + [{"strategy": "altmap", "size": 64 * GiB, "ok": True, "us_per_block": 30.0}]
    cli = [{"strategy": "altmap", "size": 16 * TiB, "exit": 0, "peak_rss_mib": 280.0}]
    results = {
        "bare": {"events_per_s": 1e6},
        "reference": {"ratio_to_bare": 0.5, "sim_s_per_wall_s": 1e5},
        "scale": {"points": pts, "one_at_a_time": one, "cli": cli},
        "sweeps": {
            "speedup_jobs2": 1.5,
            "parallel_capacity": {"capacity": 1.6},
            "dask_overhead_pct": 10.0,
            "runner_rss_growth": 1.0,
            "growth_factor": 4,
        },
    }
    found = {g["measure"]: g["reached"] for g in goals.evaluate_goals(results)}
    assert "reference events/s / bare SimPy events/s" not in found
    assert found["reference simulated s per wall s / bare SimPy events/s"] is False  # 0.1
    assert found["one block at a time, us/block 1 TiB (8,192 blocks) / 64 GiB (512), kmalloc"] is False
    assert found["one block at a time, us/block 1 TiB (8,192 blocks) / 64 GiB (512), altmap"] is None
    assert found["balloonsim hotplug 16 TiB peak RSS MiB, altmap"] is True
    speedup = next(g for g in goals.evaluate_goals(results) if g["measure"].startswith("--jobs 2"))
    assert "at most 1.60x one meanwhile" in speedup["note"]
    assert found["time per block max/min, altmap 16G..16T"] is True
    assert found["time per block max/min, kmalloc"] is None  # not measured
    assert found["peak RSS MiB at 16 TiB, altmap"] is True
    assert found["peak RSS MiB at 16 TiB, kmalloc"] is None
    assert found["--jobs 2 runs/s / --jobs 1 runs/s"] is False
    assert found["--dask local wall over --jobs 2, %"] is True
    assert found["runner peak RSS, 4x runs / 1x"] is True
    assert found["analysis after a --jobs 2 run, wall / its batch's wall"] is None  # no analysis measured
    results["sweeps"]["analysis"] = {"analysis_s": 2.2, "batch_s": 2.0, "analysis_over_batch": 1.1,
                                     "median_over_batch": 1.2, "all_over_batch": [1.1, 1.3]}  # fmt: skip
    found = {g["measure"]: g for g in goals.evaluate_goals(results)}
    analysis = found["analysis after a --jobs 2 run, wall / its batch's wall"]
    assert analysis["reached"] is False and analysis["note"] == "median of rounds 1.20"


def test_parse_only():
    assert plan.parse_only(None) == set(plan.SECTIONS)
    assert plan.parse_only(["bare,reference", "scale"]) == {"bare", "reference", "scale"}


def test_a_scale_child_loads_only_the_kernel_model():
    """Its peak RSS is reported as the hot-add's: the simulator, pandas and numpy would add ~80 MiB to it."""
    code = (
        "import json, sys\n"
        "from balloonsim.bench.__main__ import _child\n"
        "_child({'task': 'scale', 'size': 1 << 30, 'strategy': 'altmap', 'block': 128 << 20})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    modules = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert "balloonsim.kernel.guest" in modules
    assert not {"numpy", "pandas", "pyarrow", "balloonsim.sim.simulation", "balloonsim.experiment"} & modules


def test_one_block_at_a_time_cli_rss_and_startup_are_measured():
    p = scale.blocks_in_subprocess(1 * GiB, "kmalloc", budget_s=30)
    assert "error" not in p, p
    assert p["ok"] and p["blocks_done"] == p["blocks"] == 8
    assert p["us_per_block"] > 0 and p["last_tenth_us_per_block"] > 0 and p["peak_rss_mib"] > 0
    stopped = scale.blocks_point(1 * GiB, "altmap", budget_s=0.0)  # the budget ends it after one block
    assert stopped["blocks_done"] == 1 and not stopped["ok"] and not stopped["errors"]

    cli = scale.cli_peak_rss(1 * GiB, "altmap")
    assert cli["exit"] == 0 and cli["peak_rss_mib"] > 10 and cli["command"].startswith("balloonsim hotplug --boot")

    from balloonsim.bench.startup import BASELINE, startup

    st = startup(1)
    assert st["commands"][BASELINE]["x_import_click"] == 1.0
    assert all(v["ms"] > 0 for v in st["commands"].values()) and "balloonsim --version" in st["commands"]
    out = {
        "machine": {"cpu": "x", "cores": 2, "python": "3", "simpy": "4", "date": "now"},
        "results": {"startup": st, "scale": {"points": [], "one_at_a_time": [p, stopped], "cli": [cli]}},
    }
    text = format_table(out)
    assert "one add_memory() + online per 128 MiB block" in text and "stopped at the 0 s budget" in text
    assert "CLI start-up" in text and "the command itself" in text


def test_a_sweep_child_starts_its_clock_before_the_runner_loads(tmp_path):
    """A sweep's wall time is what a user of `balloonsim run` waits for, the runner's imports included (a `--jobs
    1` runner imports the simulator itself, a `--jobs 2` one beside its workers' forkserver): nothing of the runner
    or the simulator may be loaded when its clock starts, and the sweep runs with the forkserver started first."""
    code = (
        "import json, sys\n"
        "import balloonsim.bench.__main__, balloonsim.bench.sweep_point\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    modules = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert not {"numpy", "pydantic", "pyarrow", "simpy", "balloonsim.scenario", "balloonsim.experiment"} & modules
    exp = tmp_path / "tiny.toml"
    exp.write_text('name = "tiny"\n[base]\nduration = "1min"\n[factors]\n"onlining.delay" = [0]\n')
    from balloonsim.bench.sweeps import sweep_in_subprocess

    point = sweep_in_subprocess(exp, 2, None, 2)
    assert "error" not in point, point
    assert point["runs"] == point["ok"] == 2 and point["mode"] == "jobs 2"
    assert point["wall_s"] >= point["batch_s"] > 0 and point["workers_cpu_s"] > 0
    assert "analysis_s" not in point  # as `balloonsim run --no-report`


def test_a_sweep_with_its_analysis_times_the_analysis_apart(tmp_path, monkeypatch):
    """`report`: the analysis `balloonsim run` does after its batch, timed on its own and set against the batch;
    the batch's own figures are the same as without it (taken before the analysis starts)."""
    from balloonsim.bench import sweep_point as sp

    written = []
    monkeypatch.setattr(sp, "analysis_wall", lambda out: written.append(out) or 3.0)
    exp = tmp_path / "tiny.toml"
    exp.write_text('name = "tiny"\n[base]\nduration = "1min"\n[factors]\n"onlining.delay" = [0]\n')
    point = sp.sweep_point(exp, 1, None, 2, tmp_path / "out", report=True)
    assert written == [tmp_path / "out"]
    assert point["analysis_s"] == 3.0 and point["analysis_over_batch"] == pytest.approx(3.0 / point["batch_s"])


def test_analysis_wall_runs_the_whole_analysis(tmp_path):
    """What it times is `balloonsim run`'s analysis: the report and the figures are there afterwards."""
    from balloonsim.bench.sweep_point import analysis_wall
    from balloonsim.experiment import run_experiment

    exp = tmp_path / "tiny.toml"
    exp.write_text(
        'name = "tiny"\nreplications = 2\n[base]\nduration = "1min"\n'
        '[factors]\n"memmap.strategy" = ["altmap", "kmalloc"]\n'
    )
    run_experiment(exp, out_dir=tmp_path / "out", jobs=1, quiet=True)
    assert analysis_wall(tmp_path / "out") > 0
    assert (tmp_path / "out" / "REPORT.md").exists() and list((tmp_path / "out" / "plots").glob("*.png"))


def test_the_bench_caches_balloonsims_bytecode_before_it_times_anything():
    """Every process the bench times then loads balloonsim's compiled modules, as on a user's machine after the
    first command, even where PYTHONDONTWRITEBYTECODE keeps Python from writing them."""
    import importlib.util
    from pathlib import Path

    import balloonsim
    import balloonsim.drivers
    from balloonsim.bench.bytecode import cache_bytecode, describe

    info = cache_bytecode(sys.executable)
    assert info["ok"], info
    roots = {Path(balloonsim.__file__).parent, Path(balloonsim.drivers.__file__).parent}
    assert {Path(r) for r in info["roots"]} == roots
    sources = [p for root in roots for p in root.rglob("*.py")]
    assert info["modules"] == len(sources) > 100
    assert all(Path(importlib.util.cache_from_source(str(p))).is_file() for p in sources)
    assert cache_bytecode(sys.executable)["compiled_now"] == 0  # nothing left to compile
    assert describe(info).startswith(f"bytecode: cached for {len(sources)} modules")
    failed = cache_bytecode(Path(sys.executable).parent / "no-such-python")
    assert not failed["ok"] and describe(failed).startswith("bytecode: not cached")


def test_the_jobs_goal_row_gives_the_ceiling_the_fixed_costs_leave():
    """--jobs 2 can at best halve --jobs 1's batch; what it spends outside its batch it spends anyway. With
    --jobs 1 at 1.66 s wall (1.44 s batch) and --jobs 2 spending 0.23 s outside a 0.74 s batch, the ceiling is
    1.66 / (0.23 + 0.72) = 1.75."""
    from balloonsim.bench.sweeps import speedup_ceiling

    jobs1 = {"wall_s": 1.66, "batch_s": 1.44, "runs": 90, "runs_per_s": 90 / 1.66}
    jobs2 = {"wall_s": 0.97, "batch_s": 0.74, "runs": 90, "runs_per_s": 90 / 0.97}
    ceiling = speedup_ceiling(jobs1, jobs2)
    assert ceiling == pytest.approx(1.66 / (0.23 + 0.72))
    assert speedup_ceiling(jobs1, {"error": "failed"}) is None
    sweeps = {"modes": {"jobs 1": jobs1, "jobs 2": jobs2}, "speedup_jobs2": 1.71, "speedup_jobs2_ceiling": ceiling}
    (row,) = [g for g in goals.evaluate_goals({"sweeps": sweeps}) if g["measure"].startswith("--jobs 2")]
    assert row["note"] == "90 runs only: start-up weighs heavily; ceiling 1.75 (a batch exactly halved)"
    dask = [g for g in goals.evaluate_goals({"sweeps": sweeps}) if g["measure"].startswith("--dask")]
    assert all("ceiling" not in g["note"] for g in dask)
