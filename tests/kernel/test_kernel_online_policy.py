"""memory_hotplug.online_policy=auto-movable (mm/memory_hotplug.c auto_movable_zone_for_pfn() and
auto_movable_can_online_movable(), 5.15: e83a437faa62, 028fc57a1c36, 445fcf7c7214, 3fcebf90209a)."""

import pytest
from kmodel_helpers import populate

from balloonsim.errors import ConfigError
from balloonsim.kernel import Guest, GuestConfig, ZoneType
from balloonsim.memmap import get_strategy
from balloonsim.units import PAGE_SHIFT, GiB, MiB

BLOCK = 128 * MiB


def _guest(**cfg) -> Guest:
    cfg.setdefault("boot", [4 * GiB])
    cfg.setdefault("block_size", BLOCK)
    cfg.setdefault("max_addr", 256 * GiB)
    cfg.setdefault("online_policy", "auto-movable")
    return Guest(GuestConfig(**cfg), get_strategy("kmalloc"))


def _dimm(g: Guest, start: int, size: int, nid: int = 0, online: str = "online") -> list[str]:
    """An ACPI DIMM: one static memory group, added and onlined block by block; the zones it got."""
    populate(g, start, size)
    group = g.register_memory_group(nid, max_pages=size >> PAGE_SHIFT)
    assert g.add_memory(nid, start, size, group=group) == 0
    zones = []
    for bid in range(start // BLOCK, (start + size) // BLOCK):
        assert g.online_memory_block(bid, online) == 0
        zones.append(g.blocks[bid].zone.type.value)
    return zones


@pytest.mark.parametrize("kernel", ["4.19", "5.12"])
def test_no_online_policy_before_5_15(kernel):
    with pytest.raises(ConfigError, match="guest.online_policy"):
        _guest(kernel=kernel)
    _guest(kernel="6.1")


def test_a_dimm_is_never_split_across_zones():
    # 4 GiB boot: 301 % of it (about 12 GiB) may be movable. A 16 GiB DIMM does not fit as a whole, so the
    # static group goes to the kernel zone from its first block on (the old block-by-block rule put the first
    # 12 GiB in ZONE_MOVABLE and the rest in ZONE_NORMAL)
    g = _guest()
    assert set(_dimm(g, 8 * GiB, 16 * GiB)) == {"Normal"}
    g = _guest()
    assert set(_dimm(g, 8 * GiB, 8 * GiB)) == {"Movable"}


def test_once_part_of_a_dimm_is_kernel_the_rest_follows():
    g = _guest()
    populate(g, 8 * GiB, 1 * GiB)
    group = g.register_memory_group(0, max_pages=1 * GiB >> PAGE_SHIFT)
    assert g.add_memory(0, 8 * GiB, 1 * GiB, group=group) == 0
    assert g.online_memory_block(64, "online_kernel") == 0
    for bid in range(65, 72):
        assert g.online_memory_block(bid) == 0
        assert g.blocks[bid].zone.type is ZoneType.NORMAL  # "If anything is !MOVABLE online the rest !MOVABLE."


def test_only_boot_kernel_memory_counts():
    # hot-added kernel memory does not raise the allowance: with 8 GiB onlined online_kernel, a 13 GiB DIMM is
    # under 301 % of 4 + 8 GiB but over 301 % of the 4 GiB of boot memory: the kernel zone
    g = _guest()
    _dimm(g, 8 * GiB, 8 * GiB, online="online_kernel")
    assert set(_dimm(g, 16 * GiB, 13 * GiB)) == {"Normal"}
    g = _guest()
    assert set(_dimm(g, 16 * GiB, 12 * GiB)) == {"Movable"}  # 12 GiB <= 3.01 x 4 GiB


def test_dynamic_group_decides_per_unit_and_its_own_kernel_memory_counts():
    # virtio-mem (SBM): unit = one memory block; its own kernel-zone blocks raise its allowance
    g = _guest(boot=[1 * GiB])
    group = g.register_memory_group(0, unit_pages=BLOCK >> PAGE_SHIFT)
    zones = []
    for bid in range(32, 32 + 40):  # 5 GiB, one block at a time as virtio-mem adds them
        start = bid * BLOCK
        populate(g, start, BLOCK)
        assert g.add_memory(0, start, BLOCK, group=group) == 0
        assert g.online_memory_block(bid) == 0
        zones.append(g.blocks[bid].zone.type)
    movable = zones.count(ZoneType.MOVABLE)
    kernel = zones.count(ZoneType.NORMAL)
    boot_early = sum(z.boot_present for z in g.alloc.iter_zones() if z.type.is_kernel)
    # at the end: MOVABLE <= 301 % of (boot + the group's kernel memory)
    assert movable * (BLOCK >> PAGE_SHIFT) <= 301 * (boot_early + kernel * (BLOCK >> PAGE_SHIFT)) // 100
    assert movable > 3 * 8 and kernel > 0  # more than the 3 GiB boot memory alone would allow
    assert group.present_kernel_pages == kernel * (BLOCK >> PAGE_SHIFT)
    assert group.present_movable_pages == movable * (BLOCK >> PAGE_SHIFT)


def test_numa_aware_checks_the_node_too():
    # node 0: 7 GiB boot, node 1: 1 GiB. 4 GiB on node 1 fits globally (3.01 x 8 GiB) but not on node 1
    g = _guest(boot=[7 * GiB, 1 * GiB])
    assert set(_dimm(g, 16 * GiB, 4 * GiB, nid=1)) == {"Normal"}
    g = _guest(boot=[7 * GiB, 1 * GiB], auto_movable_numa_aware=False)
    assert set(_dimm(g, 16 * GiB, 4 * GiB, nid=1)) == {"Movable"}


def test_ratio_zero_is_always_kernel():
    g = _guest(auto_movable_ratio=0)
    assert set(_dimm(g, 8 * GiB, 1 * GiB)) == {"Normal"}
