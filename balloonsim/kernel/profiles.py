"""Kernel releases whose memory-hotplug semantics differ.

Each field names the behaviour it switches and where it comes from (docs/kernel-facts.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from balloonsim.errors import ConfigError


@dataclass(frozen=True)
class KernelProfile:
    name: str
    # memmap_on_memory: "none" before 5.12; "single-block" 5.12-6.7 (the whole add_memory() range must be
    # exactly one memory block, a08a2ae34613); "per-block" since 6.8 (one altmap per block, 6b8f0798b85a).
    memmap_on_memory: str
    # 5.12-6.5 return -EINVAL when MHP_MEMMAP_ON_MEMORY was passed but the checks fail; 6.6+ fall back
    # silently to the ordinary memmap (A. Kumar's 6.6 series).
    mhp_silent_fallback: bool
    # /proc/vmstat nr_memmap_pages: memmap_pages_add() in section_activate() ("mm: report per-page
    # metadata information", 6.11).
    vmstat_nr_memmap: bool
    # hv_balloon: pages outside every hot-add region go to generic_online_page in NX; 4.x leaves them
    # unonlined (HV419).
    hv_online_outside_regions: bool
    # Xen balloon max_retry_count: RETRY_UNLIMITED until the CVE-2019-17351 fix, then 4 (XEN515).
    xen_max_retry: int | None
    # Xen balloon worker: a 5.15+ kthread (BP_WAIT polls every 1 s) vs the 4.x workqueue that waits for
    # the MEM_ONLINE notifier.
    xen_kthread: bool
    # __free_pages_core() frees onlined pages to the tail of the free lists (FPI_TO_TAIL, 5.10, "place fresh
    # pages right to the tail, primarily relevant for memory onlining"): older free memory is used first.
    # Before, onlined pages went to the head and were handed out first.
    online_to_tail: bool
    # min_free_kbytes upper clamp: 65536 before 5.7, 262144 after ("mm: raise min_free_kbytes cap").
    min_free_kbytes_max: int
    # x86 probe_memory_block_size(): bare metal gets 2 GiB blocks since 2020 (D. Jordan); VMs get the
    # largest power of two <= 2 GiB dividing the boot memory end when it is >= 64 GiB.
    bare_metal_max_block: bool
    # Online types accepted by /sys/devices/system/memory/auto_online_blocks (4.19: online|offline).
    auto_online_types: tuple[str, ...]


_K419 = KernelProfile(
    name="4.19",
    memmap_on_memory="none",
    mhp_silent_fallback=False,
    vmstat_nr_memmap=False,
    hv_online_outside_regions=False,
    xen_max_retry=None,
    xen_kthread=False,
    online_to_tail=False,
    min_free_kbytes_max=65536,
    bare_metal_max_block=False,
    auto_online_types=("offline", "online"),
)
# each later profile is the one before it plus what changed
_K512 = replace(
    _K419,
    name="5.12",
    memmap_on_memory="single-block",
    hv_online_outside_regions=True,
    xen_max_retry=4,
    online_to_tail=True,
    min_free_kbytes_max=262144,
    bare_metal_max_block=True,
    auto_online_types=("offline", "online", "online_kernel", "online_movable"),
)
_K68 = replace(_K512, name="6.8", memmap_on_memory="per-block", mhp_silent_fallback=True, xen_kthread=True)
_K612 = replace(_K68, name="6.12", vmstat_nr_memmap=True)

PROFILES: dict[str, KernelProfile] = {p.name: p for p in (_K419, _K512, _K68, _K612)}

DEFAULT_KERNEL = "6.12"


def get_profile(name: str) -> KernelProfile:
    try:
        return PROFILES[str(name)]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ConfigError("guest.kernel", f"unknown kernel profile {name!r} (known: {known})") from None
