"""The buddy allocator seen through counters: zonelists, watermarks, reclaim, NUMA fallback.

What an allocation may do depends on its gfp class, as in the kernel:
- `VMEMMAP` (GFP_KERNEL|__GFP_RETRY_MAYFAIL|__GFP_NOWARN, vmemmap_alloc_block): kernel zones, compacts
  and reclaims (page cache, and anon to swap when the guest has swap), never invokes the OOM killer, may fail.
- `KERNEL` (GFP_KERNEL: slab metadata): kernel zones, reclaims, may fail here; the caller (the guest's
  hot-add path) then invokes the OOM killer and retries, as the slow path does for an order <= 3.
- GFP_ATOMIC (`alloc_atomic`, x86 alloc_low_pages() for the direct map's tables after boot): kernel zones, no
  reclaim, may dip below the min watermark.
Unmovable allocations (VMEMMAP, KERNEL) also say which hot-added memory block they landed in (`landing`, set
by the guest: balloonsim.kernel.unmovable), and every piece is remembered (`Take`) so that it is given back
to the zone, and the block, it came from.
- `USER` (GFP_HIGHUSER_MOVABLE): every zone, Movable first. The caller (balloonsim.sim.memory) runs the slow
  path's loop: direct reclaim while should_reclaim_retry() allows, then the OOM killer.
- `BALLOON` (GFP_HIGHUSER|__GFP_NORETRY|__GFP_NOMEMALLOC): kernel zones only (GFP_HIGHUSER is not
  movable, so a balloon never takes ZONE_MOVABLE pages). GFP_HIGHUSER has __GFP_RECLAIM: the slow path wakes
  kswapd and reclaims once (and for a 2 MiB unit compacts), and __GFP_NORETRY only ends it there, with no retry
  loop and no OOM killer; __GFP_NOMEMALLOC keeps it above the min watermark; partial success allowed.

Every allocation first walks its whole zonelist at the low watermark (get_page_from_freelist() with
ALLOC_WMARK_LOW); only when no zone has room there does the slow path wake kswapd (wake_all_kswapds()) and go down
to the min watermark, as __alloc_pages_slowpath() does.

Reclaim frees page cache and, with a swap device, writes anonymous pages to swap, split by get_scan_count()
(balloonsim.kernel.vmscan). kswapd is woken only by the slow path, and not while one eligible zone of its node is
above its high watermark (wakeup_kswapd(), pgdat_balanced()); once awake it reclaims until one is (balance_pgdat()).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from operator import attrgetter

from balloonsim.kernel.swap import SwapDevice
from balloonsim.kernel.vmscan import DEF_PRIORITY, LruCost, ScanBalance, get_scan_count
from balloonsim.kernel.zone import HotBlock, Zone, ZoneType
from balloonsim.units import PAGEBLOCK_PAGES, PMD_PAGES

MAX_RECLAIM_RETRIES = 16  # mm/internal.h (mm/page_alloc.c before 5.x): no-progress rounds before the OOM killer
# a bound on the slow path's rounds in the model (each frees something or counts toward MAX_RECLAIM_RETRIES; the
# bound only guards against a reclaim that frees pages the allocation can never use)
_SLOWPATH_LOOPS = 4096

# ZONE_DMA is in no zonelist the model builds: lowmem_reserve keeps GFP_KERNEL and user allocations out of it
# (its reserve against ZONE_NORMAL, DMA32 and Normal managed pages / 256, is more than its ~15 MiB once the guest
# has 4 GiB; a smaller guest could use some of it, which the model leaves out: 6 MiB in a 2 GiB guest, which the
# kernel takes once DMA32 is at its min watermark, validation/recorded/pressure-*-small-pcp), and nothing the
# model allocates asks for GFP_DMA. It exists for the watermarks, totalreserve_pages and khugepaged's count of
# zones. Not to be added alone: the kernel's per-cpu lists, which the model does not have either, hold back more
# than that when memory runs out (validation/README.md, known disagreement [7]).
_KERNEL_ZONES = (ZoneType.NORMAL, ZoneType.DMA32)
_USER_ZONES = (ZoneType.MOVABLE, ZoneType.NORMAL, ZoneType.DMA32)
# sysctl_lowmem_reserve_ratio (mm/page_alloc.c): [ZONE_DMA] = 256, [ZONE_DMA32] = 256, [ZONE_NORMAL] = 32,
# [ZONE_MOVABLE] = 0
_LOWMEM_RESERVE_RATIO = {ZoneType.DMA: 256, ZoneType.DMA32: 256, ZoneType.NORMAL: 32, ZoneType.MOVABLE: 0}
_ZONE_ORDER = (ZoneType.DMA, ZoneType.DMA32, ZoneType.NORMAL, ZoneType.MOVABLE)  # zone index order
_ZONE_IDX = {zt: i for i, zt in enumerate(_ZONE_ORDER)}
# gfp_zone(): an allocation's highest_zoneidx, the column of lowmem_reserve[] its watermark checks add (GFP_KERNEL and
# GFP_HIGHUSER: ZONE_NORMAL on x86_64; GFP_HIGHUSER_MOVABLE: ZONE_MOVABLE)
KERNEL_ZONEIDX = _ZONE_IDX[ZoneType.NORMAL]
USER_ZONEIDX = _ZONE_IDX[ZoneType.MOVABLE]
SWAP_CLUSTER_MAX = 32
MIGRATE_PCPTYPES = 3  # MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE


@dataclass(frozen=True)
class WatermarkRules:
    """What init_per_zone_wmark_min() does differently per release and configuration."""

    min_free_kbytes_max: int  # calculate_min_free_kbytes()'s clamp
    movable_min_capped: bool  # ZONE_MOVABLE's min watermark capped like highmem's (6.6)
    khugepaged: bool  # transparent hugepages enabled ("always" or "madvise"): khugepaged raises min_free_kbytes
    khugepaged_after_hotplug: bool  # ... also after memory hot-plug (bd3400ea173f, 5.10)


class Gfp(StrEnum):
    VMEMMAP = "vmemmap"
    KERNEL = "kernel"
    USER = "user"
    BALLOON = "balloon"


_CHARGE = {Gfp.VMEMMAP: "kernel", Gfp.KERNEL: "kernel", Gfp.USER: "anon", Gfp.BALLOON: "balloon"}
# charges whose pages pin the hot-added block they land in (offline_pages() fails -EBUSY): unmovable kernel pages
# (has_unmovable_pages()) and a balloon's PageOffline pages with a reference (scan_movable_pages())
_BALLOON_KINDS = frozenset({"balloon", "balloon_managed"})
_PINNING = _BALLOON_KINDS | {"kernel"}
# the member the hot paths pass and compare with on every call (alloc(), the tasks' faults and file reads), as a
# module global: a member read through its enum class is a metaclass lookup each time
GFP_USER = Gfp.USER


@dataclass(eq=False, slots=True)
class Take:
    """One piece of an allocation: where it came from, so that it goes back there (and a failed add_memory()
    can hand it all back)."""

    zone: Zone
    pages: int
    pmd: bool
    kind: str  # counter it was charged to: "kernel" | "anon" | "balloon"
    split: int = 0  # pageblocks the take split, so that a rollback merges them again
    block: HotBlock | None = None  # unmovable pages that landed in a hot-added block (None: boot memory)


@dataclass
class AllocStats:
    direct_reclaim: int = 0  # allocations that had to reclaim below the low watermark themselves
    reclaimed_pages: int = 0
    failures: int = 0
    remote_pages: int = 0
    pswpout_kswapd: int = 0  # anon pages kswapd wrote to swap
    pswpout_direct: int = 0  # anon pages direct reclaim wrote to swap
    compact_stall: int = 0  # direct compactions (/proc/vmstat compact_stall)
    compact_success: int = 0


@dataclass
class Transaction:
    """Everything taken during one add_memory(); rolled back if it fails."""

    takes: list[Take] = field(default_factory=list)


_PAGECACHE = attrgetter("pagecache")  # a sort key without a Python call per zone


def atomic_floor(wmark_min: int) -> int:
    """The free pages a GFP_ATOMIC allocation leaves in a zone: __zone_watermark_ok() lowers the min watermark
    by half for __GFP_HIGH, then by a quarter of what is left for a caller that cannot block, in integer
    arithmetic (`min -= min / 2; min -= min / 4;`), and an order-0 page is granted while free > min. 4.19-6.2:
    ALLOC_HIGH and ALLOC_HARDER (__GFP_ATOMIC); 6.3+: ALLOC_MIN_RESERVE and ALLOC_NON_BLOCK (M. Gorman,
    "mm/page_alloc: explicitly define how __GFP_HIGH non-blocking allocations accesses reserves"): the same
    3/8 of min for GFP_ATOMIC in every release modelled."""
    half = wmark_min - wmark_min // 2
    return half - half // 4


class PageAllocator:
    def __init__(self, zones: dict[tuple[int, ZoneType], Zone], distances: dict[tuple[int, int], int]):
        self.zones = zones
        self.distances = distances
        self.stats = AllocStats()
        self.totalreserve = 0  # totalreserve_pages: what si_mem_available() never counts as available
        # adjust_managed_page_count() recomputes the lowmem reserves (6.13+, KernelProfile.reserve_follows_managed)
        self.reserve_follows_managed = False
        self.min_free_kbytes = 0
        self.recommended_min_free_kb = 0  # set_recommended_min_free_kbytes()'s last answer (0: never ran)
        self.gen = 0  # bumped by every change of the zones' memory: lets periodic work skip when nothing moved
        self._watchers: list[Callable[[], None]] = []  # called once at the next change (watch())
        self._committed_watchers: list[Callable[[], None]] = []  # ... of committed memory (watch_committed())
        self.committed_as = 0  # vm_committed_as, in pages: what user mappings committed (vm_acct_memory())
        self._nids = sorted({nid for nid, _ in zones})
        self._zonelists: dict[tuple[int, bool], list[Zone]] = {}
        self.swap = SwapDevice()  # no swap unless the guest configures one
        self.swappiness = 60  # vm.swappiness
        self.lru_cost = LruCost()
        self.refaults_anon = 0  # WORKINGSET_ACTIVATE_ANON
        self._refaults_seen = 0  # its snapshot at the last reclaim pass (snapshot_refaults())
        # The owner of the user memory keeps the reverse map of anon pages (which task maps the anon pages of each
        # zone): it learns of each fault's pages in a zone (anon_charged, set while a task faults), of the pages
        # reclaim sends to swap from a zone (rmap: try_to_unmap()), and of the pages migration moves between zones
        # (rmap_move: migrate_pages() remaps the owner's page tables to the new folios)
        self.anon_charged: Callable[[Zone, int], None] | None = None
        self.rmap: Callable[[Zone, int], None] | None = None
        self.rmap_move: Callable[[Zone, list[tuple[Zone, int]]], None] | None = None
        # while kswapd runs: the anon pages each zone sent to swap, for one rmap call per zone when it is done
        # (nothing reads the owners' page tables in between, and a run is many small passes)
        self._unmapped: dict[Zone, int] | None = None
        # called once, the first time an allocation wakes a kswapd (wakeup_kswapd() found its node unbalanced)
        self.on_pressure: Callable[[], None] | None = None
        # pgdat->kswapd_highest_zoneidx of each node whose kswapd is awake (balance_pgdat() not yet balanced)
        self.kswapd_highest_zoneidx: dict[int, ZoneType] = {}
        # each node's zones in zone index order (pgdat->node_zones), for pgdat_balanced() and balance_pgdat()
        self._node_zones = {nid: [zones[(nid, zt)] for zt in _ZONE_ORDER if (nid, zt) in zones] for nid in self._nids}
        # the guest's answer to "which hot-added block of this zone does an unmovable allocation of n pages
        # land in" (None: boot memory), asked only of zones that have hot-added blocks online
        self.landing: Callable[[Zone, int], HotBlock | None] = lambda zone, n: None
        # ... and, page by page, which blocks a balloon's base pages land in (each is pinned)
        self.landings: Callable[[Zone, int], list[tuple[HotBlock | None, int]]] = lambda zone, n: [(None, n)]
        self.pmd_landings: Callable[[Zone, int], list[tuple[HotBlock | None, int]]] = lambda zone, n: [(None, n)]

    # -- zonelists -------------------------------------------------------------------------------
    def nodes_by_distance(self, nid: int) -> list[int]:
        return sorted(
            self._nids, key=lambda other: (self.distances.get((nid, other), 10 if nid == other else 20), other)
        )

    def zonelist(self, nid: int, kernel_only: bool) -> list[Zone]:
        """Node order: every allowed zone of the nearest node first (build_zonelists, node order). Zones without
        present pages are left out: build_zonerefs_node() (mm/page_alloc.c) links only populated zones
        (managed_zone() 4.16-5.17, populated_zone() again since e553f62f10d9, 5.18 and stable). They hold nothing,
        and onlining that gives a zone its first pages rebuilds the lists (invalidate(), build_all_zonelists())."""
        key = (nid, kernel_only)
        zl = self._zonelists.get(key)
        if zl is None:
            types = _KERNEL_ZONES if kernel_only else _USER_ZONES
            zl = [self.zones[(n, zt)] for n in self.nodes_by_distance(nid) for zt in types]
            zl = [z for z in zl if z.present] or zl[:1]  # never empty: callers look at zl[0]
            self._zonelists[key] = zl
        return zl

    def invalidate(self) -> None:
        self._zonelists.clear()

    # -- changes -----------------------------------------------------------------------------------
    def changed(self, committed: bool = True) -> None:
        """The zones' memory changed (an allocation, a free, reclaim): `gen` moves and whoever waits for a change
        hears of it. `committed` is False for a change of page cache and free memory only (a file read, page
        cache reclaimed): it leaves what is committed, and free plus cached memory, as they were. Called before
        the change is complete: a watcher must not read the zones, only note that it has to look later."""
        self.gen += 1
        if committed and self._committed_watchers:
            self._committed_changed()
        if self._watchers:
            watchers, self._watchers = self._watchers, []
            for w in watchers:
                w()

    def watch(self, callback: Callable[[], None]) -> None:
        """Call `callback` (once) at the next change: what lets a periodic check sleep while nothing moves."""
        self._watchers.append(callback)

    def watch_committed(self, callback: Callable[[], None]) -> None:
        """Call `callback` (once) at the next change that moves committed memory, or free plus cached memory
        (a reader of those need not look after a change of page cache only)."""
        self._committed_watchers.append(callback)

    def vm_acct_memory(self, pages: int) -> None:
        """vm_acct_memory() (mm/util.c; vm_unacct_memory() with -pages): Committed_AS moves when a private writable
        mapping is made or goes (mmap_region() and do_brk_flags() charge its whole length through
        __vm_enough_memory() before a page of it is touched, 6.12.118 mm/mmap.c l.1417-1430 and l.1810-1817,
        mm/util.c l.1037; munmap and exit give it back), never at a fault. Whoever reads committed memory hears."""
        self.committed_as += pages
        if self._committed_watchers:
            self._committed_changed()

    def _committed_changed(self) -> None:
        """Tell each watcher of committed memory (watch_committed()), once."""
        watchers, self._committed_watchers = self._committed_watchers, []
        for w in watchers:
            w()

    # -- watermarks ------------------------------------------------------------------------------
    def setup_watermarks(self, rules: WatermarkRules) -> None:
        """init_per_zone_wmark_min() (mm/page_alloc.c), run at boot and by online_pages()/offline_pages():
        calculate_min_free_kbytes() (sqrt(16 * lowmem kB), lowmem being nr_free_buffer_pages(): managed minus
        high watermark of every zone up to ZONE_NORMAL), setup_per_zone_wmarks(), setup_per_zone_lowmem_reserve()
        and calculate_totalreserve_pages(); then, with transparent hugepages enabled (khugepaged running),
        khugepaged_min_free_kbytes_update() (bd3400ea173f, 5.10; before, the hot-plug recomputation undid it) ->
        set_recommended_min_free_kbytes(): at least 11 pageblocks per populated zone up to ZONE_NORMAL (2 free,
        MIGRATE_PCPTYPES^2 almost free), at most 5% of lowmem, and the watermarks again."""
        min_free_kb = max(128, min(math.isqrt(self.nr_free_buffer_pages() * 4 * 16), rules.min_free_kbytes_max))
        self.min_free_kbytes = min_free_kb
        self._setup_per_zone_wmarks(rules)
        # before 5.10 only boot (hugepage_init()) ran it, and a hot-plug's recomputation undid it
        if rules.khugepaged and (rules.khugepaged_after_hotplug or not self.recommended_min_free_kb):
            zones = sum(1 for z in self.zones.values() if z.present and z.type is not ZoneType.MOVABLE)
            recommended = PAGEBLOCK_PAGES * zones * (2 + MIGRATE_PCPTYPES * MIGRATE_PCPTYPES)
            recommended = min(recommended, self.nr_free_buffer_pages() // 20) * 4
            self.recommended_min_free_kb = recommended
            if recommended > self.min_free_kbytes:
                self.min_free_kbytes = recommended
                self._setup_per_zone_wmarks(rules)
        self.totalreserve = self._totalreserve()

    def nr_free_buffer_pages(self) -> int:
        """nr_free_buffer_pages(): managed pages above the high watermark of every zone GFP_USER may use (up to
        ZONE_NORMAL), all nodes (the local node's zonelist falls back to all of them)."""
        return sum(max(0, z.managed - z.wmark_high) for z in self.zones.values() if z.type is not ZoneType.MOVABLE)

    def _setup_per_zone_wmarks(self, rules: WatermarkRules) -> None:
        """__setup_per_zone_wmarks(), watermark_scale_factor 10: min_free_kbytes shared among the lowmem zones by
        managed pages; a ZONE_MOVABLE's min capped like highmem's (managed/1024 within SWAP_CLUSTER_MAX..128) and
        outside the lowmem total since "mm/page_alloc: fix min_free_kbytes calculation regarding ZONE_MOVABLE"
        (6.6), a lowmem zone like the others before; low and high one delta apart each, the delta the larger of a
        quarter of the zone's share and 0.1% of its managed pages."""
        pages_min = self.min_free_kbytes // 4
        movable_capped = rules.movable_min_capped
        lowmem = sum(z.managed for z in self.zones.values() if not (movable_capped and z.type is ZoneType.MOVABLE))
        for z in self.zones.values():
            if z.managed == 0 or not lowmem:
                z.wmark_min = z.wmark_low = z.wmark_high = 0
                continue
            share = pages_min * z.managed // lowmem
            if movable_capped and z.type is ZoneType.MOVABLE:
                zmin = max(SWAP_CLUSTER_MAX, min(z.managed // 1024, 128))
            else:
                zmin = share
            delta = max(share >> 2, z.managed * 10 // 10000)
            z.wmark_min = zmin
            z.wmark_low = zmin + delta
            z.wmark_high = zmin + 2 * delta

    def managed_adjusted(self) -> None:
        """adjust_managed_page_count() outside onlining and offlining (a balloon, a driver's fake-onlining or
        fake-offlining): from 6.13 (9726891fe753) it runs setup_per_zone_lowmem_reserve(), which ends in
        calculate_totalreserve_pages(); before, both kept the values of the last online/offline. The watermarks
        stay as they are in every release."""
        if self.reserve_follows_managed:
            self.totalreserve = self._totalreserve()

    def _totalreserve(self) -> int:
        """setup_per_zone_lowmem_reserve() + calculate_totalreserve_pages(): each zone's lowmem_reserve[j] is the
        managed pages of the zones above it up to j divided by its sysctl_lowmem_reserve_ratio (0 for an empty
        zone), kept on the zone for the allocator's watermark checks; totalreserve_pages adds, per zone, its high
        watermark plus its largest reserve, at most its managed pages."""
        total = 0
        for nid in self._nids:
            zones = [self.zones[(nid, zt)] for zt in _ZONE_ORDER]
            for i, z in enumerate(zones):
                ratio = _LOWMEM_RESERVE_RATIO[z.type]
                reserve = [0] * len(_ZONE_ORDER)
                above = 0
                for j in range(i + 1, len(zones)):
                    above += zones[j].managed
                    reserve[j] = above // ratio if ratio and z.managed else 0
                z.lowmem_reserve = reserve
                total += min(z.managed, z.wmark_high + max(reserve))
        return total

    # -- reclaim ---------------------------------------------------------------------------------
    def reclaim(self, zones: list[Zone], want: int, kswapd: bool = False, wait_writeback: bool = False) -> int:
        """Reclaim up to `want` pages from `zones` (nearest first): page cache, and anonymous memory to swap when
        get_scan_count() says so (balloonsim.kernel.vmscan). Returns the pages freed (did_some_progress).

        `wait_writeback`: the reclaimer sleeps until its pages are written (reclaim_throttle()) rather than
        leaving them to a later pass: the kernel's own allocations on the hot-add path, which have no task
        to stall in the model (the kernel model has no clock), take them now and leave the device behind.

        Page cache comes back as fragments. Anon pages go to swap slots and their owners learn it through `rmap`
        (try_to_unmap() replacing the PTE with a swap entry); both kinds of page come back scattered."""
        swap = self.swap
        if swap.slots == 0:  # no swap: get_scan_count() is SCAN_FILE, whatever else holds
            got = self._shrink_file(zones, want)
            self.stats.reclaimed_pages += got
            return got
        got = 0
        while got < want:
            anon = file = free = high = 0
            for z in zones:
                anon += z.anon
                file += z.pagecache
                free += z.free
                high += z.wmark_high
            balance, share = get_scan_count(
                anon=anon,
                file=file,
                free=free,
                high_wmark=high,
                swap_free=swap.free,
                swappiness=self.swappiness,
                cost=self.lru_cost,
                anon_refaulted=self._refaults_seen != self.refaults_anon,
            )
            self._refaults_seen = self.refaults_anon  # snapshot_refaults() at the end of a pass
            rest = want - got
            if balance is ScanBalance.FILE:
                # cache_trim_mode holds while file >> DEF_PRIORITY: trim down to that, then balance again
                limit = file - (1 << DEF_PRIORITY) + 1 if anon and swap.free > 0 else file
                n = self._shrink_file(zones, min(rest, max(limit, 0)))
                got += n
                if not n or limit >= rest or not (anon and swap.free > 0):
                    break
                continue
            n_anon = round(rest * share)
            n_file = self._shrink_file(zones, rest - n_anon)
            # what the cache cannot give comes from anon, as lower priorities scan more of both lists; but an anon
            # fraction of 0 (vm.swappiness = 0) scans no anon at any priority (get_scan_count(): SCAN_FRACT
            # `ap = swappiness * ...`, SCAN_EQUAL only `if (!sc->priority && swappiness)`; 6.12.118, 7.3.4)
            n_anon = self._shrink_anon(zones, rest - n_file, kswapd, wait_writeback) if share > 0 else 0
            if n_anon < rest - n_file:  # swap or anon ran out: what is left comes from the file list
                n_file += self._shrink_file(zones, rest - n_file - n_anon)
            got += n_file + n_anon
            break
        self.stats.reclaimed_pages += got
        return got

    def _shrink_file(self, zones: list[Zone], want: int) -> int:
        got = 0
        for z in zones:
            if got >= want:
                break
            n = want - got
            if z.pagecache < n:
                n = z.pagecache
            if n:
                self.changed(committed=False)
                z.pagecache -= n
                z.give(n, contiguous=False)
                got += n
        return got

    def _shrink_anon(self, zones: list[Zone], want: int, kswapd: bool, wait: bool = False) -> int:
        """pageout() of anon pages: each takes a swap slot; the owners' page tables get swap entries (rmap)."""
        want = self.swap.writable(want, wait=wait)
        got = 0
        for z in zones:
            if got >= want:
                break
            n = min(z.anon, want - got)
            if n:
                self.changed()
                z.anon -= n
                z.give(n, contiguous=False)
                got += n
                if self._unmapped is not None:
                    self._unmapped[z] = self._unmapped.get(z, 0) + n
                elif self.rmap is not None:
                    self.rmap(z, n)
        if got:
            self.swap.write(got)
            if kswapd:
                self.stats.pswpout_kswapd += got
            else:
                self.stats.pswpout_direct += got
            self.lru_cost.note(False, got, 0, self._lru_size())
        return got

    def _lru_size(self) -> int:
        return sum(z.anon + z.pagecache for z in self.zones.values())

    def note_refault(self, pages: int) -> None:
        """Anon pages came back from swap: workingset_refault() activates them and lru_note_cost_refault()
        charges the anon list (mm/workingset.c, mm/swap.c)."""
        self.refaults_anon += pages
        self.lru_cost.note(False, pages, 0, self._lru_size())

    def pgdat_balanced(self, nid: int, highest: ZoneType) -> bool:
        """pgdat_balanced() (mm/vmscan.c, 6.12.118 and 7.3.4): a node needs no kswapd while any one of its managed
        zones up to the allocation's highest zone is above its high watermark plus its lowmem_reserve for that zone
        (zone_watermark_ok_safe()), since an allocation can be met there; a node with no such zone needs none
        either. ZONE_DMA is left out, as from the zonelists."""
        top = _ZONE_IDX[highest]
        managed = False
        for z in self._node_zones[nid]:
            zt = z.type
            if zt is ZoneType.DMA or not z.managed:
                continue
            if _ZONE_IDX[zt] > top:
                break
            managed = True
            if z.free_pmd * PMD_PAGES + z.free_base > z.wmark_high + z.lowmem_reserve[top]:
                return True
        return not managed

    def wake_all_kswapds(self, zl: list[Zone], highest: ZoneType) -> None:
        """wake_all_kswapds() -> wakeup_kswapd() (mm/page_alloc.c, mm/vmscan.c, 6.12.118 and 7.3.4), from the slow
        path: each node of the zonelist gets its kswapd woken unless pgdat_balanced(); an awake one keeps the
        highest zone it was asked for (kswapd_highest_zoneidx). The first wake-up is where pressure begins."""
        awake = self.kswapd_highest_zoneidx
        last = -1
        for z in zl:
            nid = z.nid
            if nid == last:
                continue
            last = nid
            cur = awake.get(nid)
            if cur is not None:
                if _ZONE_IDX[cur] < _ZONE_IDX[highest]:
                    awake[nid] = highest
                continue
            if self.pgdat_balanced(nid, highest):
                continue
            awake[nid] = highest
            if self.on_pressure is not None:
                hook, self.on_pressure = self.on_pressure, None
                hook()

    def kswapd(self) -> None:
        """Each awake kswapd runs balance_pgdat() and goes back to sleep once its node is balanced; one that can
        reclaim nothing now stays awake (the model's ticks call this again)."""
        awake = self.kswapd_highest_zoneidx
        if not awake:
            return
        for nid, highest in list(awake.items()):
            if self.balance_pgdat(nid, highest):
                del awake[nid]

    def balance_pgdat(self, nid: int, highest: ZoneType) -> bool:
        """balance_pgdat() (mm/vmscan.c, 6.12.118 l.6867-7045; 6.1.192 and 7.3.4 the same loop): from DEF_PRIORITY
        down, while the node is not pgdat_balanced(), one kswapd_shrink_node() pass reclaims from the node's LRUs
        (zones above the highest not eligible) what it scans, each list's size >> priority (get_scan_count()), up
        to nr_to_reclaim, the sum of max(high watermark, SWAP_CLUSTER_MAX) of the managed zones; the priority rises
        (sc.priority--) after a pass that scanned less than nr_to_reclaim or freed nothing, down to 1. Checked
        before every pass, the balance stops kswapd within one pass above the high watermark of one zone, not a
        whole nr_to_reclaim above it (validation/recorded/swap-fill-*: every kernel's free memory between the low
        and high watermarks after the fill). Returns whether the node is balanced."""
        top = _ZONE_IDX[highest]
        zones = [z for z in self._node_zones[nid] if _ZONE_IDX[z.type] <= top]
        nr_to_reclaim = sum(max(z.wmark_high, SWAP_CLUSTER_MAX) for z in zones if z.managed)
        priority = DEF_PRIORITY
        rmap = self.rmap
        if rmap is not None:
            self._unmapped = {}
        try:
            while not self.pgdat_balanced(nid, highest):
                if priority < 1:
                    return False
                swap = self.swap.used < self.swap.slots  # a free slot: anon is reclaimable
                lru = [z for z in zones if z.pagecache or (swap and z.anon)]
                if not lru:
                    return False
                if len(lru) > 1:
                    lru.sort(key=_PAGECACHE, reverse=True)  # most page cache first (stable: ties keep order)
                scan = sum(z.pagecache + (z.anon if swap else 0) for z in lru) >> priority
                if scan:
                    if not self.reclaim(lru, min(scan, nr_to_reclaim), kswapd=True):
                        # nothing reclaimable now (no page cache, swap full or its device busy): a larger scan at
                        # a lower priority frees nothing either, the same failed run in one step
                        return False
                    if scan >= nr_to_reclaim:
                        continue
                priority -= 1
            return True
        finally:
            unmapped, self._unmapped = self._unmapped, None
            if rmap is not None and unmapped:
                for z, n in unmapped.items():
                    rmap(z, n)

    def reclaim_throttled(self, zl: list[Zone]) -> bool:
        """Anon could be swapped out but the device is busy writing: reclaim waits for writeback
        (reclaim_throttle(), VMSCAN_THROTTLE_WRITEBACK) and should_reclaim_retry() keeps retrying, as the
        reclaimable estimate still counts the anon pages: no OOM kill, the allocating task stalls."""
        swap = self.swap
        return swap.free > 0 and swap.budget < 1 and any(z.anon for z in zl)

    def zone_reclaimable_pages(self, z: Zone) -> int:
        """mm/vmscan.c zone_reclaimable_pages(): the file LRU, plus the anon LRU while swap has a free slot."""
        return z.pagecache + (z.anon if self.swap.free > 0 else 0)

    def should_reclaim_retry(self, zl: list[Zone], no_progress_loops: int, highest: int = USER_ZONEIDX) -> bool:
        """mm/page_alloc.c should_reclaim_retry() for an order-0 allocation: give up after MAX_RECLAIM_RETRIES
        rounds in a row without progress, or when no zone could meet its min watermark plus its lowmem_reserve for
        the allocation's highest zone (__zone_watermark_ok()) even if every reclaimable page were freed; otherwise
        the slow path loops (direct reclaim again)."""
        if no_progress_loops > MAX_RECLAIM_RETRIES:
            return False
        return any(
            z.managed and self.zone_reclaimable_pages(z) + z.free > z.wmark_min + z.lowmem_reserve[highest] for z in zl
        )

    # -- allocation ------------------------------------------------------------------------------
    @staticmethod
    def _room(zones: list[Zone], highest: int) -> tuple[int, int]:
        """Free pages above the min and above the low watermark, each plus the zone's lowmem_reserve[highest],
        summed over `zones`, in one walk."""
        above_min = above_low = 0
        for z in zones:
            free = z.free_pmd * PMD_PAGES + z.free_base - z.lowmem_reserve[highest]
            if free > z.wmark_min:
                above_min += free - z.wmark_min
            if free > z.wmark_low:
                above_low += free - z.wmark_low
        return above_min, above_low

    def alloc(
        self,
        nid: int,
        n: int,
        gfp: Gfp,
        txn: Transaction | None = None,
        partial: bool = False,
        charge: str | None = None,
    ) -> int:
        """Allocate n base pages near `nid`; returns pages allocated (all-or-nothing unless partial).

        `charge` overrides the counter the pages are charged to (e.g. "pagecache" for file reads).
        """
        if n <= 0:
            return 0
        kernel = gfp is not GFP_USER  # only GFP_HIGHUSER_MOVABLE may use ZONE_MOVABLE (GFP_HIGHUSER has no
        zl = self._zonelists.get((nid, kernel)) or self.zonelist(nid, kernel_only=kernel)  # __GFP_MOVABLE)
        kind = charge or _CHARGE[gfp]
        highest = KERNEL_ZONEIDX if kernel else USER_ZONEIDX
        first = zl[0]
        # the fast path: the preferred zone has room above its low watermark and its lowmem_reserve[highest]
        if first.free_pmd * PMD_PAGES + first.free_base - first.wmark_low - first.lowmem_reserve[highest] >= n:
            self._take(first, n, kind, nid, txn)
            return n
        avail, above_low = self._room(zl, highest)
        if above_low >= n:  # get_page_from_freelist(ALLOC_WMARK_LOW) finds room in a later zone
            self._take_above(zl, n, True, highest, kind, nid, txn)
            return n
        # __alloc_pages_slowpath(): wake kswapd, then the min watermark, then one round of direct reclaim (the
        # retry loop and the OOM killer are the callers'; __GFP_NORETRY, the balloon's, has neither)
        self.wake_all_kswapds(zl, ZoneType.NORMAL if kernel else ZoneType.MOVABLE)
        self.kswapd()
        avail, above_low = self._room(zl, highest)
        if avail < n:
            self.stats.direct_reclaim += 1
            self.reclaim(zl, n - avail)
            avail, above_low = self._room(zl, highest)
        if avail < n and not partial:
            self.stats.failures += 1
            return 0
        want = n if n < avail else avail
        # what is above the low watermarks first (the next pages' fast path), then down to the min watermarks
        got = self._take_above(zl, want if want < above_low else above_low, True, highest, kind, nid, txn)
        if got < want:
            self._take_above(zl, want - got, False, highest, kind, nid, txn)
        return want

    def _take_above(
        self, zl: list[Zone], n: int, low: bool, highest: int, kind: str, nid: int, txn: Transaction | None
    ) -> int:
        """n base pages from the zones of `zl` in order, each down to its low (else min) watermark plus its
        lowmem_reserve[highest], as many order-0 allocations would take them; the caller knows they are there.
        Returns the pages taken."""
        left = n
        for z in zl:
            if not left:
                break
            room = z.free_pmd * PMD_PAGES + z.free_base - (z.wmark_low if low else z.wmark_min)
            room -= z.lowmem_reserve[highest]
            if room > 0:
                k = room if room < left else left
                self._take(z, k, kind, nid, txn)
                left -= k
        return n - left

    def alloc_atomic(self, nid: int, n: int, txn: Transaction | None = None) -> int:
        """GFP_ATOMIC: kernel zones near `nid`, no reclaim, no OOM, all or nothing. Above the low watermarks first
        (the fast path); short of that it wakes kswapd (__GFP_KSWAPD_RECLAIM; it runs at the next tick, the caller
        does not wait) and may use free pages below the min watermark, down to `atomic_floor()`
        (plus the zone's lowmem_reserve, which __zone_watermark_ok() adds after lowering min)."""
        zl = self.zonelist(nid, kernel_only=True)
        hi = KERNEL_ZONEIDX
        if self._room(zl, hi)[1] >= n:
            self._take_above(zl, n, True, hi, "kernel", nid, txn)
            return n
        self.wake_all_kswapds(zl, ZoneType.NORMAL)
        if sum(max(0, z.free - atomic_floor(z.wmark_min) - z.lowmem_reserve[hi]) for z in zl) < n:
            self.stats.failures += 1
            return 0
        left = n - self._take_above(zl, min(n, self._room(zl, hi)[1]), True, hi, "kernel", nid, txn)
        for z in zl:
            if not left:
                break
            k = min(max(0, z.free - atomic_floor(z.wmark_min) - z.lowmem_reserve[hi]), left)
            if k:
                self._take(z, k, "kernel", nid, txn)
                left -= k
        return n

    def take_from(self, z: Zone, n: int, txn: Transaction | None = None) -> int:
        """Up to n user pages (anon: movable, unreclaimable with no swap) out of zone `z` itself, down to its low
        watermark: for a caller that knows which zone the kernel's pages came from (balloonsim validate matching a
        recorded guest zone by zone). Returns the pages taken."""
        k = min(n, z.free - z.wmark_low)
        if k > 0:
            self._take(z, k, "anon", z.nid, txn)
        return max(k, 0)

    def _take(self, z: Zone, k: int, kind: str, nid: int, txn: Transaction | None) -> None:
        """k base pages out of z's free lists, charged to `kind`, remembered for a rollback. A balloon's pages
        pin every block they land in, one piece (Take) per block."""
        if kind in _BALLOON_KINDS and z.hot:
            for block, n in self.landings(z, k):
                self._take_piece(z, n, kind, nid, txn, block)
            return
        self._take_piece(z, k, kind, nid, txn, self.landing(z, k) if kind == "kernel" and z.hot else None)

    def _take_piece(
        self, z: Zone, n: int, kind: str, nid: int, txn: Transaction | None, block: HotBlock | None
    ) -> None:
        """n base pages of z that land in `block` (None: boot memory or no hot-added block)."""
        split = z.take(n)
        if block is not None:
            block.unmovable += n
        self._charge(z, n, kind)
        if z.nid != nid:
            self.stats.remote_pages += n
        if txn is not None:
            txn.takes.append(Take(z, n, False, kind, split, block))

    def alloc_pmd(self, nid: int, gfp: Gfp, txn: Transaction | None = None) -> Zone | None:
        """One order-9 (2 MiB) block, as vmemmap_alloc_block(PMD_SIZE) or a 2 MiB balloon unit asks; None when
        no free pageblock can be had.

        Only __GFP_RETRY_MAYFAIL callers (VMEMMAP) go on, as __alloc_pages_slowpath() does for a costly order
        (4.19-6.x): direct compaction first ("costly_order" -> __alloc_pages_direct_compact()), then direct
        reclaim and compaction again (should_compact_retry()); no OOM kill (__alloc_pages_may_oom(): "The OOM
        killer will not help higher order allocs"). Only then does vmemmap_populate() fall back to base pages.
        """
        zl = self.zonelist(nid, kernel_only=gfp is not Gfp.USER)
        kind = "balloon" if gfp is Gfp.BALLOON else ("anon" if gfp is Gfp.USER else "kernel")
        hi = USER_ZONEIDX if gfp is Gfp.USER else KERNEL_ZONEIDX
        z = self._take_pmd(zl, kind, txn, hi, low=True)
        if z is not None:
            return z
        self.wake_all_kswapds(zl, ZoneType.MOVABLE if gfp is Gfp.USER else ZoneType.NORMAL)
        self.kswapd()
        z = self._take_pmd(zl, kind, txn, hi)
        if z is not None or gfp is not Gfp.VMEMMAP:
            return z
        if self.compact(zl, hi):
            return self._take_pmd(zl, kind, txn, hi)
        self.stats.direct_reclaim += 1
        self.reclaim(zl, 4 * PMD_PAGES, wait_writeback=True)
        z = self._take_pmd(zl, kind, txn, hi)
        if z is None and self.compact(zl, hi):
            z = self._take_pmd(zl, kind, txn, hi)
        return z

    def alloc_slowpath(
        self, nid: int, n: int, gfp: Gfp, txn: Transaction | None = None, oom: Callable[[], bool] | None = None
    ) -> int:
        """The kernel's own small allocations (order 0) through __alloc_pages_slowpath(): direct reclaim (waiting
        for writeback) while it makes progress or should_reclaim_retry() still sees reclaimable pages; then
        GFP_KERNEL calls the OOM killer (`oom`, True when it freed something) and starts over, as an order <= 3
        allocation without __GFP_RETRY_MAYFAIL does (__alloc_pages_may_oom()); __GFP_RETRY_MAYFAIL (VMEMMAP)
        fails instead. All or nothing: returns n or 0."""
        got = self.alloc(nid, n, gfp, txn)
        if got:
            return got
        zl = self.zonelist(nid, kernel_only=True)
        no_progress_loops = 0
        for _ in range(_SLOWPATH_LOOPS):
            progress = self.reclaim(zl, n, wait_writeback=True)
            got = self.alloc(nid, n, gfp, txn)
            if got:
                return got
            if progress:
                no_progress_loops = 0
                continue
            no_progress_loops += 1
            if self.should_reclaim_retry(zl, no_progress_loops, KERNEL_ZONEIDX):
                continue
            if gfp is Gfp.KERNEL and oom is not None and oom():
                no_progress_loops = 0
                continue
            break
        self.stats.failures += 1
        return 0

    def _take_pmd(
        self, zl: list[Zone], kind: str, txn: Transaction | None, highest: int, low: bool = False
    ) -> Zone | None:
        """A free pageblock from the first zone of `zl` that has one above its min (`low`: low) watermark plus its
        lowmem_reserve[highest], as __zone_watermark_ok() checks an order-9 page (free - 511 above the mark)."""
        for z in zl:
            mark = (z.wmark_low if low else z.wmark_min) + z.lowmem_reserve[highest]
            if z.free_pmd and z.free - PMD_PAGES >= mark:
                block = self.landing(z, PMD_PAGES) if kind in _PINNING and z.hot else None
                z.free_pmd -= 1
                if block is not None:
                    block.unmovable += PMD_PAGES
                self._charge(z, PMD_PAGES, kind)
                if txn is not None:
                    txn.takes.append(Take(z, PMD_PAGES, True, kind, block=block))
                return z
        return None

    @staticmethod
    def compaction_suitable(z: Zone, highest: int) -> bool:
        """compaction_suitable() for order 9 (a costly order): free pages at least the low watermark plus
        compact_gap(9) = 2 << 9 plus lowmem_reserve[highest] (__zone_watermark_ok()); otherwise compaction is
        COMPACT_SKIPPED."""
        return z.free - 2 * PMD_PAGES >= z.wmark_low + z.lowmem_reserve[highest]

    def compact(self, zl: list[Zone], highest: int) -> bool:
        """Direct compaction for one order-9 block: the first zone where compaction_suitable() holds (free
        pages at least the low watermark plus compact_gap(9) = 2 << 9, for a costly order) and whose scattered
        free pages sit among movable pages (anon, page cache) migrates a pageblock's worth of them into the
        fragments: a whole free pageblock. Fragments among unmovable pages only cannot be compacted."""
        self.stats.compact_stall += 1
        for z in zl:
            suitable = self.compaction_suitable(z, highest)
            if suitable and z.free_base >= PMD_PAGES and z.anon + z.pagecache >= PMD_PAGES:
                z.free_base -= PMD_PAGES
                z.free_pmd += 1
                self.changed(committed=False)  # fragments became a free pageblock
                self.stats.compact_success += 1
                return True
        return False

    def alloc_pmds(
        self, nid: int, count: int, gfp: Gfp, charge: str | None = None, txn: Transaction | None = None
    ) -> list[tuple[Zone, int]]:
        """Up to `count` order-9 blocks for a balloon's 2 MiB rounds (GFP_HIGHUSER|__GFP_NORETRY, one
        alloc_pages() per unit); returns (zone, blocks) pieces. With `txn`, each unit is remembered (`Take`,
        merged per block) with the hot-added block it landed in, which a balloon's pages pin.

        __alloc_pages_slowpath() for a costly __GFP_NORETRY order as 6.12.118 has it (mm/page_alloc.c:4289-4501):
        whole free pageblocks above the low watermarks (the fast path), then kswapd is woken and the min watermarks
        allowed; each further unit tries direct compaction, gives up when it is COMPACT_SKIPPED (no zone
        compaction_suitable()), else does one round of direct reclaim (compact_gap(9) pages) and compaction, and
        gives up if that fails too ("Do not loop if specifically requested"): no retry, no OOM. 7.3.4 (l.4786-4997,
        `compact_first`) no longer gives up on COMPACT_SKIPPED: after any failed first compaction it does the one
        reclaim and compaction round; no profile here is that late (V. Babka's series of January 2026, after 6.18)."""
        kind = charge or ("balloon" if gfp is Gfp.BALLOON else ("anon" if gfp is Gfp.USER else "kernel"))
        zl = self.zonelist(nid, kernel_only=gfp is not Gfp.USER)
        hi = USER_ZONEIDX if gfp is Gfp.USER else KERNEL_ZONEIDX
        got = [0] * len(zl)
        count = self._pmds_above(zl, count, True, hi, kind, got, txn)
        if count > 0:
            self.wake_all_kswapds(zl, ZoneType.MOVABLE if gfp is Gfp.USER else ZoneType.NORMAL)
            self.kswapd()
            count = self._pmds_above(zl, count, True, hi, kind, got, txn)
            count = self._pmds_above(zl, count, False, hi, kind, got, txn)
        while count > 0:
            if not any(self.compaction_suitable(z, hi) for z in zl):
                break  # COMPACT_SKIPPED: nopage
            if not self.compact(zl, hi):
                self.stats.direct_reclaim += 1
                self.reclaim(zl, 2 * PMD_PAGES)
                if not self.compact(zl, hi):
                    break
            if self._pmds_above(zl, 1, False, hi, kind, got, txn):
                break  # the compacted pageblock lies below a min watermark
            count -= 1
        return [(z, k) for z, k in zip(zl, got, strict=True) if k]

    def _pmds_above(
        self,
        zl: list[Zone],
        count: int,
        low: bool,
        highest: int,
        kind: str,
        got: list[int],
        txn: Transaction | None = None,
    ) -> int:
        """Free pageblocks from the zones of `zl` in order, each while it stays at its low (else min) watermark
        plus its lowmem_reserve[highest]; `got` counts them per zone. Returns the blocks still wanted."""
        for i, z in enumerate(zl):
            if count <= 0:
                break
            mark = (z.wmark_low if low else z.wmark_min) + z.lowmem_reserve[highest]
            room = min(z.free_pmd, (z.free - mark) // PMD_PAGES, count)
            if room > 0:
                got[i] += room
                count -= room
                if txn is None:
                    z.free_pmd -= room
                    self._charge(z, room * PMD_PAGES, kind)
                else:
                    self._take_pmds(z, room, kind, txn)
        return count

    def _take_pmds(self, z: Zone, room: int, kind: str, txn: Transaction) -> None:
        """`room` whole free pageblocks of `z`, remembered in `txn` with the hot-added block each lands in (one
        `Take` per run of units in the same block)."""
        takes = txn.takes
        runs = self.pmd_landings(z, room) if kind in _PINNING and z.hot else [(None, room)]
        for block, n in runs:
            pages = n * PMD_PAGES
            z.free_pmd -= n
            if block is not None:
                block.unmovable += pages
            self._charge(z, pages, kind)
            last = takes[-1] if takes else None
            if last is not None and last.pmd and last.zone is z and last.block is block and last.kind == kind:
                last.pages += pages
            else:
                takes.append(Take(z, pages, True, kind, block=block))

    def free(self, zone: Zone, n: int, kind: str, pmd: bool = False) -> None:
        self._charge(zone, -n, kind)
        if pmd:
            zone.free_pmd += n // PMD_PAGES
        else:
            zone.give(n, contiguous=kind == "anon")

    def release(self, take: Take, n: int | None = None) -> None:
        """Free `n` pages (default: all) of an earlier allocation to the zone, and the block, they came from."""
        n = take.pages if n is None else n
        if take.block is not None:
            take.block.unmovable -= n
        self.free(take.zone, n, take.kind, pmd=take.pmd and n % PMD_PAGES == 0)
        take.pages -= n

    def rollback(self, txn: Transaction) -> None:
        for t in reversed(txn.takes):
            if t.block is not None:
                t.block.unmovable -= t.pages
            if t.pmd:
                self.free(t.zone, t.pages, t.kind, pmd=True)
            else:  # undo exactly: the pageblocks the allocation split are whole again
                self._charge(t.zone, -t.pages, t.kind)
                t.zone.untake(t.pages, t.split)
        txn.takes.clear()

    def _charge(self, zone: Zone, n: int, kind: str) -> None:
        # the tasks' faults and frees and the file reads first: they are most of the calls
        if kind == "anon":
            self.changed()
            zone.anon += n
            if n > 0 and self.anon_charged is not None:
                self.anon_charged(zone, n)
            return
        if kind == "pagecache":
            self.changed(False)
            zone.pagecache += n
            return
        self.changed()
        if kind == "kernel":
            zone.kernel += n
        elif kind == "balloon":
            # ballooned pages leave the allocator: adjust_managed_page_count(-n)
            zone.managed -= n
            self.managed_adjusted()
        elif kind == "balloon_managed":
            # ballooned pages a driver keeps managed (hv_balloon before 5.11): they look allocated
            zone.kernel += n
        else:  # pragma: no cover
            raise ValueError(kind)

    # -- views -----------------------------------------------------------------------------------
    def iter_zones(self) -> Iterator[Zone]:
        return iter(self.zones.values())

    def total(self, attr: str) -> int:
        return sum(getattr(z, attr) for z in self.zones.values())
