"""The quickstart shows what its header says: three situations, each with the phenomenon of the seed thread it is
there for, as outcomes of whole simulations of its own design points (a change of the model that loses one of
them fails here, not silently in a report)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from balloonsim.experiment.design import iter_points
from balloonsim.experiment.loader import load_experiment
from balloonsim.sim.simulation import simulate

QUICKSTART = Path(__file__).resolve().parents[2] / "experiments" / "quickstart.toml"
SEEDS = range(3)
STRATEGIES = ("kmalloc", "altmap", "subrange-hint")


@pytest.fixture(scope="module")
def points():
    """(strategy, driver level) -> the design point's run configuration."""
    exp = load_experiment(QUICKSTART, check_runs=False)
    return {(p.factors["memmap.strategy"], _situation(p.factors["driver"])): p.config for p in iter_points(exp)}


def _situation(driver: dict) -> str:
    if driver["name"] == "dimm":
        return "dimm"
    return "partial" if "request_offset" in driver else "late"


def _runs(points, strategy: str, situation: str) -> list[dict]:
    return [simulate(points[(strategy, situation)], seed=s).metrics for s in SEEDS]


def test_the_design_is_three_situations_under_three_strategies():
    exp = load_experiment(QUICKSTART, check_runs=False)
    assert exp.zip == [["driver", "host", "onlining"]]
    assert exp.factors["memmap.strategy"] == list(STRATEGIES)
    assert exp.primary == ["guest_crashed", "hotadd_enomem", "gigantic_pages_end"]
    assert exp.replications == 10 and exp.seed == 20240611
    situations = {
        (p.factors["driver"]["name"], p.factors["driver"].get("request_offset"), p.factors["host"]["controller"])
        + (p.factors["onlining"]["delay"], p.factors["onlining"].get("online_type"))
        for p in iter_points(exp)
    }
    assert situations == {
        ("hyperv", None, "hyperv-buffer", 60, None),
        ("hyperv", "64M", "hyperv-buffer", 1, None),
        ("dimm", None, "schedule", 1, "online_kernel"),
    }
    assert sum(1 for _ in iter_points(exp)) == 9


def test_late_onlining_fails_kmalloc_hot_adds_with_enomem(points):
    """Hyper-V chunks added while udev onlines 60 s late: the workload's 16 MiB tasks leave less than a task's
    worth of online memory above the min watermark, each chunk added before the earlier ones are online takes
    2 MiB of it for a kmalloc'd memmap, and once it is gone __GFP_RETRY_MAYFAIL finds nothing to reclaim and
    add_memory() fails; a memmap in the chunk takes no online memory."""
    kmalloc = _runs(points, "kmalloc", "late")
    assert all(m["hotadd_enomem"] > 0 for m in kmalloc)
    for other in ("altmap", "subrange-hint"):
        assert all(m["hotadd_enomem"] == 0 and not m["guest_crashed"] for m in _runs(points, other, "late"))


def test_onlined_at_once_the_same_pressure_fails_no_hot_add(points):
    """The late-onlining situation with udev onlining within a second: kmalloc's hot-adds all succeed, so the
    -ENOMEM above comes from the chunks added while the earlier ones wait to be onlined."""
    config = copy.deepcopy(points[("kmalloc", "late")])
    config["onlining"]["delay"] = 1
    assert all(simulate(config, seed=s).metrics["hotadd_enomem"] == 0 for s in SEEDS)


def test_partly_backed_chunk_crashes_altmap_only(points):
    assert all(m["guest_crashed"] for m in _runs(points, "altmap", "partial"))
    for other in ("kmalloc", "subrange-hint"):
        assert not any(m["guest_crashed"] for m in _runs(points, other, "partial"))


def test_per_block_memmaps_leave_no_gigantic_page_in_the_dimms(points):
    kmalloc = _runs(points, "kmalloc", "dimm")
    assert all(m["gigantic_pages_end"] >= 2 for m in kmalloc)
    for other in ("altmap", "subrange-hint"):
        runs = _runs(points, other, "dimm")
        assert all(m["gigantic_pages_end"] == 0 and m["dimms_plugged"] == 6 for m in runs)
