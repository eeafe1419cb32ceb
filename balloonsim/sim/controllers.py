"""Host controllers: they set the guest's memory target over time.

The target is the guest size the host wants, in bytes of RAM visible to the guest (boot memory
plus what hot-add and the balloon give, minus what the balloon takes). Drivers turn it into their
protocol: a xenstore memory/target, Hyper-V hot-add and balloon requests, a virtio-mem
requested_size, an ACPI DIMM plug.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from balloonsim.kernel.meminfo import vm_memory_committed
from balloonsim.plugin import Plugin, World
from balloonsim.sim.clock import URGENT, At, Poll
from balloonsim.types import Duration, Size
from balloonsim.units import PAGE_SHIFT, parse_duration, parse_size


class ControllerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    memory: Size = 64 << 30  # host memory the guest may still be backed with, beyond its boot memory
    maximum: Size | None = None  # the largest target (default: guest.max_addr)
    minimum: Size = 512 << 20


class Controller(Plugin):
    """Base: `run()` is the host's process moving the target; `clamp` keeps it within [minimum, maximum]."""

    Params: ClassVar[type[BaseModel]] = ControllerParams
    p: ControllerParams

    def __init__(self, sim: World, params: ControllerParams) -> None:
        super().__init__(sim, params)
        self.maximum = params.maximum or sim.scenario.guest.max_addr

    def clamp(self, nbytes: float) -> int:
        return int(max(self.p.minimum, min(self.maximum, nbytes)))

    def start(self) -> None:
        self.sim.env.process(self.run())

    def run(self):
        yield self.sim.env.timeout(0)

    def used_bytes(self) -> int:
        """The guest's committed memory when no driver reports it: vm_memory_committed() (Committed_AS), which
        holds no kernel allocation."""
        return vm_memory_committed(self.sim.guest.alloc) << PAGE_SHIFT


class StaticParams(ControllerParams):
    target: Size = 8 << 30
    at: Duration = 10.0


class Static(Controller):
    """One target, set once at `at` seconds."""

    Params = StaticParams
    p: StaticParams

    def run(self):
        yield self.sim.env.timeout(self.p.at)
        self.sim.set_target(self.clamp(self.p.target))


class ScheduleParams(ControllerParams):
    steps: list[tuple[Duration, Size]] = Field(default_factory=lambda: [(10.0, 8 << 30)])

    @model_validator(mode="before")
    @classmethod
    def _pairs(cls, v):
        steps = v.get("steps") if isinstance(v, dict) else None
        if steps is not None:
            out = []
            for i, s in enumerate(steps):
                if not isinstance(s, list | tuple) or len(s) != 2:
                    raise ValueError(f"steps[{i}]: expected [time, size], got {s!r}")
                out.append((parse_duration(s[0]), parse_size(s[1])))
            times = [t for t, _ in out]
            if times != sorted(times):
                raise ValueError("steps: times must not decrease")
            v = {**v, "steps": out}
        return v


class Schedule(Controller):
    """A Xen-style target schedule: xenstore memory/target written at given times."""

    Params = ScheduleParams
    p: ScheduleParams

    def run(self):
        env = self.sim.env
        for t, size in self.p.steps:
            if t > env.now:
                yield env.timeout(t - env.now)
            self.sim.set_target(self.clamp(size))


class HyperVBufferParams(ControllerParams):
    buffer_percent: float = Field(20.0, ge=0, le=2000)  # Hyper-V dynamic memory "memory buffer"
    startup: Size | None = None  # startup RAM (default: boot memory)
    interval: Duration = 1.0  # the host reads pressure reports every second
    report_delay: Duration = 45.0  # hv_balloon pressure_report_delay


