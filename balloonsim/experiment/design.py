"""Design expansion: an `Experiment` -> the runs it stands for, each with a stable id and its own seed.

A design point is one combination of factor levels; its `index` is its position in the full cross product
*before* exclusions, so excluding a combination or adding replications never changes another run's seed.
Seeds come from `numpy.random.SeedSequence(master, spawn_key=(index, replicate))`: independent streams that do
not depend on worker count or completion order.  Expansion is lazy, so a million-run design costs no memory.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from balloonsim.experiment.keypaths import canonical_json, digest, set_path
from balloonsim.experiment.spec import Experiment, design_axes


@dataclass(frozen=True)
class DesignPoint:
    """One combination of factor levels and the run configuration it makes."""

    index: int
    factors: dict[str, Any]
    level_index: dict[str, int]
    config: dict[str, Any]


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs for one run; small and picklable."""

    run_id: str
    index: int
    replicate: int
    factors: dict[str, Any]
    config: dict[str, Any]
    seed: int


def run_id(config: dict[str, Any], replicate: int) -> str:
    """Stable id from what the run is, not where it sits: same configuration and replicate -> same id."""
    return digest({"config": config, "replicate": replicate})[:16]


def run_seed(master_seed: int, index: int, replicate: int) -> int:
    """A 32-bit seed from the master seed and the run's position in the design."""
    sequence = np.random.SeedSequence(master_seed, spawn_key=(index, replicate))
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def apply_factors(base: dict[str, Any], factors: dict[str, Any]) -> dict[str, Any]:
    """The base configuration with each factor level set at its key path (a table level replaces a table)."""
    config = copy.deepcopy(base)
    for name, level in factors.items():
        set_path(config, name, copy.deepcopy(level))
    return config


def _excluded(exp: Experiment, factors: dict[str, Any]) -> bool:
    return any(
        all(canonical_json(factors[name]) == canonical_json(level) for name, level in entry.items())
        for entry in exp.exclude
    )


def iter_points(exp: Experiment) -> Iterator[DesignPoint]:
    """Design points in design order (the last declared factor varies fastest), exclusions dropped."""
    axes = design_axes(exp)
    ranges = [range(len(exp.factors[axis[0]])) for axis in axes]
    for index, choice in enumerate(itertools.product(*ranges)):
        level_index = {name: i for axis, i in zip(axes, choice, strict=True) for name in axis}
        factors = {name: exp.factors[name][level_index[name]] for name in exp.factors}
        if exp.exclude and _excluded(exp, factors):
            continue
        yield DesignPoint(index, factors, level_index, apply_factors(exp.base, factors))


def count_points(exp: Experiment) -> int:
    return sum(1 for _ in iter_points(exp))


def iter_runs(exp: Experiment) -> Iterator[RunSpec]:
    """All runs, replicate by replicate, so that an interrupted batch has covered every point evenly."""
    for replicate in range(exp.replications):
        for point in iter_points(exp):
            yield RunSpec(
                run_id=run_id(point.config, replicate),
                index=point.index,
                replicate=replicate,
                factors=point.factors,
                config=point.config,
                seed=run_seed(exp.seed, point.index, replicate),
            )
