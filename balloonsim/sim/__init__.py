"""One simulated guest on SimPy: drivers, onlining, workloads, OOM killer, host controllers."""

from balloonsim.sim.simulation import RunResult, Sim, simulate

__all__ = ["RunResult", "Sim", "simulate"]