class HyperVBuffer(Controller):
    """Hyper-V dynamic memory: target = committed x (1 + buffer%), within [minimum, maximum]."""

    Params = HyperVBufferParams
    p: HyperVBufferParams

    def run(self):
        """The host reads the guest's pressure report every `interval` after `report_delay`. A report says what the
        last one said until something it counts changes: committed memory (anon and swap) or the floor (MemTotal,
        which the balloon moves), through the allocator (a change of page cache only leaves them as they were), or
        what a process did (a driver's hot-add, an onlining: the added-but-not-onlined pages and the floor change
        outside the allocator). So the host reads the first report after such a change, in the place its 1 s timer had
        (balloonsim.sim.clock), and sets the target from it."""
        env = self.sim.env
        self._startup = self.p.startup or sum(self.sim.scenario.guest.boot)
        self.sim.set_target(self.clamp(self._startup))
        yield env.timeout(self.p.report_delay)
        self._committed = -1  # what the last report read: the target is set from it, and only the host sets it
        watch = [self.sim.guest.alloc.watch_committed, env.watch_steps]
        Poll(env, watch, env.now, self.p.interval, 0, self._report).run(0)

    def _report(self, k: int) -> None:
        committed = self.sim.driver.committed_bytes() if self.sim.driver else self.used_bytes()
        if committed != self._committed:  # else the target is already the one this report gives
            self._committed = committed
            self.sim.set_target(self.clamp(max(self._startup, committed * (1 + self.p.buffer_percent / 100))))


class MomParams(ControllerParams):
    interval: Duration = 10.0
    min_guest_free_percent: float = Field(0.20, gt=0, lt=1)
    max_balloon_change_percent: float = Field(0.05, gt=0, lt=1)
    host_pressure_percent: float = Field(0.20, ge=0, lt=1)


class MomRules(Controller):
    """oVirt MOM's default balloon rules: grow by 5% while the guest's free memory is under 20%;
    shrink by 5% while the host is under pressure and the guest has room."""

    Params = MomParams
    p: MomParams

    def start(self) -> None:
        """MOM's loop wakes every `interval` from the start. A poll that finds what the last one found, when the
        last one left the target alone, leaves it alone again; so MOM polls only after what it reads changed:
        the guest's memory (a change of page cache only leaves managed, and free plus cached memory, as they
        were), or anything a process did (a driver's hot-add, an onlining, the host's memory), or after a poll
        that moved the target (balloonsim.sim.clock)."""
        At(self.sim.env, 0.0, URGENT).callbacks.append(self._begin)  # where its process began

    def _begin(self, _event) -> None:
        env = self.sim.env
        self._target = sum(self.sim.scenario.guest.boot)
        self.sim.set_target(self._target)
        self._host_total = self.sim.host.free_pages + self.sim.host.populated
        watch = [self.sim.guest.alloc.watch_committed, env.watch_steps]
        poll = Poll(env, watch, env.now, self.p.interval, 0, self._poll)
        poll.follow(1)

    def _poll(self, k: int) -> int | None:
        a = self.sim.guest.alloc
        total = a.total("managed")
        free = a.total("free") + a.total("pagecache")
        step = max(1, int(total * self.p.max_balloon_change_percent)) << PAGE_SHIFT
        host_pressure = self._host_total and self.sim.host.free_pages < self.p.host_pressure_percent * self._host_total
        target = self._target
        if total and free < self.p.min_guest_free_percent * total:
            target = self.clamp(target + step)
        elif host_pressure and total and free > 2 * self.p.min_guest_free_percent * total:
            target = self.clamp(target - step)
        self.sim.set_target(target)
        moved = target != self._target
        self._target = target
        return k + 1 if moved else None


class PiPsiParams(ControllerParams):
    setpoint: float = Field(0.05, ge=0, le=1)  # wanted stall fraction (PSI some avg10)
    kp: float = 4.0  # target change per unit of error, as a fraction of the current target
    ki: float = 0.5
    interval: Duration = 5.0


class PiPsi(Controller):
    """A PI controller on the guest's PSI-like stall measure."""

    Params = PiPsiParams
    p: PiPsiParams

    def run(self):
        env = self.sim.env
        target = float(sum(self.sim.scenario.guest.boot))
        integral = 0.0
        self.sim.set_target(int(target))
        while True:
            yield env.timeout(self.p.interval)
            err = self.sim.memory.psi_avg10 - self.p.setpoint
            integral = max(-1.0, min(1.0, integral + err * self.p.interval / 60))
            proportional = target * self.p.kp * err * self.p.interval / 60
            target = self.clamp(target + proportional + self.p.ki * integral * (1 << 30))
            self.sim.set_target(int(target))
