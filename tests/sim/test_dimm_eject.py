"""The ACPI DIMM driver's eject: acpi_scan_try_to_offline() (drivers/acpi/scan.c, 6.12.118 l.201, 7.3.4 l.202).
A first pass offlines every block of the device in order and notes the failures, a second pass retries only those,
and when one fails again every block the eject offlined is onlined again (acpi_bus_online() -> device_online(),
MMOP_ONLINE) and the DIMM stays. The validation replay runs this eject (balloonsim.validate.model.replay)."""

from __future__ import annotations

import pytest

from balloonsim import simulate
from balloonsim.kernel.block import BlockState
from balloonsim.kernel.errno import EBUSY
from balloonsim.kernel.guest import Guest
from balloonsim.scenario import load_scenario
from balloonsim.sim.world import Sim


def _scenario(online_type: str) -> dict:
    """A 2 GiB guest gets one 1 GiB DIMM at 10 s (udev onlines it), and the host wants it back at 300 s."""
    return {
        "duration": "10m",
        "guest": {"boot": "2G"},
        "driver": {"name": "dimm", "dimm_size": "1G"},
        "memmap": {"strategy": "kmalloc"},
        "onlining": {"agent": "udev", "delay": 1, "online_type": online_type},
        "workload": {"name": "idle"},
        "host": {"controller": "schedule", "steps": [[10, "3G"], [300, "2G"]]},
    }


def test_a_refused_eject_puts_every_block_it_offlined_back_online():
    """online_kernel: the kernel's background pins the first block of the new ZONE_NORMAL (-EBUSY twice); the
    other seven were offlined by the first pass and come back, so the guest keeps all 1 GiB (before, they stayed
    offline and MemTotal lost 896 MiB)."""
    sim = Sim(load_scenario(_scenario("online_kernel")), 1)
    sim.run()
    m = sim.metrics()
    assert m["dimm_unplug_ebusy"] == 1 and m["dimms_plugged"] == 1
    blocks = [sim.guest.blocks[b] for b in sorted(sim.guest.blocks)]
    assert len(blocks) == 8 and all(b.state is BlockState.ONLINE for b in blocks)
    assert m["blocks_online_end"] == 8 and m["memtotal_end_bytes"] > (2 << 30) + (896 << 20)  # 1 block: < 2.2 GiB
    events = sim.events.frame()
    offlines = events[events.kind == "offline"]
    assert list(offlines.block) == [blocks[0].id]  # the second pass's failure is the one logged


@pytest.mark.parametrize("online_type", ["online_movable"])
def test_an_eject_that_offlines_every_block_removes_the_dimm(online_type):
    m = simulate(_scenario(online_type), seed=1).metrics
    assert m["dimm_unplug_ebusy"] == 0 and m["blocks_online_end"] == 0 and m["memtotal_end_bytes"] < 2 << 30


def _pins(monkeypatch: pytest.MonkeyPatch, *busy: int) -> list[int]:
    """Guest.offline_memory_block() returns -EBUSY for the n-th distinct block it is asked to offline the first
    busy[n] times (a pin that goes away: a transient reference), then offlines it. Returns the block ids asked."""
    real = Guest.offline_memory_block
    calls: list[int] = []
    order: list[int] = []

    def pinned(self: Guest, block_id: int) -> int:
        calls.append(block_id)
        if block_id not in order:
            order.append(block_id)
        n = order.index(block_id)
        if n < len(busy) and calls.count(block_id) <= busy[n]:
            return -EBUSY
        return real(self, block_id)

    monkeypatch.setattr(Guest, "offline_memory_block", pinned)
    return calls


def test_a_block_that_fails_the_first_pass_and_offlines_in_the_second_is_ejected(monkeypatch):
    """acpi_bus_offline() (drivers/acpi/scan.c, 6.12.118 l.134-177, 7.3.4 l.135-178) ignores a failure in the
    first pass; acpi_scan_try_to_offline() (6.12.118 l.226-233, 7.3.4 l.227-234) then retries only the blocks that
    failed (second_pass skips those with put_online set, 6.12.118 l.155-158, 7.3.4 l.156-159), and when they
    offline now errdev stays NULL: the eject goes on to __remove_memory(). The DIMM's first block is pinned for
    the first pass only: it is tried once more after the other seven, and the DIMM goes."""
    calls = _pins(monkeypatch, 1)
    sim = Sim(load_scenario(_scenario("online_movable")), 1)
    sim.run()
    blocks = sorted(set(calls))
    assert len(blocks) == 8 and calls == blocks + blocks[:1]  # the first pass in order, then the pinned one
    m = sim.metrics()
    assert m["dimm_unplug_ebusy"] == 0 and m["dimms_plugged"] == 1
    assert not set(blocks) & set(sim.guest.blocks)
    assert m["blocks_online_end"] == 0 and m["memtotal_end_bytes"] == m["memtotal_start_bytes"]
    events = sim.events.frame()
    assert list(events[events.kind == "remove_memory"].block) == [blocks[0]]
    assert events[events.kind == "offline"].empty  # only a second-pass failure is logged


def test_a_refused_eject_also_puts_back_what_the_second_pass_offlined(monkeypatch):
    """The second pass sets put_online for a block it offlines (acpi_bus_offline(), 6.12.118 l.162-164, 7.3.4
    l.163-165) and stops at the first that fails again (l.167-170 / l.168-171); acpi_bus_online() (6.12.118 l.179,
    7.3.4 l.180), called on that failure (6.12.118 l.235-241, 7.3.4 l.236-242), onlines every block with
    put_online set, from either pass. The DIMM's first block is pinned for the first pass only, its second for
    good: the first offlines in the second pass and comes back with the six the first pass offlined."""
    calls = _pins(monkeypatch, 1, 99)
    sim = Sim(load_scenario(_scenario("online_movable")), 1)
    sim.run()
    blocks = sorted(sim.guest.blocks)
    assert len(blocks) == 8 and calls == blocks + blocks[:2]  # the second pass ends at the block pinned for good
    m = sim.metrics()
    assert m["dimm_unplug_ebusy"] == 1 and m["dimms_plugged"] == 1
    assert all(sim.guest.blocks[b].state is BlockState.ONLINE for b in blocks)
    assert m["blocks_online_end"] == 8 and m["memtotal_end_bytes"] == m["memtotal_start_bytes"] + (1 << 30)
    events = sim.events.frame()
    assert list(events[events.kind == "offline"].block) == [blocks[1]]
