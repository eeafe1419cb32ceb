"""A DIMM whose add_memory() failed stays plugged, and from 6.9 every later DIMM's ACPI notification retries it:
acpi_scan_device_check() rescans the device's parent (acpi_scan_rescan_bus() -> acpi_bus_scan()), which attaches
every memory device without a handler, and a failed acpi_memory_device_add() leaves it without one (6.12.118
drivers/acpi/scan.c l.368-409, l.2255-2281; drivers/acpi/acpi_memhotplug.c l.318-323; "ACPI: scan: Consolidate
Device Check and Bus Check notification handling", 6.9). 6.1.192 scans only the notified device (l.303-330).
Recorded: validation/recorded/pressure-128M-series-free-80M--*.json, 6.12 and 6.18 logging k(k+1)/2 failed calls
for k DIMMs that never fit, 6.1 k."""

from __future__ import annotations

import pytest

from balloonsim.drivers.dimm import AcpiDimm, DimmParams
from balloonsim.kernel import Guest, GuestConfig
from balloonsim.kernel.errno import EEXIST, ENOMEM
from balloonsim.kernel.page_alloc import Transaction
from balloonsim.memmap import get_strategy
from balloonsim.units import GiB, MiB
from balloonsim.validate.model import fill
from balloonsim.validate.world import ReplayWorld

DIMM = 128 * MiB


def _short_guest(kernel: str, room: int = 0) -> tuple[Guest, AcpiDimm, Transaction]:
    """A 2 GiB guest whose free memory a tmpfs-like fill has brought down to its min watermarks (plus `room` pages
    of ZONE_DMA32): with none, no 2 MiB memmap fits."""
    g = Guest(GuestConfig(boot=[2 * GiB], block_size=DIMM, kernel=kernel), get_strategy("kmalloc", key=""))
    world = ReplayWorld(g, g.config)
    dimm = AcpiDimm(world, DimmParams(dimm_size=DIMM))
    world.driver = dimm
    txn = Transaction()
    fill(
        g,
        {
            (nid, zt.value): z.wmark_min + (room if zt.value == "DMA32" else 0)
            for (nid, zt), z in g.alloc.zones.items()
            if z.managed
        },
        txn,
    )
    return g, dimm, txn


@pytest.mark.parametrize(("kernel", "retries"), [("6.1", False), ("6.8", False), ("6.12", True), ("6.18", True)])
def test_a_failed_dimm_is_retried_at_every_later_notification_from_6_9(kernel, retries):
    g, dimm, txn = _short_guest(kernel)
    assert g.profile.acpi_rescan_retries is retries
    assert dimm.notify(0, 4 * GiB, DIMM) == -ENOMEM
    assert dimm.notify(0, 4 * GiB + DIMM, DIMM) == -ENOMEM
    assert dimm.unattached == [(0, 4 * GiB, DIMM), (0, 4 * GiB + DIMM, DIMM)]
    assert sum(g.stats.add_errors.values()) == (3 if retries else 2)  # the first DIMM again, then the second
    for take in txn.takes:  # the pressure goes
        g.alloc.release(take)
    assert dimm.notify(0, 4 * GiB + 2 * DIMM, DIMM) == 0
    added = sorted(start for start, _ in dimm.dimms)
    if retries:  # the rescan attaches the two waiting DIMMs first, in the order they were plugged
        assert added == [4 * GiB, 4 * GiB + DIMM, 4 * GiB + 2 * DIMM] and not dimm.unattached
    else:
        assert added == [4 * GiB + 2 * DIMM] and len(dimm.unattached) == 2


def test_the_next_dimm_goes_above_one_still_plugged_and_the_host_takes_unused_ones_back_first():
    g, dimm, _ = _short_guest("6.12")
    dimm.sim.host.populate(DIMM // 4096)  # QEMU's object_add
    assert dimm.notify(0, 4 * GiB, DIMM) == -ENOMEM
    assert 4 * GiB // DIMM not in g.blocks  # nothing of it in the guest: find_free_range() alone would reuse it
    assert dimm.next_address(DIMM) == 4 * GiB + DIMM
    populated = dimm.sim.host.populated
    dimm.drop_unattached()  # device_del: nothing to offline, the host's backing goes back
    assert dimm.unattached == [] and dimm.next_address(DIMM) == 4 * GiB
    assert dimm.sim.host.populated == populated - DIMM // 4096


def test_a_retry_over_the_sections_a_failed_add_left_binds_the_dimm_without_its_memory():
    """A 256 MiB DIMM whose second section's memmap does not fit leaves the first section (Guest._leave_sections());
    the next notification's retry gets -EEXIST there, which acpi_memory_enable_device() counts as enabled ("Add
    num_enable even if add_memory() returns -EEXIST, so the device is bound to this driver", 6.12.118
    drivers/acpi/acpi_memhotplug.c l.215-238): the device is bound with no memory and no rescan tries it again."""
    g, dimm, txn = _short_guest("6.12", room=800)
    assert dimm.notify(0, 4 * GiB, 2 * DIMM) == -ENOMEM and g.stats.memmap_stale_pages == 512
    assert len(g.memory_groups) == 0  # the failed attempt's group is unregistered (acpi_memory_device_free())
    for take in txn.takes:
        g.alloc.release(take)
    assert dimm.notify(0, 4 * GiB + 2 * DIMM, DIMM) == 0
    assert g.stats.add_errors == {-ENOMEM: 1, -EEXIST: 1} and dimm.unattached == []
    assert dimm.dimms == [(4 * GiB + 2 * DIMM, DIMM)]  # the bound DIMM has no memory in the guest
    assert dimm.empty == [(0, 4 * GiB, 2 * DIMM)] and dimm.next_address(DIMM) == 4 * GiB + 3 * DIMM  # still plugged
    assert dimm.notify(0, 4 * GiB + 3 * DIMM, DIMM) == 0 and g.stats.add_errors == {-ENOMEM: 1, -EEXIST: 1}
