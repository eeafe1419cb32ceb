"""balloonsim: where should the memmap of hot-added memory come from?

Importing the package costs nothing: `simulate` and `RunResult` load the simulator on first use, so that the
command line (`balloonsim --help`) and the analysis do not pay for SimPy and the kernel model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from balloonsim.scenario import Scenario
    from balloonsim.sim.simulation import RunResult

__version__ = "0.1.0"


def simulate(scenario: Scenario | dict[str, Any], seed: int | None = None) -> RunResult:
    """Run one simulated guest (see balloonsim.sim.simulation.simulate)."""
    from balloonsim.sim.simulation import simulate as _simulate

    return _simulate(scenario, seed)


def __getattr__(name: str) -> Any:
    if name == "RunResult":
        from balloonsim.sim.simulation import RunResult

        return RunResult
    raise AttributeError(name)
