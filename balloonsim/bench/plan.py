"""What a benchmark run covers: its sections and how much of each (the full set or the quick one)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from balloonsim.units import GiB, TiB

SECTIONS = ("bare", "reference", "scale", "sweeps", "startup")


@dataclass(frozen=True)
class Plan:
    """How much of each section to run."""

    bare_timeouts: int
    repeats: int  # bare/reference repeats (best kept)
    scale_sizes: tuple[int, ...]
    sweep_replications: int  # of each of the quickstart's design points
    sweep_repeats: int  # each sweep mode, best kept
    growth: int = 4  # the larger batch for the runner-RSS measurement has this many times the runs
    capacity_seconds: float = 2.0  # bare SimPy spin, alone and two at once
    capacity_rounds: int = 2
    block_sizes: tuple[int, ...] = (16 * GiB, 64 * GiB, 1 * TiB, 16 * TiB)  # added one block at a time
    block_budget_s: float = 60.0  # per size and strategy: a cost that grows with the blocks stops here
    cli_size: int = 16 * TiB  # `balloonsim hotplug` through the command line, for its peak RSS
    startup_repeats: int = 10


FULL = Plan(
    bare_timeouts=200_000,
    repeats=5,
    scale_sizes=(16 * GiB, 1 * TiB, 16 * TiB),
    sweep_replications=10,
    sweep_repeats=3,
)
QUICK = Plan(
    bare_timeouts=100_000,
    repeats=3,
    scale_sizes=(16 * GiB, 256 * GiB),
    sweep_replications=2,
    sweep_repeats=1,
    capacity_seconds=1.0,
    capacity_rounds=1,
    block_sizes=(16 * GiB, 256 * GiB),
    block_budget_s=10.0,
    cli_size=256 * GiB,
    startup_repeats=3,
)


def parse_only(only: Iterable[str] | None) -> set[str]:
    """Section names from `--only a,b --only c`; all sections if none.  ValueError for an unknown name."""
    names = {n.strip() for item in (only or ()) for n in item.split(",") if n.strip()}
    unknown = names - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(sorted(unknown))}; expected {', '.join(SECTIONS)}")
    return names or set(SECTIONS)
