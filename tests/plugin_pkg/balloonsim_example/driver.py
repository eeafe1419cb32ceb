"""`one-shot`: hot-add one fully backed range, once, at a given time (a DIMM plugged once, never removed)."""

from __future__ import annotations

from typing import Any

from balloonsim.drivers.base import Driver, DriverParams, Process
from balloonsim.errors import ConfigError
from balloonsim.kernel.extents import Extents
from balloonsim.plugin import World
from balloonsim.types import Duration, Size
from balloonsim.units import PAGE_SHIFT


class OneShotParams(DriverParams):
    size: Size = 1 << 30
    at: Duration = 60.0


class OneShot(Driver):
    Params = OneShotParams
    name = "one-shot"
    p: OneShotParams

    def __init__(self, sim: World, params: OneShotParams) -> None:
        super().__init__(sim, params)  # every check here: the up-front check of an experiment builds this
        if params.size % self.guest.block_size:
            raise ConfigError("driver.size", f"must be a multiple of the memory block ({self.guest.block_size >> 20}M)")
        self.added = 0

    def start(self) -> None:
        self.env.process(self.run())

    def run(self) -> Process:
        yield self.env.timeout(self.p.at)
        start = self.find_free_range(self.p.size, self.guest.block_size)
        pages = self.p.size >> PAGE_SHIFT
        if start is None:
            return
        got = self.sim.host.populate(pages)
        if got < pages:  # the host cannot back it all: no DIMM
            self.sim.host.release(got)
            return
        first = start >> PAGE_SHIFT
        self.guest.backing.populate(first, first + pages)
        if self.hot_add(self.p.node, start, self.p.size, Extents.span(first, first + pages)) == 0:
            self.added = self.p.size

    def metrics(self) -> dict[str, Any]:
        return {"one_shot_added_bytes": self.added}
