"""The buddy allocator seen through counters: zonelists, watermarks, reclaim, NUMA fallback.

What an allocation may do depends on its gfp class, as in the kernel:
- `VMEMMAP` (GFP_KERNEL|__GFP_RETRY_MAYFAIL|__GFP_NOWARN, vmemmap_alloc_block): kernel zones, reclaims,
  never invokes the OOM killer, may fail.
- `KERNEL` (GFP_KERNEL: slab metadata, page tables): kernel zones, reclaims, may fail here; the model
  does not OOM-kill for the few pages of metadata.
- `USER` (GFP_HIGHUSER_MOVABLE): every zone, Movable first. The caller (balloonsim.sim.memory) runs the slow
  path's loop: direct reclaim while should_reclaim_retry() allows, then the OOM killer.
- `BALLOON` (GFP_HIGHUSER|__GFP_NORETRY|__GFP_NOMEMALLOC): kernel zones only (GFP_HIGHUSER is not
  movable, so a balloon never takes ZONE_MOVABLE pages), no reclaim, no OOM, stops at the min
  watermark, partial success allowed.

Reclaim frees page cache and, with a swap device, writes anonymous pages to swap, split by get_scan_count()
(balloonsim.kernel.vmscan); kswapd does it in the background from the low to the high watermark.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from balloonsim.kernel.swap import SwapDevice
from balloonsim.kernel.vmscan import DEF_PRIORITY, LruCost, ScanBalance, get_scan_count
from balloonsim.kernel.zone import Zone, ZoneType
from balloonsim.units import PMD_PAGES

MAX_RECLAIM_RETRIES = 16  # mm/internal.h (mm/page_alloc.c before 5.x): no-progress rounds before the OOM killer

_KERNEL_ZONES = (ZoneType.NORMAL, ZoneType.DMA32)
_USER_ZONES = (ZoneType.MOVABLE, ZoneType.NORMAL, ZoneType.DMA32)


class Gfp(StrEnum):
    VMEMMAP = "vmemmap"
    KERNEL = "kernel"
    USER = "user"
    BALLOON = "balloon"


_CHARGE = {Gfp.VMEMMAP: "kernel", Gfp.KERNEL: "kernel", Gfp.USER: "anon", Gfp.BALLOON: "balloon"}


@dataclass
class Take:
    """One piece of an allocation: so that a failed add_memory() can hand it all back."""

    zone: Zone
    pages: int
    pmd: bool
    kind: str  # counter it was charged to: "kernel" | "anon" | "balloon"
    split: int = 0  # pageblocks the take split, so that a rollback merges them again


@dataclass
class AllocStats:
    direct_reclaim: int = 0  # allocations that had to reclaim below the low watermark themselves
    reclaimed_pages: int = 0
    failures: int = 0
    remote_pages: int = 0
    pswpout_kswapd: int = 0  # anon pages kswapd wrote to swap
    pswpout_direct: int = 0  # anon pages direct reclaim wrote to swap


@dataclass
class Transaction:
    """Everything taken during one add_memory(); rolled back if it fails."""

    takes: list[Take] = field(default_factory=list)


class PageAllocator:
    def __init__(self, zones: dict[tuple[int, ZoneType], Zone], distances: dict[tuple[int, int], int]):
        self.zones = zones
        self.distances = distances
        self.stats = AllocStats()
        self.gen = 0  # bumped by every change of the zones' memory: lets periodic work skip when nothing moved
        self._watchers: list[Callable[[], None]] = []  # called once at the next change (watch())
        self._committed_watchers: list[Callable[[], None]] = []  # ... of committed memory (watch_committed())
        self._nids = sorted({nid for nid, _ in zones})
        self._zonelists: dict[tuple[int, bool], list[Zone]] = {}
        self.swap = SwapDevice()  # no swap unless the guest configures one
        self.swappiness = 60  # vm.swappiness
        self.lru_cost = LruCost()
        self.refaults_anon = 0  # WORKINGSET_ACTIVATE_ANON
        self._refaults_seen = 0  # its snapshot at the last reclaim pass (snapshot_refaults())
        # try_to_unmap() of reclaimed anon pages: the owner of the user memory learns how many went to swap
        self.rmap: Callable[[int], None] | None = None
        # called once, the first time kswapd finds a node below its low watermark
        self.on_pressure: Callable[[], None] | None = None

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
            watchers, self._committed_watchers = self._committed_watchers, []
            for w in watchers:
                w()
        if self._watchers:
            watchers, self._watchers = self._watchers, []
            for w in watchers:
                w()

    def watch(self, callback: Callable[[], None]) -> None:
        """Call `callback` (once) at the next change: what lets a periodic check sleep while nothing moves."""
        self._watchers.append(callback)

    def watch_committed(self, callback: Callable[[], None]) -> None:
        """Call `callback` (once) at the next change that moves committed memory, and so free plus cached memory
        (a reader of those need not look after a change of page cache only)."""
        self._committed_watchers.append(callback)

    # -- watermarks ------------------------------------------------------------------------------
    def setup_watermarks(self, min_free_kbytes_max: int) -> None:
        """init_per_zone_wmark_min() + __setup_per_zone_wmarks(), watermark_scale_factor 10."""
        lowmem = sum(z.managed for z in self.zones.values() if z.type.is_kernel)
        lowmem_kb = lowmem * 4
        min_free_kb = int(math.isqrt(lowmem_kb * 16))
        min_free_kb = max(128, min(min_free_kb, min_free_kbytes_max))
        min_pages = min_free_kb // 4
        for z in self.zones.values():
            if z.managed == 0:
                z.wmark_min = z.wmark_low = z.wmark_high = 0
                continue
            if z.type.is_kernel and lowmem:
                zmin = min_pages * z.managed // lowmem
            else:  # ZONE_MOVABLE: a small min like highmem (SWAP_CLUSTER_MAX..128 pages)
                zmin = max(32, min(z.managed // 1024, 128))
            delta = max(zmin // 4, z.managed * 10 // 10000)
            z.wmark_min = zmin
            z.wmark_low = zmin + delta
            z.wmark_high = zmin + 2 * delta

    # -- reclaim ---------------------------------------------------------------------------------
    def reclaim(self, zones: list[Zone], want: int, kswapd: bool = False) -> int:
        """Reclaim up to `want` pages from `zones` (nearest first): page cache, and anonymous memory to swap when
        get_scan_count() says so (balloonsim.kernel.vmscan). Returns the pages freed (did_some_progress).

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
            n_anon = self._shrink_anon(zones, rest - n_file, kswapd)
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
            n = min(z.pagecache, want - got)
            if n:
                self.changed(committed=False)
                z.pagecache -= n
                z.give(n, contiguous=False)
                got += n
        return got

    def _shrink_anon(self, zones: list[Zone], want: int, kswapd: bool) -> int:
        """pageout() of anon pages: each takes a swap slot; the owners' page tables get swap entries (rmap)."""
        want = self.swap.writable(want)
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
        if got:
            self.swap.write(got)
            if kswapd:
                self.stats.pswpout_kswapd += got
            else:
                self.stats.pswpout_direct += got
            self.lru_cost.note(False, got, 0, self._lru_size())
            if self.rmap is not None:
                self.rmap(got)
        return got

    def _lru_size(self) -> int:
        return sum(z.anon + z.pagecache for z in self.zones.values())

    def note_refault(self, pages: int) -> None:
        """Anon pages came back from swap: workingset_refault() activates them and lru_note_cost_refault()
        charges the anon list (mm/workingset.c, mm/swap.c)."""
        self.refaults_anon += pages
        self.lru_cost.note(False, pages, 0, self._lru_size())

    def kswapd(self, zones: list[Zone]) -> None:
        """Background reclaim, per node as since 4.8 (node-based LRUs): when zones of a node fall below
        their low watermark, kswapd reclaims the node's page cache (and anon, with swap), from any of its
        zones, until the deficit to the high watermarks is made up."""
        for z in zones:  # the common case first: every zone at or above its low watermark, nothing to do
            if z.managed and z.free_pmd * PMD_PAGES + z.free_base < z.wmark_low:
                break
        else:
            return
        deficit: dict[int, int] = {}
        for z in zones:
            if z.managed and z.free < z.wmark_low:
                deficit[z.nid] = deficit.get(z.nid, 0) + z.wmark_high - z.free
        if deficit and self.on_pressure is not None:
            hook, self.on_pressure = self.on_pressure, None
            hook()
        swap = self.swap.used < self.swap.slots  # a free slot: anon is reclaimable
        for nid, want in deficit.items():
            node_zones = sorted(
                (z for z in zones if z.nid == nid and (z.pagecache or (swap and z.anon))), key=lambda z: -z.pagecache
            )
            if node_zones:
                self.reclaim(node_zones, want, kswapd=True)

    def reclaim_throttled(self, zl: list[Zone]) -> bool:
        """Anon could be swapped out but the device is busy writing: reclaim waits for writeback
        (reclaim_throttle(), VMSCAN_THROTTLE_WRITEBACK) and should_reclaim_retry() keeps retrying, as the
        reclaimable estimate still counts the anon pages: no OOM kill, the allocating task stalls."""
        swap = self.swap
        return swap.free > 0 and swap.budget < 1 and any(z.anon for z in zl)

    def zone_reclaimable_pages(self, z: Zone) -> int:
        """mm/vmscan.c zone_reclaimable_pages(): the file LRU, plus the anon LRU while swap has a free slot."""
        return z.pagecache + (z.anon if self.swap.free > 0 else 0)

    def should_reclaim_retry(self, zl: list[Zone], no_progress_loops: int) -> bool:
        """mm/page_alloc.c should_reclaim_retry() for an order-0 allocation: give up after MAX_RECLAIM_RETRIES
        rounds in a row without progress, or when no zone could meet its min watermark even if every
        reclaimable page were freed; otherwise the slow path loops (direct reclaim again)."""
        if no_progress_loops > MAX_RECLAIM_RETRIES:
            return False
        return any(z.managed and self.zone_reclaimable_pages(z) + z.free > z.wmark_min for z in zl)

    # -- allocation ------------------------------------------------------------------------------
    @staticmethod
    def _fits(zones: list[Zone], n: int, use_min: bool) -> int:
        room = 0
        for z in zones:
            r = z.free_pmd * PMD_PAGES + z.free_base - (z.wmark_min if use_min else z.wmark_low)
            if r > 0:
                room += r
        return room

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
        kernel = gfp is not Gfp.USER  # only GFP_HIGHUSER_MOVABLE may use ZONE_MOVABLE (GFP_HIGHUSER has no
        zl = self._zonelists.get((nid, kernel)) or self.zonelist(nid, kernel_only=kernel)  # __GFP_MOVABLE)
        kind = charge or _CHARGE[gfp]
        first = zl[0]
        if first.free_pmd * PMD_PAGES + first.free_base - first.wmark_low >= n:  # the fast path: the preferred
            self._take(first, n, kind, nid, txn)  # zone has room above its low watermark
            return n
        avail = self._fits(zl, n, use_min=True)
        if gfp is not Gfp.BALLOON and self._fits(zl, n, use_min=False) < n:
            self.kswapd(zl)
            avail = self._fits(zl, n, use_min=True)
            if avail < n:
                self.stats.direct_reclaim += 1
                self.reclaim(zl, n - avail)
                avail = self._fits(zl, n, use_min=True)
        if avail < n and not partial:
            self.stats.failures += 1
            return 0
        want = min(n, avail)
        left = want
        for z in zl:
            if not left:
                break
            k = min(max(0, z.free - z.wmark_min), left)
            if k:
                self._take(z, k, kind, nid, txn)
                left -= k
        return want

    def _take(self, z: Zone, k: int, kind: str, nid: int, txn: Transaction | None) -> None:
        """k base pages out of z's free lists, charged to `kind`, remembered for a rollback."""
        split = z.take(k)
        self._charge(z, k, kind)
        if z.nid != nid:
            self.stats.remote_pages += k
        if txn is not None:
            txn.takes.append(Take(z, k, False, kind, split))

    def alloc_pmd(self, nid: int, gfp: Gfp, txn: Transaction | None = None) -> Zone | None:
        """One order-9 (2 MiB) block, as vmemmap_alloc_block(PMD_SIZE) or a 2 MiB balloon unit asks;
        None when no free pageblock is left. Only __GFP_RETRY_MAYFAIL callers reclaim and retry."""
        zl = self.zonelist(nid, kernel_only=gfp is not Gfp.USER)
        kind = "balloon" if gfp is Gfp.BALLOON else ("anon" if gfp is Gfp.USER else "kernel")
        for attempt in (0, 1):
            for z in zl:
                if z.free_pmd and z.free - PMD_PAGES >= z.wmark_min:
                    z.free_pmd -= 1
                    self._charge(z, PMD_PAGES, kind)
                    if txn is not None:
                        txn.takes.append(Take(z, PMD_PAGES, True, kind))
                    return z
            if attempt == 0 and gfp is Gfp.VMEMMAP:  # __GFP_RETRY_MAYFAIL: reclaim, then one more pass
                self.stats.direct_reclaim += 1
                self.reclaim(zl, 4 * PMD_PAGES)
            else:
                break
        return None

    def alloc_pmds(self, nid: int, count: int, gfp: Gfp) -> list[tuple[Zone, int]]:
        """Up to `count` order-9 blocks without reclaim (a balloon's 2 MiB rounds, __GFP_NORETRY),
        taken zone by zone in zonelist order; returns (zone, blocks) pieces."""
        kind = "balloon" if gfp is Gfp.BALLOON else ("anon" if gfp is Gfp.USER else "kernel")
        out: list[tuple[Zone, int]] = []
        for z in self.zonelist(nid, kernel_only=gfp is not Gfp.USER):
            if count <= 0:
                break
            room = min(z.free_pmd, (z.free - z.wmark_min) // PMD_PAGES, count)
            if room > 0:
                z.free_pmd -= room
                self._charge(z, room * PMD_PAGES, kind)
                out.append((z, room))
                count -= room
        return out

    def free(self, zone: Zone, n: int, kind: str, pmd: bool = False) -> None:
        self._charge(zone, -n, kind)
        if pmd:
            zone.free_pmd += n // PMD_PAGES
        else:
            zone.give(n, contiguous=kind == "anon")

    def rollback(self, txn: Transaction) -> None:
        for t in reversed(txn.takes):
            if t.pmd:
                self.free(t.zone, t.pages, t.kind, pmd=True)
            else:  # undo exactly: the pageblocks the allocation split are whole again
                self._charge(t.zone, -t.pages, t.kind)
                t.zone.untake(t.pages, t.split)
        txn.takes.clear()

    def _charge(self, zone: Zone, n: int, kind: str) -> None:
        self.changed(committed=kind != "pagecache")
        if kind == "kernel":
            zone.kernel += n
        elif kind == "anon":
            zone.anon += n
        elif kind == "pagecache":
            zone.pagecache += n
        elif kind == "balloon":
            # ballooned pages leave the allocator: adjust_managed_page_count(-n)
            zone.managed -= n
        else:  # pragma: no cover
            raise ValueError(kind)

    # -- views -----------------------------------------------------------------------------------
    def iter_zones(self) -> Iterator[Zone]:
        return iter(self.zones.values())

    def total(self, attr: str) -> int:
        return sum(getattr(z, attr) for z in self.zones.values())
