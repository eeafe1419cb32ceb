"""Running one guest: `simulate()` validates the scenario once, builds its world and runs it."""

from __future__ import annotations

from typing import Any

from balloonsim.scenario import Scenario, load_scenario
from balloonsim.sim.result import TIMESERIES_COLUMNS, RunResult, RunRows
from balloonsim.sim.world import Sim, _scheduled_events, build_world

__all__ = ["TIMESERIES_COLUMNS", "RunResult", "RunRows", "Sim", "_scheduled_events", "simulate", "simulate_rows"]


def simulate(scenario: Scenario | dict[str, Any], seed: int | None = None) -> RunResult:
    """Run one guest. Same scenario and seed, same result. A Scenario is taken as validated (load_scenario)."""
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    if seed is None:
        seed = sc.seed if sc.seed is not None else 0
    sim = build_world(sc, seed)
    sim.run()
    return sim.result()


def simulate_rows(scenario: Scenario | dict[str, Any], seed: int | None = None) -> RunRows:
    """`simulate()` with the time series and events as the plain rows recorded (no pandas): for callers that
    store them themselves, like an experiment's workers."""
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    if seed is None:
        seed = sc.seed if sc.seed is not None else 0
    sim = build_world(sc, seed)
    sim.run()
    return sim.rows()
