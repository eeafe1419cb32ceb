"""Check every run configuration of a design with the single-run validator before anything runs.

`check_run` (balloonsim.sim.world) knows what a valid run is (sizes, strategy and driver names, parameters);
this module only runs it over each design point and re-addresses its error to where the user wrote the bad
value: the factor level (`factors.memmap.strategy[2]`) or the base (`base.guest.boot`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from balloonsim.errors import ConfigError, written_path
from balloonsim.experiment.design import DesignPoint, iter_points, run_id
from balloonsim.experiment.keypaths import join
from balloonsim.experiment.spec import Experiment

ScenarioLoader = Callable[[dict[str, Any]], Any]


def default_loader() -> ScenarioLoader:
    from balloonsim.sim.world import check_run

    return check_run


def validate_runs(exp: Experiment, load: ScenarioLoader | None = None) -> int:
    """Validate each design point's configuration; returns the number of design points (at least one)."""
    load = load or default_loader()
    ids: dict[str, int] = {}
    count = 0
    for point in iter_points(exp):
        count += 1
        try:
            load(point.config)
        except ConfigError as exc:
            raise locate(exc.path, exc.message, point, exp) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            raise locate(join(*first["loc"]), first["msg"], point, exp) from None
        rid = run_id(point.config, 0)
        if rid in ids:
            raise ConfigError("factors", f"design points {ids[rid]} and {point.index} have the same configuration")
        ids[rid] = point.index
    if count == 0:
        raise ConfigError("exclude", "excludes every run; the design is empty")
    return count


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
