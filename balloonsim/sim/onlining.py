"""Who onlines hot-added memory blocks, and when.

- `auto`: the kernel onlines at the end of add_memory(), synchronously (memhp_default_state /
  auto_online_blocks); `online_policy = "auto-movable"` in [guest] picks zones by ratio.
- `udev`: a udev rule writes `online` to memoryN/state after a delay drawn from a distribution.
- `starving-agent`: a userspace agent whose latency grows with memory pressure (PSI avg10), and which
  the OOM killer can kill (then systemd restarts it): the reason auto-online exists
  (31bc3858ea3e, "memory-hotplug: add automatic onlining policy for the newly added memory").
- `offline`: nobody onlines (the default of many distribution kernels).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from balloonsim.errors import ConfigError
from balloonsim.kernel.errno import errname
from balloonsim.plugin import Plugin, World
from balloonsim.sim.distributions import Dist
from balloonsim.sim.memory import Task
from balloonsim.types import Duration, Size

OnlineType = Literal["online", "online_kernel", "online_movable"]


class AgentParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    online_type: OnlineType = "online"


class OnliningAgent(Plugin):
    """Base class: `block_added` hears each new block's uevent; `start()` runs before the drivers'."""

    Params: ClassVar[type[BaseModel]] = AgentParams
    p: AgentParams

    def __init__(self, sim: World, params: AgentParams) -> None:
        super().__init__(sim, params)
        self.rng = sim.rng("onlining")

    def block_added(self, block_id: int) -> None:
        """The uevent of a new memory block (KOBJ_ADD)."""

    def online(self, block_id: int) -> int:
        sim = self.sim
        block = sim.guest.blocks.get(block_id)
        if block is None or block.state.value == "online":
            return 0
        ret = sim.guest.online_memory_block(block_id, self.p.online_type)
        sim.events.log(sim.env.now, "online", block_id, errname(ret) if ret else self.p.online_type)
        return ret


class AutoOnline(OnliningAgent):
    """The kernel onlines every added block inside add_memory()."""

    def __init__(self, sim: World, params: AgentParams) -> None:
        super().__init__(sim, params)
        guest = sim.guest
        allowed = guest.profile.auto_online_types
        if params.online_type not in allowed:
            raise ConfigError(
                "onlining.online_type",
                f"kernel {guest.profile.name} auto-onlines only with {', '.join(t for t in allowed if t != 'offline')}",
            )
        guest.auto_online = params.online_type
        guest.auto_online_hook = lambda bid, ret: self.sim.events.log(
            self.sim.env.now, "online", bid, errname(ret) if ret else f"auto {self.p.online_type}"
        )


class UdevParams(AgentParams):
    delay: Dist = Field(default_factory=lambda: Dist(dist="lognormal", median=0.5, sigma=0.5))


class Udev(OnliningAgent):
    """A udev rule onlines each block after a random delay."""

    Params = UdevParams
    p: UdevParams

    def block_added(self, block_id: int) -> None:
        self.sim.env.process(self._later(block_id, self.p.delay.sample(self.rng)))

    def _later(self, block_id: int, delay: float):
        yield self.sim.env.timeout(delay)
        self.online(block_id)


class StarvingAgentParams(AgentParams):
    base_latency: Dist = Field(default_factory=lambda: Dist(dist="lognormal", median=1.0, sigma=0.5))
    pressure_factor: float = Field(30.0, ge=0)  # latency x (1 + factor * psi_avg10)
    rss: Size = 64 << 20  # the agent's own memory: an OOM candidate
    oom_score_adj: int = Field(0, ge=-1000, le=1000)
    restart_delay: Duration = 10.0  # systemd RestartSec


class StarvingAgent(OnliningAgent):
    """A userspace onlining daemon that slows down under pressure and can be OOM-killed."""

    Params = StarvingAgentParams
    p: StarvingAgentParams

    def __init__(self, sim: World, params: StarvingAgentParams) -> None:
        super().__init__(sim, params)
        self.queue: list[int] = []
        self.task: Task | None = None
        self.wakeup = sim.env.event()
        self.kills = 0

    def start(self) -> None:
        """The daemon starts: its task faults in its memory, then it waits for uevents."""
        self._spawn()
        self.sim.env.process(self.run())

    def _spawn(self) -> None:
        mem = self.sim.memory
        self.task = mem.spawn(
            "onlining-agent", self.p.rss >> 12, self.p.oom_score_adj, on_kill=self._killed, busy=False
        )  # a daemon that sleeps until a uevent: not a running task for PSI
        mem.allocate(self.task, self.p.rss >> 12)

    def _killed(self, task) -> None:
        self.kills += 1
        self.task = None
        self.sim.events.log(self.sim.env.now, "agent_killed", -1, "onlining agent OOM-killed")
        self.sim.env.process(self._restart())

    def _restart(self):
        yield self.sim.env.timeout(self.p.restart_delay)
        self._spawn()
        self._kick()

    def _kick(self) -> None:
        if not self.wakeup.triggered:
            self.wakeup.succeed()

    def block_added(self, block_id: int) -> None:
        self.queue.append(block_id)
        self._kick()

    def run(self):
        env = self.sim.env
        while True:
            if not self.queue or self.task is None:
                yield self.wakeup
                self.wakeup = env.event()
                continue
            latency = self.p.base_latency.sample(self.rng) * (1 + self.p.pressure_factor * self.sim.memory.psi_avg10)
            yield env.timeout(latency)
            if self.task is None:  # killed while working: the block stays queued
                continue
            self.online(self.queue.pop(0))


class NoOnline(OnliningAgent):
    """Nobody onlines: the blocks stay offline."""
