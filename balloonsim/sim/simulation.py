"""Running one guest: `simulate()` validates the scenario once, builds its world and runs it."""

from __future__ import annotations

import json
from typing import Any

from balloonsim.scenario import Scenario, load_scenario
from balloonsim.sim.result import TIMESERIES_COLUMNS, RunResult, RunRows
from balloonsim.sim.world import Sim, _scheduled_events, build_world

__all__ = ["TIMESERIES_COLUMNS", "RunResult", "RunRows", "Sim", "_scheduled_events", "simulate", "simulate_rows"]

# Scenarios validated in this process, by their configuration's JSON: the replications of one design point (and a
# benchmark's repeats) pass the same table, and a loaded Scenario is never edited, so it is validated once.
_LOADED: dict[str, Scenario] = {}
_LOADED_MAX = 256


def simulate(scenario: Scenario | dict[str, Any], seed: int | None = None) -> RunResult:
    """Run one guest. Same scenario and seed, same result. A Scenario is taken as validated (load_scenario)."""
    return _run(scenario, seed).result()


def simulate_rows(scenario: Scenario | dict[str, Any], seed: int | None = None) -> RunRows:
    """`simulate()` with the time series and events as recorded (no pandas): for callers that store them
    themselves, like an experiment's workers."""
    return _run(scenario, seed).rows()


def _run(scenario: Scenario | dict[str, Any], seed: int | None) -> Sim:
    sc = scenario if isinstance(scenario, Scenario) else _load(scenario)
    if seed is None:
        seed = sc.seed if sc.seed is not None else 0
    sim = build_world(sc, seed)
    sim.run()
    return sim


def _load(config: dict[str, Any]) -> Scenario:
    """load_scenario(config), remembered for an identical table (one that is not plain JSON is not remembered)."""
    try:
        key = json.dumps(config, sort_keys=True)
    except (TypeError, ValueError):
        return load_scenario(config)
    sc = _LOADED.get(key)
    if sc is None:
        sc = load_scenario(config)
        if len(_LOADED) >= _LOADED_MAX:
            _LOADED.clear()
        _LOADED[key] = sc
    return sc
