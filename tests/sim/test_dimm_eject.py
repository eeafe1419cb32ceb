"""The ACPI DIMM driver's eject: acpi_scan_try_to_offline() (drivers/acpi/scan.c, 6.12.118 l.201, 7.3.4 l.202).
A first pass offlines every block of the device in order and notes the failures, a second pass retries only those,
and when one fails again every block the eject offlined is onlined again (acpi_bus_online() -> device_online(),
MMOP_ONLINE) and the DIMM stays. The validation replay does the same (balloonsim.validate.model._acpi_eject)."""

from __future__ import annotations

import pytest

from balloonsim import simulate
from balloonsim.kernel.block import BlockState
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
