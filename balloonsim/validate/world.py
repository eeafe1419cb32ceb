"""The world a shipped driver sees when it is replayed against a recording (balloonsim.plugin.World).

`balloonsim validate` checks the drivers users run, not a copy of them: the recording's resize steps set the
host's target, and drivers/virtio_mem plugs, adds, fake-offlines and removes on the recorded guest as it would
in a study; its device_add and device_del steps are drivers/dimm.py's add() and eject(). What the recorded
machine had is all there is: QEMU's memory backend backs every plug (a host that never runs out), nothing runs
in the guest (no workload, no OOM killer), and the kernel's own auto-online onlines what is added (the guest's
`auto_online`, from memhp_default_state), as in the recorded guest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from balloonsim.kernel import Guest, GuestConfig
from balloonsim.sim.clock import Clock
from balloonsim.sim.eventlog import EventLog
from balloonsim.sim.host import HostMemory


@dataclass(frozen=True)
class RecordedScenario:
    """What a driver reads of its scenario: the guest's configuration (`boot`, what the host assigned)."""

    guest: GuestConfig


class ReplayWorld:
    """The recorded guest, a host that backs every request, and the host's target, set by the replay."""

    def __init__(self, guest: Guest, config: GuestConfig):
        self.scenario = RecordedScenario(config)
        self.env = Clock()
        self.guest = guest
        self.host = HostMemory(guest.max_pfn)  # QEMU's memory backend: as much as the guest can address
        self.memory: Any = None  # no workload: nothing maps user memory
        self.events = EventLog()
        self.target_bytes = sum(config.boot)
        self.target_event: simpy.Event = self.env.event()
        self.driver: Any = None

    def rng(self, name: str) -> np.random.Generator:
        """No recorded step draws at random: one fixed stream, whatever the name."""
        return np.random.default_rng(0)

    def set_target(self, nbytes: int) -> None:
        """The host's new target (QEMU's requested-size for virtio-mem): wakes whoever waits on it."""
        if nbytes != self.target_bytes:
            self.target_bytes = nbytes
            ev, self.target_event = self.target_event, self.env.event()
            ev.succeed()

    def run_for(self, seconds: float) -> None:
        """Let the guest's processes run for `seconds` of simulated time (what the recording waited)."""
        self.env.run(until=self.env.now + seconds)
