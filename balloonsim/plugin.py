"""The contract of a simulated component: drivers, onlining agents, workloads and host controllers.

- `Params`: a pydantic model of the keys the component takes in its scenario table (unknown keys refused).
  The scenario validates it, by the registry, before any world exists; errors name `section.key`.
- `__init__(world, params)`: every check that needs the world (the guest's memory block size, its kernel
  profile, the free physical space, the kernel hooks it claims), raising ConfigError with the scenario key
  path, and the component's initial state. It builds nothing that runs, so the up-front check of an experiment
  can construct each run's world and throw it away: whatever a component can refuse, it refuses here.
- `start()`: only starts the component's SimPy processes (or its periodic checks, balloonsim.sim.clock), at time
  0, once every component exists.
- `metrics()`: the component's own result columns.

Memmap strategies are the one kind outside this contract: the kernel model, not the world, holds them, so they
are built from their parameters alone (`cls(**params)`, see balloonsim.memmap.base), by the same registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import numpy as np
    import simpy

    from balloonsim.kernel.guest import Guest
    from balloonsim.scenario import Scenario
    from balloonsim.sim.clock import Clock
    from balloonsim.sim.eventlog import EventLog
    from balloonsim.sim.host import HostMemory
    from balloonsim.sim.memory import UserMemory


class World(Protocol):
    """What a component sees of the run it belongs to (balloonsim.sim.world.Sim)."""

    scenario: Scenario
    env: Clock  # SimPy's environment, with periodic checks (balloonsim.sim.clock)
    guest: Guest
    host: HostMemory
    memory: UserMemory
    events: EventLog
    target_bytes: int
    target_event: simpy.Event
    driver: Any  # the run's driver, once constructed (controllers ask it for committed_bytes())

    def rng(self, name: str) -> np.random.Generator: ...

    def set_target(self, nbytes: int) -> None: ...


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Plugin:
    """Base of every component kind; see the module docstring for the contract."""

    Params: ClassVar[type[BaseModel]] = NoParams
    name: ClassVar[str] = ""  # the registered name, for messages and rng streams

    def __init__(self, world: World, params: BaseModel) -> None:
        self.sim = world
        self.p = params

    def start(self) -> None:
        """Start this component's SimPy processes (none by default)."""

    def metrics(self) -> dict[str, Any]:
        """This component's result columns (none by default)."""
        return {}
