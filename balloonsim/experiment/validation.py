"""Check every run configuration of a design with the single-run validator before anything runs.

`check_run` (balloonsim.sim.world) knows what a valid run is (sizes, strategy and driver names, parameters);
this module only runs it over each design point and re-addresses its error to where the user wrote the bad
value: the factor level (`factors.memmap.strategy[2]`) or the base (`base.guest.boot`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from balloonsim.errors import ConfigError, show, validation_message, written_path
from balloonsim.experiment.design import DesignPoint, iter_points, run_id
from balloonsim.experiment.keypaths import canonical_json, join
from balloonsim.experiment.spec import Experiment, design_axes

ScenarioLoader = Callable[[dict[str, Any]], Any]


def default_loader() -> ScenarioLoader:
    from balloonsim.sim.world import check_run

    return check_run


def validate_runs(exp: Experiment, load: ScenarioLoader | None = None) -> int:
    """Validate each design point's configuration; returns the number of design points (at least one).

    Records each level as the model reads it on `exp` (`normalized_levels`) and refuses two levels of one factor
    that are the same once read (`2G` and `2GiB`), naming both spellings.
    """
    from balloonsim.scenario import Scenario  # the model, only once there is something to check
    from balloonsim.scenario import normalized as normalized_config

    load = load or default_loader()
    ids: dict[str, int] = {}
    count = 0
    normalized: dict[str, dict[int, Any]] = {name: {} for name in exp.factors}
    for point in iter_points(exp):
        count += 1
        try:
            scenario = load(point.config)
        except ConfigError as exc:
            raise locate(exc.path, exc.message, point, exp) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            raise locate(join(*first["loc"]), validation_message(first), point, exp) from None
        if isinstance(scenario, Scenario):
            plain = normalized_config(scenario)
            for name in exp.factors:
                normalized[name].setdefault(point.level_index[name], value_at(plain, name))
        rid = run_id(point.config, 0)
        if rid in ids:
            raise ConfigError("factors", f"design points {ids[rid]} and {point.index} have the same configuration")
        ids[rid] = point.index
    if count == 0:
        raise ConfigError("exclude", "excludes every run; the design is empty")
    if all(len(levels) == len(exp.factors[name]) for name, levels in normalized.items()) and exp.factors:
        exp._normalized = {name: [levels[i] for i in range(len(levels))] for name, levels in normalized.items()}
        for axis in design_axes(exp):
            _check_same_levels(exp, axis, exp._normalized)
    return count


def value_at(config: dict[str, Any], path: str) -> Any:
    """The value at a dotted key path of a normalised configuration (None where there is none)."""
    node: Any = config
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _check_same_levels(exp: Experiment, axis: list[str], normalized: dict[str, list[Any]]) -> None:
    """Two levels that read the same would run the same configuration twice under two names."""
    seen: dict[str, int] = {}
    for i in range(len(exp.factors[axis[0]])):
        key = canonical_json([normalized[name][i] for name in axis])
        if key in seen:
            j = seen[key]
            if len(axis) == 1:
                levels = exp.factors[axis[0]]
                raise ConfigError(
                    join("factors", axis[0], i),
                    f"{show(levels[i])} is the same level as [{j}] {show(levels[j])} once read; keep one",
                )
            raise ConfigError("zip", f"levels [{j}] and [{i}] of {', '.join(axis)} are the same combination once read")
        seen[key] = i


def locate(path: str, message: str, point: DesignPoint, exp: Experiment) -> ConfigError:
    """Re-address an error at a run-configuration path to the experiment key that set the value there."""
    path = as_written(path, point.config)
    by_length = sorted(point.factors, key=len, reverse=True)
    for name in by_length:
        if path == name or path.startswith((name + ".", name + "[")):
            return ConfigError(join("factors", name, point.level_index[name]) + path[len(name) :], message)
    for name in by_length:
        if path and name.startswith(path + "."):
            return ConfigError(join("factors", name, point.level_index[name]), f"{path}: {message}")
    context = ""
    if point.factors:
        shown = ", ".join(f"{name}={level!r}" for name, level in point.factors.items())
        context = f" (in the run with {shown})"
    return ConfigError(join("base", path) if path else "base", message + context)


def as_written(path: str, config: dict[str, Any]) -> str:
    """`guest.boot.1` -> `guest.boot[1]`; the index is dropped when the user wrote one value, not a list."""
    return written_path(path, config)
