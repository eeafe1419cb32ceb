"""Kernel releases whose memory-hotplug semantics differ, each written as its differences from the one before.

A profile is the release before it plus a list of `Change`s, each naming the field it sets, the upstream commit
and the first release that has it (docs/kernel-facts.md section 11 has the table; `balloonsim hotplug
--list-kernels` prints it). `verified=False` marks a change whose commit or release was not confirmed in source.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from balloonsim.errors import ConfigError
from balloonsim.units import MiB


@dataclass(frozen=True)
class Change:
    """One difference from the previous profile: what it sets, and where the kernel got it."""

    field: str
    value: Any
    commit: str  # upstream (Linus tree) commit id(s), or a description where no id is known
    release: str  # first release with it
    what: str  # the behaviour, in one line
    verified: bool = True  # False: the commit or the release was not confirmed in source


@dataclass(frozen=True)
class KernelProfile:
    name: str
    # memmap_on_memory: "none" before 5.13; "single-block" 5.13-6.7 (the add_memory() range must be exactly
    # one memory block: mhp_supports_memmap_on_memory(size), a08a2ae34613); "per-block" since 6.8 (one altmap
    # per block, create_altmaps_and_memory_blocks(), 6b8f0798b85a).
    memmap_on_memory: str
    # add_memory_resource() with MHP_MEMMAP_ON_MEMORY on a range that does not qualify: -EINVAL in 5.13-6.5,
    # the ordinary memmap from 6.6 ("fallback to not using altmap", e3c2bfdd33a3).
    mhp_silent_fallback: bool
    # memory_hotplug.memmap_on_memory=force (memory_block_memmap_on_memory_pages() rounds the memmap up to
    # whole pageblocks, 2d1f649c7c08, 6.6).
    memmap_force: bool
    # acpi_memory_enable_device(): when the ACPI DIMM driver passes MHP_MEMMAP_ON_MEMORY. "never" before 5.13,
    # "if-supported" 5.13-6.5 (only if mhp_supports_memmap_on_memory(info->length), 4a3e5de9c4ec), "always"
    # from 6.6 (e3c2bfdd33a3).
    acpi_memmap_flag: str
    # /proc/vmstat nr_memmap_pages: memmap_pages_add() in section_activate() (15995a352474, 6.11).
    vmstat_nr_memmap: bool
    # hv_online_page(): pages in no hot-add region go to generic_online_page() (1da602ec36a3, 6.14); before,
    # they are not onlined at all.
    hv_online_outside_regions: bool
    # hv_balloon hot-add chunk: memory_block_size_bytes() (8852ebf1948d, 6.10); before, HA_CHUNK = 128 MiB.
    hv_chunk_is_block: bool
    # hv_balloon alloc_balloon_pages()/free_balloon_pages() call adjust_managed_page_count(), so ballooning moves
    # MemTotal (d1df458cbfdb, 5.11); before, ballooned pages stay managed (they look allocated).
    hv_balloon_adjusts_managed: bool
    # virtio-mem exists (drivers/virtio/virtio_mem.c, 5.8).
    virtio_mem: bool
    # virtio_mem_init_hotplug(): the smallest subblock. max(MAX_ORDER_NR_PAGES, pageblock_nr_pages) pages
    # (4 MiB) before 5.19; pageblock_nr_pages (2 MiB) since 448b8ec3bf11 (5.19).
    virtio_mem_sb_min: int
    # virtio-mem SBM keeps retrying to offline and remove a fully unplugged block whose offline_and_remove_memory()
    # failed (have_unplugged_mb: -EBUSY from the worker, the retry timer; virtio_mem_cleanup_pending_mb()). Absent
    # from 6.1.192, present in 6.12.118: before, such a block stays added until an unplug request passes it again.
    virtio_mem_retry_unplugged: bool
    # Xen balloon max_retry_count: RETRY_UNLIMITED until XSA-300 ("xen: let alloc_xenballooned_pages() fail if not
    # enough memory free", a1078e821b60, 5.3; CVE-2019-17351, backported to 4.9.y, 4.19.y, 5.1.y), then 4.
    xen_max_retry: int | None
    # The same commit's other half: balloon_process() balloons out at most min(-credit, si_mem_available()) pages a
    # round, and a round so capped below totalreserve_pages ends BP_EAGAIN. Before, decrease_reservation(-credit).
    xen_balloon_capped: bool
    # Xen balloon worker: the 5.15+ kthread (8480ed9c2bbd), which wakes when the credit changes or on its timeout
    # (1 s in BP_WAIT, 3600 s after BP_ECANCELED: "xen/balloon: fix cancelled balloon action", 319933a80fd4, also
    # 5.15), vs the workqueue that runs on a target write or MEM_ONLINE.
    xen_kthread: bool
    # __free_pages_core() frees onlined pages to the tail of the free lists (FPI_TO_TAIL, 7fef431be9c9, 5.10):
    # older free memory is used first. Before, onlined pages went to the head and were handed out first.
    online_to_tail: bool
    # shrink_zone_span() runs when memory is offlined (offline_pages() -> remove_pfn_range_from_zone(),
    # d33695b16a9f, 5.5); before, when it is removed (__remove_pages() -> __remove_zone()), for the zone its
    # struct pages still link to.
    shrink_zone_on_offline: bool
    # memory_hotplug.online_policy=auto-movable and memory groups (e83a437faa62, 028fc57a1c36, 5.15).
    auto_movable: bool
    # min_free_kbytes upper clamp: 65536 before 5.7, 262144 after.
    min_free_kbytes_max: int
    # init_per_zone_wmark_min() calls khugepaged_min_free_kbytes_update(), so memory hot-plug keeps khugepaged's
    # raised min_free_kbytes (bd3400ea173f, 5.10); before, the recomputation from lowmem alone replaced it.
    khugepaged_after_hotplug: bool
    # __setup_per_zone_wmarks(): ZONE_MOVABLE's min watermark capped like highmem's and left out of the lowmem
    # total ("mm/page_alloc: fix min_free_kbytes calculation regarding ZONE_MOVABLE", liuq, 2023, 6.6); before,
    # ZONE_MOVABLE takes its share of min_free_kbytes like a lowmem zone.
    movable_min_capped: bool
    # x86 probe_memory_block_size(): bare metal gets 2 GiB blocks (D. Jordan, 2020); VMs get the largest power
    # of two <= 2 GiB dividing the boot memory end when it is >= 64 GiB.
    bare_metal_max_block: bool
    # Online types accepted by /sys/devices/system/memory/auto_online_blocks (4.19: online|offline).
    auto_online_types: tuple[str, ...]
    # x86 alloc_low_pages() after boot: __get_free_pages(GFP_ATOMIC | __GFP_ZERO) for the direct map's tables of
    # hot-added memory, unchecked by phys_pud_init() & co. (a failure is a NULL dereference).
    direct_map_atomic: bool
    # remove_pmd_table() frees a 2 MiB vmemmap block with pagetable_free(), which frees compound_order() of a
    # page that is not compound: its first page only, the other 511 leak ("x86/mm: use pagetable_free()",
    # bf9e4e30f353, 6.18; fixed by "x86/mm: fix freeing of PMD-sized vmemmap pages", D. Hildenbrand, 2026, for
    # stable, after the 6.18.15 recorded in validation/).
    vmemmap_pmd_free_leaks: bool
    # adjust_managed_page_count() calls setup_per_zone_lowmem_reserve() (and so calculate_totalreserve_pages()):
    # ballooning, a driver's fake-onlining or fake-offlining move the lowmem reserves and MemAvailable's
    # totalreserve_pages at once ("mm: page_alloc: fix missed updates of lowmem_reserve in
    # adjust_managed_page_count", 9726891fe753, 6.13; not in 6.12.118). Before, they moved only when memory was
    # onlined or offlined (init_per_zone_wmark_min()) or the sysctl was written.
    reserve_follows_managed: bool
    # A Device Check notification (a DIMM plugged) rescans the device's parent, acpi_scan_device_check() ->
    # acpi_scan_rescan_bus(parent) -> acpi_bus_scan(): every memory device without a handler is attached again, so
    # each new DIMM retries the earlier ones whose add_memory() failed ("ACPI: scan: Consolidate Device Check and
    # Bus Check notification handling", R. Wysocki, 2024, 6.9; 6.12.118 drivers/acpi/scan.c l.368-409). Before,
    # only the notified device was scanned (6.1.192 l.303-330) and a DIMM whose add failed stayed unused.
    acpi_rescan_retries: bool
    # what differs from the profile before this one
    changes: tuple[Change, ...] = field(default=(), compare=False)


def _next(base: KernelProfile, name: str, *changes: Change) -> KernelProfile:
    """The release after `base`: `base` with `changes` applied."""
    return replace(base, name=name, changes=changes, **{c.field: c.value for c in changes})


_K419 = KernelProfile(
    name="4.19",
    memmap_on_memory="none",
    mhp_silent_fallback=False,
    memmap_force=False,
    acpi_memmap_flag="never",
    vmstat_nr_memmap=False,
    hv_online_outside_regions=False,
    hv_chunk_is_block=False,
    hv_balloon_adjusts_managed=False,
    virtio_mem=False,
    virtio_mem_sb_min=4 * MiB,
    virtio_mem_retry_unplugged=False,
    xen_max_retry=None,
    xen_balloon_capped=False,
    xen_kthread=False,
    online_to_tail=False,
    shrink_zone_on_offline=False,
    auto_movable=False,
    min_free_kbytes_max=65536,
    khugepaged_after_hotplug=False,
    movable_min_capped=False,
    bare_metal_max_block=False,
    auto_online_types=("offline", "online"),
    direct_map_atomic=True,
    vmemmap_pmd_free_leaks=False,
    reserve_follows_managed=False,
    acpi_rescan_retries=False,
)
_K512 = _next(
    _K419,
    "5.12",
    Change("online_to_tail", True, "7fef431be9c9", "5.10", "onlined pages go to the tail of the free lists"),
    Change("shrink_zone_on_offline", True, "d33695b16a9f", "5.5", "zone spans shrink when memory is offlined"),
    Change("hv_balloon_adjusts_managed", True, "d1df458cbfdb", "5.11", "hv_balloon ballooning changes MemTotal"),
    Change("virtio_mem", True, "5f1f79bbc9e2", "5.8", "the virtio-mem driver exists", verified=False),
    Change(
        "auto_online_types",
        ("offline", "online", "online_kernel", "online_movable"),
        "mm/memory_hotplug: convert memhp_auto_online to store an online_type (D. Hildenbrand)",
        "5.7",
        "auto_online_blocks accepts online_kernel and online_movable",
        verified=False,
    ),
    Change("xen_max_retry", 4, "a1078e821b60", "5.3", "Xen balloon gives up after 4 failed rounds (XSA-300)"),
    Change(
        "xen_balloon_capped",
        True,
        "a1078e821b60",
        "5.3",
        "Xen balloons out at most si_mem_available() a round (XSA-300)",
    ),
    Change("min_free_kbytes_max", 262144, "J. Savitz, 2020", "5.7", "min_free_kbytes clamp 256 MiB", verified=False),
    Change(
        "khugepaged_after_hotplug",
        True,
        "bd3400ea173f",
        "5.10",
        "memory hot-plug keeps khugepaged's raised min_free_kbytes",
    ),
    Change("bare_metal_max_block", True, "D. Jordan, 2020", "5.8", "2 GiB blocks on bare metal", verified=False),
)
_K61 = _next(
    _K512,
    "6.1",
    Change("memmap_on_memory", "single-block", "a08a2ae34613", "5.13", "memmap_on_memory for one-block ranges"),
    Change(
        "acpi_memmap_flag",
        "if-supported",
        "4a3e5de9c4ec",
        "5.13",
        "ACPI passes MHP_MEMMAP_ON_MEMORY for a DIMM of exactly one memory block",
    ),
    Change("auto_movable", True, "e83a437faa62, 028fc57a1c36", "5.15", "online_policy=auto-movable, memory groups"),
    Change(
        "xen_kthread",
        True,
        "8480ed9c2bbd, 319933a80fd4",  # the kthread; then its BP_WAIT 1 s wait and BP_ECANCELED (no busy loop)
        "5.15",
        "Xen balloon kthread (BP_WAIT 1 s, BP_ECANCELED 1 h)",
    ),
    Change("virtio_mem_sb_min", 2 * MiB, "448b8ec3bf11", "5.19", "virtio-mem subblocks of one pageblock (2 MiB)"),
)
_K66 = _next(
    _K61,
    "6.6",
    Change("mhp_silent_fallback", True, "e3c2bfdd33a3", "6.6", "add_memory() falls back to the ordinary memmap"),
    Change("acpi_memmap_flag", "always", "e3c2bfdd33a3", "6.6", "ACPI always passes MHP_MEMMAP_ON_MEMORY"),
    Change("memmap_force", True, "2d1f649c7c08", "6.6", "memory_hotplug.memmap_on_memory=force"),
    Change(
        "virtio_mem_retry_unplugged",
        True,
        "virtio-mem: keep retrying on offline_and_remove_memory() errors in Sub Block Mode (SBM) (D. Hildenbrand)",
        "6.5",
        "virtio-mem SBM retries removing fully unplugged blocks on its retry timer (absent in 6.1.192)",
        verified=False,
    ),
    Change(
        "movable_min_capped",
        True,
        "mm/page_alloc: fix min_free_kbytes calculation regarding ZONE_MOVABLE (liuq, 2023)",
        "6.6",
        "ZONE_MOVABLE's min watermark is capped like highmem's (Debian 6.1.192 has not, 6.12 has it)",
        verified=False,
    ),
)
_K68 = _next(
    _K66,
    "6.8",
    Change("memmap_on_memory", "per-block", "6b8f0798b85a", "6.8", "memmap_on_memory split per memory block"),
)
_K612 = _next(
    _K68,
    "6.12",
    Change("hv_chunk_is_block", True, "8852ebf1948d", "6.10", "hv_balloon hot-adds memory-block-sized chunks"),
    Change("vmstat_nr_memmap", True, "15995a352474", "6.11", "/proc/vmstat nr_memmap_pages"),
    Change(
        "acpi_rescan_retries",
        True,
        "ACPI: scan: Consolidate Device Check and Bus Check notification handling (R. Wysocki)",
        "6.9",
        "a new DIMM's notification rescans the bus: DIMMs whose add failed are retried",
    ),
)
_K618 = _next(
    _K612,
    "6.18",
    Change(
        "vmemmap_pmd_free_leaks",
        True,
        "bf9e4e30f353",
        "6.18",
        "hot-remove frees one page of each 2 MiB vmemmap block, leaks 511 (until the 2026 stable fix)",
    ),
    Change(
        "hv_online_outside_regions",
        True,
        "1da602ec36a3",
        "6.14",
        "hv_balloon onlines pages outside its regions with generic_online_page()",
    ),
    Change(
        "reserve_follows_managed",
        True,
        "9726891fe753",
        "6.13",
        "lowmem reserves and totalreserve_pages follow adjust_managed_page_count() (ballooning, fake-onlining)",
    ),
)

PROFILES: dict[str, KernelProfile] = {p.name: p for p in (_K419, _K512, _K61, _K66, _K68, _K612, _K618)}

DEFAULT_KERNEL = "6.12"

# Profile fields that are still UNVERIFIED in source for the releases they are set on: field -> first release.
# (direct_map_atomic was, for 6.18, until Debian's 7.3.4 source still had alloc_low_pages() with GFP_ATOMIC and
# no NULL check in phys_pud_init()/phys_pmd_init(): E. Sharnoff's GFP_KERNEL series is not in mainline by 7.3.)
UNVERIFIED_FIELDS: dict[str, str] = {}


def get_profile(name: str) -> KernelProfile:
    try:
        return PROFILES[str(name)]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ConfigError("guest.kernel", f"unknown kernel profile {name!r} (known: {known})") from None


def describe_profiles() -> str:
    """What differs between the profiles, oldest first: one line per change, with its commit and release."""
    lines: list[str] = []
    for p in PROFILES.values():
        if not p.changes:
            lines.append(f"{p.name}: the base profile")
            continue
        lines.append(f"{p.name}: {list(PROFILES)[list(PROFILES).index(p.name) - 1]} plus")
        for c in p.changes:
            mark = "" if c.verified else " (UNVERIFIED)"
            lines.append(f"  {c.what} [{c.field}={_show(c.value)}; {c.commit}, {c.release}{mark}]")
    for name, since in UNVERIFIED_FIELDS.items():
        lines.append(f"UNVERIFIED from {since} on: {name}={_show(getattr(PROFILES[since], name))} is carried over")
    return "\n".join(lines)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "|".join(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= MiB and value % MiB == 0:
        return f"{value // MiB}M"
    return str(value)
