"""balloonsim: where should the memmap of hot-added memory come from?"""

from __future__ import annotations

__version__ = "0.1.0"


def simulate(scenario, seed=None):
    """Run one simulated guest (see balloonsim.sim.simulation.simulate)."""
    from balloonsim.sim.simulation import simulate as _simulate

    return _simulate(scenario, seed)


def __getattr__(name):
    if name == "RunResult":
        from balloonsim.sim.simulation import RunResult

        return RunResult
    raise AttributeError(name)
