"""The replay's pieces: kernel profiles by release, the ACPI eject, virtio-mem Sub Block Mode."""

from __future__ import annotations

from balloonsim.kernel import BlockState, Guest, GuestConfig
from balloonsim.memmap import get_strategy
from balloonsim.units import GiB, MiB
from balloonsim.validate.model import VirtioMemSbm, _acpi_eject, profile_for


def test_profile_for_release():
    assert profile_for("6.1") == "6.1"  # memmap_on_memory single-block, no nr_memmap_pages
    assert profile_for("6.12") == "6.12"
    assert profile_for("6.18") == "6.18"
    assert profile_for("6.14") == "6.12"


def _guest(**kw) -> Guest:
    return Guest(GuestConfig(boot=[2 * GiB], block_size=128 * MiB, **kw), get_strategy("kmalloc", key=""))


def test_acpi_eject_refused_puts_blocks_back_online():
    """acpi_scan_try_to_offline(): a block that cannot be offlined fails the eject, and the blocks the eject
    offlined are onlined again (acpi_bus_online)."""
    g = _guest()
    g.backing.populate(4 * GiB >> 12, 5 * GiB >> 12)
    assert g.add_memory(0, 4 * GiB, 1 * GiB) == 0
    for b in sorted(g.blocks):
        assert g.online_memory_block(b, "online_movable") == 0
    g.blocks[35].unmovable = 1
    assert _acpi_eject(g, 4 * GiB, 1 * GiB) is False
    assert all(b.state is BlockState.ONLINE for b in g.blocks.values())
    g.blocks[35].unmovable = 0
    assert _acpi_eject(g, 4 * GiB, 1 * GiB) is True
    assert not g.blocks


def test_virtio_mem_partial_block():
    """300 MiB plugged = two whole blocks and 22 of 64 subblocks of the third: all three present, 300 MiB
    managed (the rest of the third block fake-offline)."""
    g = _guest()
    g.auto_online = "online_movable"
    vm = VirtioMemSbm(g, 4 * GiB, 4 * GiB, 0)
    assert vm.resize(1 * GiB) == 1 * GiB
    assert vm.resize(300 * MiB) == 300 * MiB
    assert sorted(g.blocks) == [32, 33, 34]
    assert sum(b.managed for b in g.blocks.values()) == 300 * MiB >> 12
    assert vm.plugged[34] == set(range(22))
    assert vm.resize(0) == 0
    assert not g.blocks
