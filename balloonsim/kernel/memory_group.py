"""Memory groups and the auto-movable online policy (mm/memory_hotplug.c, 5.15+).

`memory_hotplug.online_policy=auto-movable` (e83a437faa62) decides per memory group whether plain "online"
puts a block in ZONE_MOVABLE, keeping MOVABLE : KERNEL_EARLY within `auto_movable_ratio` percent, globally and,
with `auto_movable_numa_aware`, per node (auto_movable_zone_for_pfn(), auto_movable_can_online_movable()):
- KERNEL_EARLY counts only present pages of boot memory in kernel zones (zone->present_early_pages,
  4b0970024408): hot-added kernel memory never raises the allowance ("We don't allow for hotplugged memory in
  a KERNEL zone to increase the amount of MOVABLE memory we can have"), except inside the current dynamic
  group.
- A static group (one ACPI DIMM, 2a1578397a16) is decided as a whole: once anything of it is in a kernel zone,
  the rest follows ("If anything is !MOVABLE online the rest !MOVABLE"), and otherwise the test covers all of
  it that is not online yet, so a DIMM is never split across zones.
- A dynamic group (one virtio-mem device, ffaa6ce835ea) is decided per unit (a memory block in SBM, a big block
  in BBM); the other dynamic groups' movable pages, and the early kernel pages they need to stay within the
  ratio, are taken out of the stats first (auto_movable_stats_account_group()).
- No group (hv_balloon, the Xen balloon): each block alone.
Present pages, not managed ones, so that ballooning does not move the ratio.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from balloonsim.kernel.zone import Zone, ZoneType
from balloonsim.units import PAGES_PER_SECTION, align_down


@dataclass(eq=False)
class MemoryGroup:
    """struct memory_group (include/linux/memory.h, 028fc57a1c36): a static one's size, a dynamic one's unit."""

    nid: int
    dynamic: bool
    max_pages: int = 0  # static: the pages the group will ever have (s.max_pages)
    unit_pages: int = 0  # dynamic: what is added and removed at once (d.unit_pages)
    present_kernel_pages: int = 0
    present_movable_pages: int = 0

    def adjust_present(self, zone: Zone, nr_pages: int) -> None:
        """adjust_present_page_count(): the group's share of present pages, by zone kind (836809ec75cc)."""
        if zone.type is ZoneType.MOVABLE:
            self.present_movable_pages += nr_pages
        else:
            self.present_kernel_pages += nr_pages


def can_online_movable(
    zones: Iterable[Zone],
    groups: Iterable[MemoryGroup],
    nid: int | None,
    group: MemoryGroup | None,
    nr: int,
    ratio: int,
) -> bool:
    """auto_movable_can_online_movable(): could `nr` more pages go to ZONE_MOVABLE (node `nid`, None: all)?"""
    kernel_early = movable = 0
    for z in zones:
        if (nid is not None and z.nid != nid) or not z.present:
            continue
        if z.type is ZoneType.MOVABLE:
            movable += z.present
        else:
            kernel_early += z.boot_present  # present_early_pages
    req_kernel_early = group_movable = 0
    for other in groups:  # walk_dynamic_memory_groups(), all but the current group
        if not other.dynamic or other is group or (nid is not None and other.nid != nid) or not ratio:
            continue
        pages = other.present_movable_pages * 100 // ratio - other.present_kernel_pages
        if pages > 0:
            req_kernel_early += pages
        group_movable += other.present_movable_pages
    if kernel_early <= req_kernel_early:
        return False
    kernel_early -= req_kernel_early
    movable -= group_movable
    if group is not None and group.dynamic:
        kernel_early += group.present_kernel_pages
    return movable + nr <= ratio * kernel_early // 100


def auto_movable_wants_movable(
    zones: Iterable[Zone],
    groups: Iterable[MemoryGroup],
    group: MemoryGroup | None,
    nid: int,
    start_pfn: int,
    nr_pages: int,
    online_kernel_sections: Iterable[tuple[int, bool]],
    ratio: int,
    numa_aware: bool,
) -> bool:
    """auto_movable_zone_for_pfn(): ZONE_MOVABLE (True) or the default kernel zone (False) for the block at
    `start_pfn`. `online_kernel_sections` gives (pfn, in a kernel zone) for each online section of the unit."""
    if not ratio:
        return False
    zones = list(zones)
    groups = list(groups)
    if group is not None and not group.dynamic:
        max_pages = group.max_pages
        online = group.present_movable_pages
        if group.present_kernel_pages:  # "If anything is !MOVABLE online the rest !MOVABLE."
            return False
    elif group is None or group.unit_pages == nr_pages:
        max_pages, online = nr_pages, 0
    else:
        max_pages, online = group.unit_pages, 0
        first = align_down(start_pfn, group.unit_pages)
        for pfn, in_kernel in online_kernel_sections:
            if first <= pfn < first + group.unit_pages:
                if in_kernel:
                    return False
                online += PAGES_PER_SECTION
    nr = max_pages - online
    if not can_online_movable(zones, groups, None, group, nr, ratio):
        return False
    return not numa_aware or can_online_movable(zones, groups, nid, group, nr, ratio)
