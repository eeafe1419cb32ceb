"""Design expansion: an `Experiment` -> the runs it stands for, each with a stable id and its own seed.

A design point is one combination of factor levels; its `index` is its position in the full cross product
*before* exclusions, so excluding a combination or adding replications never changes another run's seed.
Seeds come from `numpy.random.SeedSequence(master, spawn_key=(index, replicate))`: independent streams that do
not depend on worker count or completion order.  Expansion is lazy, so a million-run design costs no memory.

A results directory grown with more levels keeps the seeds its runs were made with: its `SeedBasis` (the
levels it was created with) numbers the points that existed then as before, and new points after all of them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from balloonsim.experiment.keypaths import canonical_json, copy_tree, digest, set_path
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
    level_index: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SeedBasis:
    """The design a results directory was created with: per axis, its level combinations (canonical JSON).

    A point whose levels all exist in the basis keeps the seed index it had there; any other point is numbered
    after the basis's whole cross product, so growing a design never moves an existing run's seed.
    """

    axes: tuple[tuple[str, ...], ...]

    @property
    def size(self) -> int:
        return math.prod(len(axis) for axis in self.axes)

    def seed_index(self, keys: list[str], index: int) -> int:
        """The seed index of a point with these axis keys and this index in the current design."""
        if len(keys) == len(self.axes):
            position = 0
            for key, axis in zip(keys, self.axes, strict=True):
                if key not in axis:
                    break
                position = position * len(axis) + axis.index(key)
            else:
                return position
        return self.size + index

    def to_json(self) -> list[list[str]]:
        return [list(axis) for axis in self.axes]

    @classmethod
    def from_json(cls, data: Any) -> SeedBasis | None:
        if not isinstance(data, list) or not all(isinstance(a, list) for a in data):
            return None
        return cls(tuple(tuple(str(k) for k in axis) for axis in data))


def seed_basis(exp: Experiment) -> SeedBasis:
    """The basis of a design on its own: every point's seed index is its index."""
    return SeedBasis(tuple(tuple(axis_keys(exp, axis)) for axis in design_axes(exp)))


def axis_keys(exp: Experiment, axis: list[str]) -> list[str]:
    """Each level combination of one axis as canonical JSON, in level order."""
    return [canonical_json([exp.factors[name][i] for name in axis]) for i in range(len(exp.factors[axis[0]]))]


def run_id(config: dict[str, Any], replicate: int) -> str:
    """Stable id from what the run is, not where it sits: same configuration and replicate -> same id."""
    return digest({"config": config, "replicate": replicate})[:16]


def run_seed(master_seed: int, index: int, replicate: int) -> int:
    """A 32-bit seed from the master seed and the run's position in the design."""
    sequence = np.random.SeedSequence(master_seed, spawn_key=(index, replicate))
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def apply_factors(base: dict[str, Any], factors: dict[str, Any]) -> dict[str, Any]:
    """The base configuration with each factor level set at its key path (a table level replaces a table)."""
    config = copy_tree(base)
    for name, level in factors.items():
        set_path(config, name, copy_tree(level))
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


def iter_runs(exp: Experiment, basis: SeedBasis | None = None) -> Iterator[RunSpec]:
    """All runs in design order: replicate by replicate, so that an interrupted batch has covered every point
    evenly. Seeds are numbered by `basis` when given (a grown results directory), else by the design itself."""
    axes = design_axes(exp)
    keys = [axis_keys(exp, axis) for axis in axes] if basis is not None else []
    for replicate in range(exp.replications):
        for point in iter_points(exp):
            seed_index = point.index
            if basis is not None:
                point_keys = [keys[a][point.level_index[axis[0]]] for a, axis in enumerate(axes)]
                seed_index = basis.seed_index(point_keys, point.index)
            yield RunSpec(
                run_id=run_id(point.config, replicate),
                index=point.index,
                replicate=replicate,
                factors=point.factors,
                config=point.config,
                seed=run_seed(exp.seed, seed_index, replicate),
                level_index=point.level_index,
            )
