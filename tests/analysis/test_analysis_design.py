"""Designs as the real runner writes them: zipped factors and its metadata layout."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
from analysis_synth import write_results

from balloonsim.analysis import analyze, finish
from balloonsim.analysis.load import load


def _zipped(tmp_path):
    """driver.name and host.controller vary together (a zip design); kmalloc kills more on xen."""
    rng = np.random.default_rng(3)
    rows = []
    pairs = [("hyperv", "hyperv-buffer"), ("xen", "mom")]
    for strategy, (driver, controller), delay in itertools.product(["kmalloc", "altmap"], pairs, [0, 30]):
        for _ in range(10):
            lam = 6.0 if strategy == "kmalloc" and driver == "xen" else 1.0
            rows.append(
                {
                    "memmap.strategy": strategy,
                    "driver.name": driver,
                    "host.controller": controller,
                    "onlining.delay": delay,
                    "oom_kills": rng.poisson(lam),
                    "guest_crashed": strategy == "altmap" and driver == "xen",
                }
            )
    factors = ["memmap.strategy", "driver.name", "host.controller", "onlining.delay"]
    root = write_results(tmp_path / "zip", pd.DataFrame(rows), factors, ["oom_kills", "guest_crashed"])
    meta = json.loads((root / "metadata.json").read_text())
    for key in ("started", "finished", "balloonsim_version"):
        meta.pop(key)
    meta.update(
        {
            "started_at": "2026-01-02T03:04:05+00:00",
            "ended_at": "2026-01-02T03:05:05+00:00",
            "environment": {"balloonsim": "9.9.9", "git": {"commit": "0123456789abcdef", "dirty": False}},
            "source": {
                "overrides": ["replications=10"],
                "resolved": {
                    "design": "full",
                    "zip": [["driver.name", "host.controller"]],
                    "seed": 42,
                    "base": {"duration": "3h", "workload": {"name": "bursts"}},
                },
            },
        }
    )
    (root / "metadata.json").write_text(json.dumps(meta))
    return root


def test_zipped_factors_are_one_axis(tmp_path):
    root = _zipped(tmp_path)
    results = load(root)
    assert results.aliases == {"host.controller": "driver.name"}
    assert results.independent_factors == ["memmap.strategy", "driver.name", "onlining.delay"]
    comp = analyze(root).comparisons
    assert set(comp["regime"]) == {f"driver.name={d}, onlining.delay={x}" for d in ("hyperv", "xen") for x in (0, 30)}
    finish(root)
    plots = {p.name for p in (root / "plots").glob("*.png")}
    assert not any("host-controller" in p for p in plots)  # no axis or map along an alias
    assert "policy_guest_crashed_driver-name_x_onlining-delay.png" in plots  # the map of the primary metric


def _zipped_repeat(tmp_path, situations):
    """A zip whose host repeats a level: two Hyper-V situations share one host, a DIMM has its own."""
    rng = np.random.default_rng(5)
    rows = []
    for strategy, (driver, controller) in itertools.product(["kmalloc", "altmap"], situations):
        for _ in range(10):
            rows.append(
                {
                    "memmap.strategy": strategy,
                    "driver.name": driver,
                    "host.controller": controller,
                    "gigantic_pages_end": rng.poisson(4.0) if strategy == "kmalloc" and driver == "dimm" else 0,
                }
            )
    factors = ["memmap.strategy", "driver.name", "host.controller"]
    return write_results(tmp_path / "zip", pd.DataFrame(rows), factors, ["gigantic_pages_end"])


def test_a_zipped_factor_that_repeats_a_level_is_no_axis(tmp_path):
    situations = [("hyperv", "hyperv-buffer"), ("hyperv-64M", "hyperv-buffer"), ("dimm", "schedule")]
    root = _zipped_repeat(tmp_path, situations)
    results = load(root)
    # the driver fixes the host (not the reverse): the host adds no regime, facet or axis
    assert results.aliases == {"host.controller": "driver.name"}
    assert results.independent_factors == ["memmap.strategy", "driver.name"]
    comp = analyze(root).comparisons
    assert set(comp["regime"]) == {f"driver.name={d}" for d in ("hyperv", "hyperv-64M", "dimm")}
    finish(root)
    plots = {p.name for p in (root / "plots").glob("*.png")}
    assert "metric_gigantic_pages_end_vs_driver-name.png" in plots
    assert not any("host-controller" in p for p in plots)


def test_the_factor_with_more_levels_is_the_root_whichever_comes_first(tmp_path):
    # the host listed first repeats a level: it is the alias, the driver (three levels) the root
    situations = [("hyperv", "hyperv-buffer"), ("hyperv-64M", "hyperv-buffer"), ("dimm", "schedule")]
    root = _zipped_repeat(tmp_path, situations)
    runs = pd.read_csv(root / "runs.csv")
    head = ["run_id", "index", "replicate", "seed", "status", "error"]
    runs[head + ["memmap.strategy", "host.controller", "driver.name", "gigantic_pages_end"]].to_csv(
        root / "runs.csv", index=False
    )
    meta = json.loads((root / "metadata.json").read_text())
    meta["factors"] = ["memmap.strategy", "host.controller", "driver.name"]
    (root / "metadata.json").write_text(json.dumps(meta))
    results = load(root)
    assert results.factors == ["memmap.strategy", "host.controller", "driver.name"]
    assert results.aliases == {"host.controller": "driver.name"}
    assert results.other_factors("memmap.strategy") == ["driver.name"]


def test_runner_metadata_layout_in_report(tmp_path):
    root = _zipped(tmp_path)
    md = finish(root)[0].read_text()
    assert "full factorial, `driver.name` with `host.controller` varied together (zip)" in md
    assert "| fixed" not in md and "hyperv-buffer, mom (varies with `driver.name`)" in md
    assert "`duration` = 3h; `workload.name` = bursts" in md
    assert "| overrides (--set) | `replications=10` |" in md
    assert "| commit | `0123456789ab` |" in md and "| balloonsim | 9.9.9 |" in md
    assert "2026-01-02T03:04:05+00:00 → 2026-01-02T03:05:05+00:00 (60 s)" in md
    # altmap's guests all crashed on xen: its OOM kills there are not compared, no winner is named
    assert "**altmap**: higher crash rate than **kmalloc** in every run (100% vs 0%) when driver.name = xen" in md
    assert "**altmap**: no guest survived when driver.name = xen" in md
    assert "more OOM kills than **altmap**" not in md
