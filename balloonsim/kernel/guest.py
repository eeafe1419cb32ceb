"""The guest kernel's memory: add_memory(), online_pages(), offline_pages(), remove_memory(), meminfo.

No SimPy here: drivers and the simulation call this API; `balloonsim hotplug` drives it directly.
Every count is in 4 KiB pages and every range in page frame numbers; sources are in
docs/kernel-facts.md and in the docstrings below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from balloonsim.errors import ConfigError
from balloonsim.kernel.backing import Backing
from balloonsim.kernel.block import BlockState, MemoryBlock
from balloonsim.kernel.errno import E2BIG, EBUSY, EEXIST, EINTR, EINVAL, ENOMEM, GuestCrash, KernelOops
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.meminfo import Meminfo, read_meminfo
from balloonsim.kernel.memory_group import MemoryGroup, auto_movable_wants_movable
from balloonsim.kernel.migrate import evacuate
from balloonsim.kernel.overhead import (
    SECTION_ROOT_SECTIONS,
    PageTables,
    TableKey,
    block_device_bytes,
    metadata_bytes,
    section_metadata_bytes,
)
from balloonsim.kernel.page_alloc import Gfp, PageAllocator, Take, Transaction, WatermarkRules
from balloonsim.kernel.profiles import DEFAULT_KERNEL, KernelProfile, get_profile
from balloonsim.kernel.stats import GuestStats
from balloonsim.kernel.swap import SwapDevice
from balloonsim.kernel.unmovable import UnmovablePlacement
from balloonsim.kernel.vmemmap import LeftSections, MemmapPlacement, OrdinaryMemmap, SparseVmemmap
from balloonsim.kernel.zone import Zone, ZoneType
from balloonsim.units import (
    MAX_MEMORY_BLOCK_SIZE,
    MEM_SIZE_FOR_LARGE_BLOCK,
    PAGE_SHIFT,
    PAGE_SIZE,
    PAGES_PER_SECTION,
    PMD_PAGES,
    PUD_PAGES,
    SECTION_SIZE,
    STRUCT_PAGE_SIZE,
    GiB,
    MiB,
    div_round_up,
    pfn_to_page_addr,
)

ONLINE_TYPES = ("online", "online_kernel", "online_movable")
MAX_DMA_PFN = (16 * MiB) >> PAGE_SHIFT  # arch/x86/include/asm/dma.h
FIRST_1M_PFNS = MiB >> PAGE_SHIFT
# not RAM in any x86 e820 map the kernel keeps (trim_bios_range()): page 0, and BIOS_BEGIN..BIOS_END (640 KiB-1 MiB)
X86_LOW_NOT_RAM = ((0, 1), ((640 << 10) >> PAGE_SHIFT, FIRST_1M_PFNS))


def zone_pfn_limits() -> tuple[tuple[ZoneType, int, int], ...]:
    """The pfns each boot zone may hold on x86_64 (zone_sizes_init(): MAX_DMA_PFN, MAX_DMA32_PFN)."""
    four_g = (4 * GiB) >> PAGE_SHIFT
    return ((ZoneType.DMA, 0, MAX_DMA_PFN), (ZoneType.DMA32, MAX_DMA_PFN, four_g), (ZoneType.NORMAL, four_g, 1 << 52))


# callback(guest, block, span) -> the pfns to hand to the buddy allocator (generic_online_page)
OnlinePageCallback = Callable[["Guest", MemoryBlock, Extents], Extents]
Notifier = Callable[[str, MemoryBlock], None]


def probe_memory_block_size(boot_mem_end: int, hypervisor: bool, profile: KernelProfile) -> int:
    """arch/x86/mm/init_64.c probe_memory_block_size()."""
    if boot_mem_end < MEM_SIZE_FOR_LARGE_BLOCK:
        return SECTION_SIZE
    if not hypervisor and profile.bare_metal_max_block:
        return MAX_MEMORY_BLOCK_SIZE
    bz = MAX_MEMORY_BLOCK_SIZE
    while bz > SECTION_SIZE and boot_mem_end % bz:
        bz >>= 1
    return bz


@dataclass
class GuestConfig:
    """What the guest boots with. Sizes in bytes. These defaults are balloonsim's only guest defaults: a
    scenario's [guest] table (balloonsim.scenario.GuestSection) and `balloonsim hotplug` take theirs from here."""

    boot: list[int] = field(default_factory=lambda: [4 * GiB])  # boot memory per NUMA node
    extra_nodes: int = 0  # possible nodes without boot memory (hotplug may bring them online)
    max_addr: int = 64 * GiB  # end of the hotpluggable physical window
    block_size: int | None = None  # None: probe_memory_block_size()
    kernel: str = DEFAULT_KERNEL
    hypervisor: bool = True
    movable_node: bool = False
    debug_vm: bool = False  # CONFIG_DEBUG_VM: page_init_poison() writes the memmap at add time
    accounting: str = "kernel"  # self-hosted vmemmap: "kernel" (not managed) | "allocated"
    direct_gbpages: bool = True
    la57: bool = False  # 5-level paging: MAX_PHYSMEM_BITS 52 instead of 46
    struct_page_size: int = STRUCT_PAGE_SIZE
    lowmem_limit: int = 3 * GiB  # boot RAM below 4 GiB stops here (the PCI hole)
    kernel_reserved: int = 40 * MiB  # kernel image, boot-time reservations: present, never managed
    page_cache: int = 0  # page cache at boot (reclaimable)
    online_policy: str = "contig-zones"  # or "auto-movable" (memory_hotplug.online_policy, 5.15+)
    auto_movable_ratio: int = 301  # memory_hotplug.auto_movable_ratio (%)
    auto_movable_numa_aware: bool = True  # memory_hotplug.auto_movable_numa_aware
    node_distance_remote: int = 20
    # swap (balloonsim.kernel.swap): a device of `swap` bytes (0: none), vm.swappiness, and the virtual disk's
    # speed: QEMU virtio-blk on host NVMe reads 4 KiB at queue depth 1 in ~100 us (10.5k IOPS, QEMU commit
    # bdd6a90a9e5f); 125 MiB/s is a cloud volume's baseline throughput (AWS gp3)
    swap: int = 0
    swappiness: int = 60
    swap_bandwidth: int = 125 * MiB  # bytes per second
    swap_latency: float = 100e-6  # seconds per synchronous 4 KiB read
    vcpus: int = 2  # CPUs the guest's tasks run on: PSI's nr_cpus
    # /sys/kernel/mm/transparent_hugepage/enabled at boot: with "always" or "madvise" khugepaged runs and raises
    # min_free_kbytes to 11 pageblocks per zone up to ZONE_NORMAL (44 MiB on a 2 GiB guest). Distribution kernels
    # enable it (Debian and Ubuntu: CONFIG_TRANSPARENT_HUGEPAGE_MADVISE; RHEL: ALWAYS); "never" is the model's
    # default because the shipped experiments were made without it.
    transparent_hugepage: str = "never"


class Guest:
    """A Linux x86_64 guest's physical memory, memory blocks, zones and nodes."""

    def __init__(self, config: GuestConfig | None = None, strategy: MemmapPlacement | None = None, trace: bool = False):
        self.config = cfg = config or GuestConfig()
        self.profile: KernelProfile = get_profile(cfg.kernel)
        if cfg.online_policy == "auto-movable" and not self.profile.auto_movable:
            raise ConfigError(
                "guest.online_policy",
                f"auto-movable needs kernel 5.15 or later (e83a437faa62); profile {cfg.kernel} has only contig-zones",
            )
        self.sp = cfg.struct_page_size
        self.trace: list[str] | None = [] if trace else None
        self.stats = GuestStats()
        self.crashed: GuestCrash | None = None
        self.online_page_callback: OnlinePageCallback | None = None
        self.auto_online: str | None = None  # auto_online_blocks; None: "offline"
        self.auto_online_hook: Callable[[int, int], None] | None = None
        self.uevent: Callable[[int], None] | None = None  # KOBJ_ADD of a new memory block device
        self.expose_hook: Callable[[MemoryBlock, int], None] | None = None  # pages reached the buddy
        # the OOM killer, for a GFP_KERNEL allocation reclaim could not satisfy: True if it freed something (the
        # allocation is retried), False if there was nothing to kill; None: no user memory to kill (-ENOMEM)
        self.out_of_memory: Callable[[], bool] | None = None
        self.blocks_online = 0
        self.notifiers: list[Notifier] = []
        self.blocks: dict[int, MemoryBlock] = {}
        # first_free_block(): for each block id asked from, every block from there to the value is added
        self._free_from: dict[int, int] = {}
        self._next_group = 0
        self.groups: dict[int, tuple[int, int]] = {}  # add_memory() call -> (start_pfn, nr_pages)
        self.memory_groups: list[MemoryGroup] = []  # memory_group_register_static()/_dynamic(), 5.15+
        self.slab_bytes = 0
        self.slab: list[Take] = []  # the pages backing the slab (kmalloc'ed metadata), oldest first
        self.slab_total = 0  # their pages
        self.table_pages: dict[TableKey, Take] = {}  # page-table page of each table hot-add created
        # block id -> the other blocks whose memmap lives in it (a block's own memmap in it ties it to nothing)
        self.hosted_by: dict[int, set[int]] = {}
        self.zone_link: dict[int, Zone] = {}  # before 5.5: offline block -> the zone its struct pages link to
        self._layout_boot()
        self.alloc.swap = SwapDevice(cfg.swap >> PAGE_SHIFT, cfg.swap_bandwidth, cfg.swap_latency)
        self.alloc.swappiness = cfg.swappiness
        bz = cfg.block_size or probe_memory_block_size(self.boot_end_pfn << PAGE_SHIFT, cfg.hypervisor, self.profile)
        self.block_size = bz
        self.block_pages = bz >> PAGE_SHIFT
        self.backing = Backing(self.blocks, self.block_pages)  # the hypervisor's view: which pfns are backed
        self.max_pfn = cfg.max_addr >> PAGE_SHIFT
        # where add_memory() puts the memmap; without a strategy, the ordinary memmap as every kernel does
        self.strategy: MemmapPlacement = strategy if strategy is not None else OrdinaryMemmap()
        self.vmemmap = SparseVmemmap(self.alloc, self.stats, self.profile, self.block_pages, self.sp, self.trace)
        # sections a failed add_memory() left added (usage map, memmap, direct map) with no resource and no memory
        # block: nothing can remove them, and an add over them gets -EEXIST (Guest._leave_sections())
        self.stale_sections: Extents = self.vmemmap.stale_sections
        self.stale_pieces: list[Take] = []  # the pages of their memmap

    # ----------------------------------------------------------------------------------- boot ---
    def _layout_boot(self) -> None:
        cfg = self.config
        nnodes = len(cfg.boot) + cfg.extra_nodes
        distances = {(a, b): 10 if a == b else cfg.node_distance_remote for a in range(nnodes) for b in range(nnodes)}
        zones = {(nid, zt): Zone(nid, zt) for nid in range(nnodes) for zt in ZoneType}
        self.alloc = PageAllocator(zones, distances)
        self.alloc.reserve_follows_managed = self.profile.reserve_follows_managed
        cpu_nodes = {nid for nid, size in enumerate(cfg.boot) if size > 0}  # CPUs live on the boot nodes
        self.placement = UnmovablePlacement(self.alloc, self.profile.online_to_tail, cpu_nodes)
        self.online_nodes = {nid for nid, size in enumerate(cfg.boot) if size > 0}
        self.possible_nodes = set(range(nnodes))
        self.pagetables = PageTables(direct_gbpages=cfg.direct_gbpages)
        self.boot_ranges: list[tuple[int, int, int]] = []  # (nid, start_pfn, end_pfn)
        low_end = cfg.lowmem_limit >> PAGE_SHIFT
        four_g = (4 * GiB) >> PAGE_SHIFT
        pfn = 0
        self.boot_present = 0
        self.boot_memmap_pages = 0
        self.low_reserved_pages = 0  # RAM of the first 1 MiB: present, never managed (a1e2c031ec39)
        for nid, size in enumerate(cfg.boot):
            left = size >> PAGE_SHIFT
            while left:
                if pfn < four_g and pfn >= low_end:
                    pfn = four_g
                end = pfn + left if pfn >= four_g else min(pfn + left, low_end)
                self.boot_ranges.append((nid, pfn, end))
                self._boot_range(nid, pfn, end)
                left -= end - pfn
                pfn = end
        self.boot_end_pfn = pfn
        if self.boot_present == 0:
            raise ValueError("the guest needs boot memory")
        # kernel image and boot reservations, on node 0
        reserved = min(cfg.kernel_reserved >> PAGE_SHIFT, self._first_zone(0).free - PMD_PAGES)
        self._reserve_boot(0, reserved)
        self.alloc.setup_watermarks(self.wmark_rules)
        if cfg.page_cache:
            self.alloc.alloc(0, cfg.page_cache >> PAGE_SHIFT, Gfp.USER, partial=True)
            for z in self.alloc.iter_zones():  # what was allocated is page cache, not anon
                z.pagecache += z.anon
                z.anon = 0

    def _boot_range(self, nid: int, start: int, end: int) -> None:
        """One e820 RAM range of boot memory, split into ZONE_DMA (below MAX_DMA_PFN, 16 MiB), ZONE_DMA32 (below
        4 GiB) and ZONE_NORMAL. x86 takes pfn 0 and the legacy BIOS area 640 KiB-1 MiB out of RAM
        (trim_bios_range()) and, since 5.13, reserves all of the first 1 MiB (a1e2c031ec39 "x86/setup: Always
        reserve the first 1M of RAM"): present, never managed. The memmap of the whole range comes from memblock,
        top-down: out of the range's highest zone."""
        pieces = []
        for zt, lo, hi in zone_pfn_limits():
            lo, hi = max(start, lo), min(end, hi)
            if hi > lo:
                pieces.append((zt, lo, hi))
        memmap = sum(div_round_up((hi - lo) * self.sp, PAGE_SIZE) for _, lo, hi in pieces)
        self.boot_memmap_pages += memmap
        for i, (zt, lo, hi) in enumerate(pieces):
            z = self.alloc.zones[(nid, zt)]
            present = hi - lo
            reserved = 0
            if zt is ZoneType.DMA:
                holes = sum(max(0, min(hi, e) - max(lo, s)) for s, e in X86_LOW_NOT_RAM)
                present -= holes
                reserved = max(0, min(hi, FIRST_1M_PFNS) - lo) - holes  # the first 1 MiB's RAM pages
                lo = max(lo, X86_LOW_NOT_RAM[0][1])  # the zone starts after page 0
            charged = memmap if i == len(pieces) - 1 else 0
            self.low_reserved_pages += reserved
            z.present += present
            z.boot_present += present
            z.managed += present - reserved - charged
            z.give(present - reserved - charged, contiguous=True)
            z.extend_span(lo, hi)
            self.boot_present += present
        self.pagetables.mark_boot(start, end - start, self.sp)

    @property
    def wmark_rules(self) -> WatermarkRules:
        p = self.profile
        return WatermarkRules(
            min_free_kbytes_max=p.min_free_kbytes_max,
            movable_min_capped=p.movable_min_capped,
            khugepaged=self.config.transparent_hugepage != "never",
            khugepaged_after_hotplug=p.khugepaged_after_hotplug,
        )

    def _first_zone(self, nid: int) -> Zone:
        for zt in (ZoneType.DMA32, ZoneType.NORMAL):
            z = self.alloc.zones[(nid, zt)]
            if z.managed:
                return z
        raise ValueError(f"node {nid} has no boot memory")

    def _reserve_boot(self, nid: int, n: int) -> None:
        z = self._first_zone(nid)
        z.take(n)
        z.managed -= n
        self.kernel_reserved_pages = n

    # ----------------------------------------------------------------------------- helpers ---
    def _trace(self, line: str) -> None:
        if self.trace is not None:
            self.trace.append(line)

    def memmap_pages_for(self, nr_pages: int) -> int:
        """Pages of struct page describing nr_pages (PFN_UP(nr * sizeof(struct page)))."""
        return self.vmemmap.memmap_pages(nr_pages)

    def block_of_pfn(self, pfn: int) -> MemoryBlock | None:
        return self.blocks.get(pfn // self.block_pages)

    def blocks_in(self, start_pfn: int, nr_pages: int) -> list[MemoryBlock]:
        first = start_pfn // self.block_pages
        last = (start_pfn + nr_pages - 1) // self.block_pages
        return [self.blocks[i] for i in range(first, last + 1) if i in self.blocks]

    def first_free_block(self, first: int) -> int:
        """The lowest block id at or above `first` that no add_memory() holds. Drivers search for free space from
        the same place (the first block above boot memory), so the answer is remembered per `first`: adds only
        move it up, and remove_memory() moves it back down to what it frees. A guest filled one block at a time
        is walked once, not once per add."""
        bid = self._free_from.get(first, first)
        blocks = self.blocks
        while bid in blocks:
            bid += 1
        self._free_from[first] = bid
        return bid

    def node_has_memory(self, nid: int) -> bool:
        return any(self.alloc.zones[(nid, zt)].managed for zt in ZoneType)

    @property
    def slab_pages(self) -> dict[int, int]:
        """Pages backing the slab, per node."""
        out: dict[int, int] = {}
        for t in self.slab:
            out[t.zone.nid] = out.get(t.zone.nid, 0) + t.pages
        return out

    def charge_slab(self, nid: int, nbytes: int, txn: Transaction) -> bool:
        """kzalloc(GFP_KERNEL) metadata: slab pages grow when the byte total crosses a page. An order-0 GFP_KERNEL
        allocation reclaims while that makes progress and does not fail while the OOM killer can free something:
        __alloc_pages_slowpath() retries "as long as the OOM killer is making progress" (__alloc_pages_may_oom():
        order <= 3, no __GFP_RETRY_MAYFAIL, highest zone ZONE_NORMAL)."""
        self.slab_bytes += nbytes
        need = div_round_up(self.slab_bytes, PAGE_SIZE) - self.slab_total
        if need > 0:
            before = len(txn.takes)
            got = self.alloc.alloc_slowpath(nid, need, Gfp.KERNEL, txn, oom=self.out_of_memory)
            if got < need:
                self.slab_bytes -= nbytes
                return False
            self.slab.extend(txn.takes[before:])
            self.slab_total += need
        return True

    def uncharge_slab(self, nbytes: int) -> None:
        """kfree(): slab pages go back, newest first, to the zone (and block) each came from."""
        self.slab_bytes -= nbytes
        extra = self.slab_total - div_round_up(self.slab_bytes, PAGE_SIZE)
        while extra > 0 and self.slab:
            t = self.slab[-1]
            k = min(extra, t.pages)
            self.alloc.release(t, k)
            if not t.pages:
                self.slab.pop()
            extra -= k
            self.slab_total -= k

    # ------------------------------------------------------------------------- add_memory ---
    def register_memory_group(self, nid: int, *, max_pages: int = 0, unit_pages: int = 0) -> MemoryGroup:
        """memory_group_register_static(nid, max_pages) (an ACPI DIMM) or memory_group_register_dynamic(nid,
        unit_pages) (a virtio-mem device): the unit the auto-movable policy decides for (5.15+)."""
        group = MemoryGroup(nid, dynamic=bool(unit_pages), max_pages=max_pages, unit_pages=unit_pages)
        self.memory_groups.append(group)
        return group

    def unregister_memory_group(self, group: MemoryGroup) -> None:
        """memory_group_unregister(): a group no memory was added to (an ACPI DIMM whose add failed)."""
        self.memory_groups.remove(group)

    def add_memory(
        self,
        nid: int,
        start: int,
        size: int,
        hint: Extents | None = None,
        memmap_on_memory: bool = True,
        group: MemoryGroup | None = None,
    ) -> int:
        """add_memory(nid, start, size): 0 or a negative errno. On failure no memory block stays, but the sections
        of an ordinary memmap that failed in a later section do (Guest._leave_sections()).

        `hint` (pfns) is the usable-subrange hint: the part the driver knows is backed. It is only
        used by strategies that take one. `memmap_on_memory` is the caller's MHP_MEMMAP_ON_MEMORY, `group` its
        memory group (MHP_NID_IS_MGID).
        """
        self.stats.add_calls += 1
        err = self._add_memory(nid, start, size, hint, memmap_on_memory, group)
        if err:
            self.stats.add_errors[err] = self.stats.add_errors.get(err, 0) + 1
        else:
            self.stats.add_ok += 1
        return err

    @property
    def max_physmem_bits(self) -> int:
        """MAX_PHYSMEM_BITS on x86_64: 46 with 4-level paging, 52 with 5-level (la57)."""
        return 52 if self.config.la57 else 46

    def mhp_range_allowed(self, start: int, size: int) -> bool:
        """register_memory_resource() -> mhp_range_allowed(start, size, true): a non-empty range inside
        mhp_get_pluggable_range(), whose end is min(arch_get_mappable_range().end, (1 << MAX_PHYSMEM_BITS) - 1)
        (x86 keeps the generic arch_get_mappable_range(): all of it); else -E2BIG ("Hotplug memory [...]
        exceeds maximum addressable range"). Also inside the guest's hot-pluggable window (max_addr: the
        address space the platform offers, e.g. QEMU's maxmem)."""
        end = start + size
        max_phys = (1 << self.max_physmem_bits) - 1
        return 0 <= start < end and end - 1 <= max_phys and end <= self.max_pfn << PAGE_SHIFT

    def check_hotplug_memory_range(self, start: int, size: int) -> int:
        """add_memory_resource(): start and size must be multiples of the memory block size."""
        if start % self.block_size or size % self.block_size:
            return -EINVAL
        return 0

    def range_is_free(self, start_pfn: int, nr_pages: int) -> bool:
        end = start_pfn + nr_pages
        for _, s, e in self.boot_ranges:
            if start_pfn < e and end > s:
                return False
        return not self.blocks_in(start_pfn, nr_pages)

    def _add_memory(
        self, nid: int, start: int, size: int, hint: Extents | None, mhp_flag: bool, mgroup: MemoryGroup | None
    ) -> int:
        # the kernel's order: register_memory_resource() (-E2BIG, -EEXIST), then the alignment check
        if not self.mhp_range_allowed(start, size):
            return -E2BIG
        start_pfn, nr_pages = start >> PAGE_SHIFT, div_round_up(size, PAGE_SIZE)
        if not self.range_is_free(start >> PAGE_SHIFT, nr_pages):
            return -EEXIST  # the "System RAM" resource conflicts
        err = self.check_hotplug_memory_range(start, size)
        if err:
            return err
        if nid not in self.possible_nodes:
            return -EINVAL
        group = self._next_group
        blocks = [
            MemoryBlock(i, i * self.block_pages, self.block_pages, nid, group, mgroup)
            for i in range(start_pfn // self.block_pages, (start_pfn + nr_pages) // self.block_pages)
        ]
        for b in blocks:  # backing the hypervisor already did for this range (a DIMM, a prior populate)
            self.backing.claim(b)
        txn = Transaction()
        # arch_add_memory(): direct map, then per section the usage map and the vmemmap; 6.8+ memmap_on_memory calls
        # it per memory block, so init_memory_mapping() maps 128 MiB at a time: no 1 GiB page, a PMD table per GiB
        per_block = getattr(self.strategy, "maps_per_block", None)
        if per_block is not None and per_block(self.profile, mhp_flag, self.block_pages, self.sp):
            new_tables = [key for b in blocks for key in self.pagetables.map_sections(b.start_pfn, b.nr_pages, self.sp)]
        else:
            new_tables = self.pagetables.map_sections(start_pfn, nr_pages, self.sp)
        slab_before = (len(self.slab), self.slab_total)
        new_roots = self.pagetables.new_section_roots(start_pfn, nr_pages)
        sections_meta = section_metadata_bytes(nr_pages // PAGES_PER_SECTION, len(new_roots))
        blocks_meta = block_device_bytes(len(blocks))
        meta = sections_meta + blocks_meta
        table_nid = nid if self.node_has_memory(nid) else min(self.online_nodes)
        ok = True
        for key in new_tables:  # one page per new table, remembered so that it goes back where it came from
            if not self._alloc_table(key, table_nid, txn):
                ok = False
                break
            self.table_pages[key] = txn.takes[-1]
        ok = ok and self.charge_slab(table_nid, sections_meta, txn)
        if not ok:
            self._undo_add(txn, start_pfn, nr_pages, blocks, slab=0, roots=new_roots, slab_pages=slab_before)
            return -ENOMEM
        vm = self.vmemmap.hotadd(blocks, txn)
        err = self.strategy.place(vm, nid, blocks, hint, mhp_flag)
        if err:
            # only a placement the kernel makes section by section in __add_pages(), with no fallback after it,
            # leaves the sections before the failing one (a plugin's placement without the flag: rolled back)
            left = self.vmemmap.abort(vm, leave_sections=getattr(self.strategy, "leaves_failed_sections", False))
            if left is not None:
                self._leave_sections(txn, start_pfn, nr_pages, blocks, left, new_roots, sections_meta, slab_before)
                return err
            self._undo_add(
                txn, start_pfn, nr_pages, blocks, slab=sections_meta, roots=new_roots, slab_pages=slab_before
            )
            return err
        # create_memory_block_devices() only once arch_add_memory() (the memmap) succeeded: a memmap that cannot
        # be had fails the add with -ENOMEM (__GFP_RETRY_MAYFAIL, no OOM kill) before this GFP_KERNEL kzalloc,
        # which may OOM-kill, is ever made
        if not self.charge_slab(table_nid, blocks_meta, txn):
            self.vmemmap.abort(vm)
            self._undo_add(
                txn, start_pfn, nr_pages, blocks, slab=sections_meta, roots=new_roots, slab_pages=slab_before
            )
            return -ENOMEM
        self.vmemmap.commit(vm)
        self._next_group += 1
        self.groups[group] = (start_pfn, nr_pages)
        self.stats.pagetable_pages += len(new_tables)
        self.stats.metadata_bytes += meta
        for b in blocks:
            self.blocks[b.id] = b
            self._account_memmap(b, +1)
        if nid not in self.online_nodes:
            self.online_nodes.add(nid)  # __try_online_node(): a memoryless node becomes online
        if self.config.debug_vm:
            for b in blocks:  # page_init_poison(): memset of the new memmap at add time
                self.write_memmap(b, "page_init_poison")
        if self.uevent is not None:
            for b in blocks:
                self.uevent(b.id)
        if self.auto_online:  # online_memory_block() for each block, at the end of add_memory_resource()
            for b in blocks:
                ret = self.online_memory_block(b.id, self.auto_online)
                if self.auto_online_hook is not None:
                    self.auto_online_hook(b.id, ret)
        return 0

    def _alloc_table(self, key: TableKey, nid: int, txn: Transaction) -> bool:
        """A page-table page for a hot-add. The vmemmap's come from vmemmap_alloc_block_zero(PAGE_SIZE, node)
        (GFP_KERNEL|__GFP_RETRY_MAYFAIL: reclaim, no OOM). The direct map's come from x86 alloc_low_pages(),
        which after boot is __get_free_pages(GFP_ATOMIC | __GFP_ZERO): no reclaim, and phys_pud_init() and
        phys_pmd_init() do not check for NULL, so a failure is a NULL dereference (E. Sharnoff's 2025 report
        from 6.12 virtio-mem hotplug); whether a fix reached 6.18 is UNVERIFIED."""
        if key[0].startswith("direct"):
            if self.alloc.alloc_atomic(nid, 1, txn) == 1:
                return True
            if self.profile.direct_map_atomic:
                self.crashed = KernelOops(
                    0,
                    0,
                    "BUG: kernel NULL pointer dereference in phys_pud_init(): "
                    "alloc_low_pages() (GFP_ATOMIC) failed for a hot-add's direct map",
                )
                raise self.crashed
            return False
        return self.alloc.alloc(nid, 1, Gfp.VMEMMAP, txn) == 1

    def _undo_add(
        self,
        txn: Transaction,
        start_pfn: int,
        nr_pages: int,
        blocks: list[MemoryBlock],
        slab: int,
        roots: set[int],
        slab_pages: tuple[int, int],
    ) -> None:
        """A failed add_memory() leaves nothing: tables, the slab it charged and the roots it made."""
        for b in blocks:
            self.backing.unclaim(b)
        for key in self.pagetables.unmap_sections(start_pfn, nr_pages, self.sp):
            self.table_pages.pop(key, None)
        self.pagetables.section_roots -= roots  # the mem_section roots this call created go with their slab
        self.slab_bytes -= slab
        self.alloc.rollback(txn)  # slab and table pages taken in this call go back too
        del self.slab[slab_pages[0] :]  # the slab pages this call took
        self.slab_total = slab_pages[1]

    def _leave_sections(
        self,
        txn: Transaction,
        start_pfn: int,
        nr_pages: int,
        blocks: list[MemoryBlock],
        left: LeftSections,
        roots: set[int],
        slab: int,
        slab_pages: tuple[int, int],
    ) -> None:
        """arch_add_memory() failed in section `left.end` after adding the ones before it (6.12.118, 7.3.4):
        add_memory_resource()'s `goto error` calls no arch_remove_memory() (only a failed
        create_memory_block_devices() does), so [left.start, left.end) keeps its usage map and memmap
        (sparse_add_section()), the mem_section roots sparse_index_init() made up to the failing section stay, and
        init_memory_mapping()'s direct map stays for the whole range. The failing section cleaned up after itself
        (section_activate() -> section_deactivate()), the later ones were never reached, and the resource is
        released. No memory block device exists, so nothing can ever remove what stays."""
        for b in blocks:
            self.backing.unclaim(b)
        end_pfn = start_pfn + nr_pages
        for key in self.pagetables.unmap_vmemmap(left.end, end_pfn - left.end, self.sp):
            self.table_pages.pop(key, None)  # its take is rolled back with the rest below
        last_root = left.end // PAGES_PER_SECTION // SECTION_ROOT_SECTIONS
        unreached = {r for r in roots if r > last_root}
        self.pagetables.section_roots -= unreached
        nr_left = (left.end - left.start) // PAGES_PER_SECTION
        kept = section_metadata_bytes(nr_left, len(roots) - len(unreached)) - section_metadata_bytes(0, 0)
        slab_takes = self.slab[slab_pages[0] :]
        tables = {id(t) for t in self.table_pages.values()}
        keep = tables | {id(t) for t in (*left.pieces, *slab_takes)}
        kept_tables = sum(1 for t in txn.takes if id(t) in tables)
        txn.takes[:] = [t for t in txn.takes if id(t) not in keep]
        self.alloc.rollback(txn)  # the tables only the failing and later sections' vmemmap needed
        self.uncharge_slab(slab - kept)  # the resource and the usage maps of sections never (or no longer) added
        self.stats.metadata_bytes += kept
        self.stats.pagetable_pages += kept_tables
        self.stale_sections.add(left.start, left.end)
        self.stale_pieces += left.pieces
        self.stats.memmap_stale_pages += sum(t.pages for t in left.pieces)
        self._trace(f"add_memory: sections {left.start:#x}-{left.end:#x} left added after the failure")

    def _account_memmap(self, b: MemoryBlock, sign: int) -> None:
        m = b.memmap
        assert m is not None, "add_memory() gives every block it registers a memmap"
        self.stats.memmap_kmalloc_pages += sign * (m.kmalloc_pages - m.pte_pages)  # struct pages, not PTE tables
        self.stats.memmap_remote_pages += sign * m.remote_pages
        self.stats.memmap_in_range_pages += sign * m.in_range.total
        for host in m.host_blocks:
            if host == b.id:
                continue
            hosted = self.hosted_by.setdefault(host, set())
            if sign > 0:
                hosted.add(b.id)
            else:
                hosted.discard(b.id)
                if not hosted:
                    del self.hosted_by[host]

    def write_memmap(self, block: MemoryBlock, what: str) -> None:
        """memmap_init_range()/page_init_poison(): every struct page of `block` is written; the pages
        backing them must be backed by the hypervisor or the guest dies."""
        m = block.memmap
        if m is None or not m.in_range:
            return
        for s, e in m.in_range:
            hole = self.backing.first_missing(s, e)
            if hole is not None:
                # backing page `hole` holds the struct pages of pfns starting here
                described = block.start_pfn + (hole - s) * (PAGE_SIZE // self.sp)
                crash = GuestCrash(
                    hole << PAGE_SHIFT, pfn_to_page_addr(described, self.sp), f"{what} of memory{block.id}"
                )
                self.crashed = crash
                raise crash

    # ------------------------------------------------------------------------ online_pages ---
    def set_online_page_callback(self, cb: OnlinePageCallback) -> int:
        """Only one driver may replace generic_online_page at a time; a second gets -EINVAL."""
        if self.online_page_callback is not None:
            return -EINVAL
        self.online_page_callback = cb
        return 0

    def restore_online_page_callback(self, cb: OnlinePageCallback) -> None:
        if self.online_page_callback is cb:
            self.online_page_callback = None

    def zone_for_online(self, block: MemoryBlock, online_type: str) -> Zone:
        """zone_for_pfn_range(): online_kernel, online_movable, or online under the policy."""
        nid = block.nid
        kernel = self._default_kernel_zone(nid, block)
        movable = self.alloc.zones[(nid, ZoneType.MOVABLE)]
        if online_type == "online_kernel":
            return kernel
        if online_type == "online_movable":
            return movable
        cfg = self.config
        if cfg.online_policy == "auto-movable":  # 5.15+ (checked at boot)
            group = block.memory_group
            sections: list[tuple[int, bool]] = []
            if group is not None and group.dynamic and group.unit_pages != block.nr_pages:
                sections = self._online_sections(group.unit_pages, block.start_pfn)
            movable_ok = auto_movable_wants_movable(
                self.alloc.iter_zones(),
                self.memory_groups,
                group,
                nid,
                block.start_pfn,
                block.nr_pages,
                sections,
                cfg.auto_movable_ratio,
                cfg.auto_movable_numa_aware,
            )
            return movable if movable_ok else kernel
        # default_zone_for_pfn() (contig-zones): inherit the zone the range touches, else movable_node decides
        s, e = block.start_pfn, block.end_pfn
        in_kernel = kernel.intersects(s, e)
        in_movable = movable.intersects(s, e)
        if in_kernel != in_movable:
            return kernel if in_kernel else movable
        return movable if cfg.movable_node else kernel

    def _default_kernel_zone(self, nid: int, block: MemoryBlock) -> Zone:
        """default_kernel_zone_for_pfn(): a lower kernel zone the range intersects, else ZONE_NORMAL."""
        dma32 = self.alloc.zones[(nid, ZoneType.DMA32)]
        return dma32 if dma32.intersects(block.start_pfn, block.end_pfn) else self.alloc.zones[(nid, ZoneType.NORMAL)]

    def _online_sections(self, unit_pages: int, pfn: int) -> list[tuple[int, bool]]:
        """(section pfn, in a kernel zone) for the online sections of the unit around `pfn`."""
        first = pfn - pfn % unit_pages
        out = []
        for bid in range(first // self.block_pages, (first + unit_pages) // self.block_pages):
            b = self.blocks.get(bid)
            if b is not None and b.state is BlockState.ONLINE:
                out += [(sec, b.is_kernel_zone) for sec in range(b.start_pfn, b.end_pfn, PAGES_PER_SECTION)]
        return out

    def online_memory_block(self, block_id: int, online_type: str = "online") -> int:
        """memory_block_online() -> online_pages(). 0 or -errno; raises GuestCrash."""
        block = self.blocks.get(block_id)
        if block is None or online_type not in ONLINE_TYPES:
            return -EINVAL
        if block.state is BlockState.ONLINE:
            return -EINVAL
        zone = self.zone_for_online(block, online_type)
        self.write_memmap(block, "memmap_init_range")  # move_pfn_range_to_zone()
        was_empty = zone.managed == 0
        self.zone_link.pop(block_id, None)  # move_pfn_range_to_zone() links the struct pages anew
        block.state = BlockState.ONLINE
        block.zone = zone
        block.online_type = online_type
        zone.present += block.nr_pages
        if block.memory_group is not None:
            block.memory_group.adjust_present(zone, block.nr_pages)
        zone.extend_span(block.start_pfn, block.end_pfn)
        vmemmap_here = block.vmemmap_pfns.total
        if self.config.accounting == "allocated" and vmemmap_here:
            zone.managed += vmemmap_here  # adjust_managed_page_count(): shown as allocated
            zone.kernel += vmemmap_here
        span = block.online_span
        cb = self.online_page_callback
        expose = cb(self, block, span) if cb is not None else span
        if zone.type.is_kernel:
            self.placement.enter(zone, block)
        for s, e in expose:
            self.generic_online_page(block, s, e, settle=False)
        self.blocks_online += 1
        if was_empty:
            self.alloc.invalidate()  # build_all_zonelists()
        self.alloc.setup_watermarks(self.wmark_rules)  # init_per_zone_wmark_min()
        if zone.type.is_kernel:  # the kernel's next unmovable allocations may land here from now on
            self.placement.refresh(zone)
        for n in list(self.notifiers):
            n("MEM_ONLINE", block)
        return 0

    def generic_online_page(self, block: MemoryBlock, start: int, end: int, settle: bool = True) -> int:
        """Hand [start, end) of an online block to the buddy allocator (generic_online_page, or a
        driver fake-onlining pages later). The pages will be written: they must be backed. The model crashes
        here, at the hand-over; the kernel touches the frame only when the page is first allocated
        (__free_pages_core() writes struct pages; init_on_free and page poisoning are off by default; Debian's
        init_on_alloc=1 zeroes it then), which with FPI_TO_TAIL can be much later, or never if the host backs it
        first (6.12.118, 7.3.4). Only a range onlined with no driver callback keeping unbacked pages out gets here
        unbacked (hv_balloon 6.18's pages outside every region)."""
        if block.state is not BlockState.ONLINE:
            raise ValueError(f"memory{block.id} is not online")
        hole = block.backed.first_missing(start, end)
        if hole is not None:
            crash = GuestCrash(
                hole << PAGE_SHIFT,
                pfn_to_page_addr(hole, self.sp),
                f"buddy allocator used unbacked page of memory{block.id}",
            )
            self.crashed = crash
            raise crash
        new = Extents.span(start, end)
        for s, e in block.exposed.clip(start, end):
            new.remove(s, e)
        for s, e in block.vmemmap_pfns.clip(start, end):
            new.remove(s, e)
        n = 0
        for s, e in new:
            block.exposed.add(s, e)
            n += e - s
        if n:
            zone = block.online_zone
            zone.managed += n  # __free_pages_core(MEMINIT_HOTPLUG) -> adjust_managed_page_count()
            self.alloc.managed_adjusted()
            pmds = new.aligned_units(PMD_PAGES)
            zone.free_pmd += pmds
            zone.give(n - pmds * PMD_PAGES, contiguous=False)
            if zone.type.is_kernel:
                self.placement.exposed(zone, block, n)
                if settle:
                    self.placement.refresh(zone)
            if self.expose_hook is not None:
                self.expose_hook(block, n)
        return n

    def withdraw_pages(self, block: MemoryBlock, start: int, end: int) -> int:
        """Take exposed pages of an online block back out of the buddy allocator (balloon inflation of
        a known range): they must be free. Returns pages withdrawn."""
        exposed = block.exposed.clip(start, end)
        n = exposed.total
        zone = block.online_zone
        if n > zone.free:
            return 0
        zone.take(n)
        self._withdrawn(block, exposed, n)
        return n

    def alloc_contig_range(self, block: MemoryBlock, start: int, end: int) -> int:
        """alloc_contig_range() (mm/page_alloc.c; 6.12.118 and 7.3.4, GFP_KERNEL) over the exposed pages of [start,
        end), then adjust_managed_page_count(-n) as its caller virtio_mem_fake_offline() does. The range is
        isolated; __alloc_contig_migrate_range() drops the clean page cache it isolated
        (reclaim_clean_pages_from_list()) and migrates the rest with alloc_migration_target() (the zone's node
        first, no nodemask), and the free pages are taken with no watermark check (balloonsim.kernel.migrate).
        Returns 0, -EBUSY (pages that cannot move) or -ENOMEM (no migration target: migrate_pages())."""
        exposed = block.exposed.clip(start, end)
        n = exposed.total
        if not n:
            return 0
        rc = evacuate(self.alloc, block.online_zone, n, other_nodes=False, drop_clean_cache=True)
        if rc:
            return rc
        self._withdrawn(block, exposed, n)
        return 0

    def _withdrawn(self, block: MemoryBlock, exposed: Extents, n: int) -> None:
        """The n exposed pages `exposed` of `block`, out of the zone's free lists already, leave the allocator."""
        zone = block.online_zone
        for s, e in exposed:
            block.exposed.remove(s, e)
        zone.managed -= n
        self.alloc.managed_adjusted()
        if zone.type.is_kernel and n:
            self.placement.exposed(zone, block, -n)
            self.placement.refresh(zone)

    # ----------------------------------------------------------------------- offline/remove ---
    def offline_memory_block(self, block_id: int) -> int:
        """memory_block_offline() -> offline_pages() (mm/memory_hotplug.c, 4.15+):
        - -EBUSY when the range cannot be isolated: unmovable kernel data in it (start_isolate_page_range() ->
          has_unmovable_pages(), "failure to isolate range"), fake-offline pages a driver still holds
          (scan_movable_pages(): "unmovable page"), or the memmap of another online block;
        - otherwise the movable pages, page cache as well as anon, are migrated (do_migrate_range(): to other
          nodes when another node has memory; balloonsim.kernel.migrate) and the loop retries "forever" while
          migration finds no room: there is no timeout since 72b39cfc4d75/ecde0f3e7f9e (4.15); only a signal ends
          it ("signal backoff"). The model has no time inside a call: when reclaim cannot make room for the
          migration it returns -EINTR, the caller's timeout (`timeout $TIMEOUT offline_block`, as the admin
          guide suggests) having signalled the writer.
        """
        block = self.blocks.get(block_id)
        if block is None or block.state is not BlockState.ONLINE:
            return -EINVAL
        zone = block.online_zone
        if block.unmovable or (block.withheld and not block.withheld_offlinable):
            self.stats.offline_ebusy += 1
            return -EBUSY
        if any(self.blocks[h].state is BlockState.ONLINE for h in self.hosted_by.get(block.id, ())):
            self.stats.offline_ebusy += 1
            return -EBUSY  # the memmap of an online block lives here
        m = block.managed
        at = self.placement.leave(zone, block) if zone.type.is_kernel else -1  # isolated from here on
        # do_migrate_range(): page cache and anon alike, to other nodes when there are any (balloonsim.kernel.migrate)
        if evacuate(self.alloc, zone, m, other_nodes=True, drop_clean_cache=False):
            return self._offline_interrupted(zone, block, at)  # offline_pages() would retry until a signal
        zone.managed -= m
        zone.present -= block.nr_pages
        if block.memory_group is not None:
            block.memory_group.adjust_present(zone, -block.nr_pages)
        vmemmap_here = block.vmemmap_pfns.total
        if self.config.accounting == "allocated" and vmemmap_here:
            zone.managed -= vmemmap_here
            zone.kernel -= vmemmap_here
        block.exposed = Extents()
        block.state = BlockState.OFFLINE
        self.blocks_online -= 1
        block.zone = None
        if self.profile.shrink_zone_on_offline:
            zone.shrink_span(block.start_pfn, block.end_pfn, self._zone_ranges(zone))
        else:  # the struct pages keep their zone link until __remove_pages() -> __remove_zone()
            self.zone_link[block.id] = zone
        self.alloc.setup_watermarks(self.wmark_rules)
        if not zone.present:  # offline_pages(), 4.19-6.12.118: `if (!populated_zone(zone))` build_all_zonelists(NULL):
            self.alloc.invalidate()  # an emptied zone (a node's last memory too) leaves the fallback lists
        if zone.type.is_kernel:
            self.placement.refresh(zone)
        for n in list(self.notifiers):
            n("MEM_OFFLINE", block)
        return 0

    def _zone_ranges(self, zone: Zone) -> list[tuple[int, int]]:
        """The pfn ranges shrink_zone_span() finds in `zone`: its boot memory and its online hot-added blocks
        (5.5+: pfn_to_online_page()); before 5.5 also the offline blocks whose struct pages still link to it."""
        out = []
        if zone.type is not ZoneType.MOVABLE:
            lo, hi = next((lo, hi) for zt, lo, hi in zone_pfn_limits() if zt is zone.type)
            out += [(max(s, lo), min(e, hi)) for nid, s, e in self.boot_ranges if nid == zone.nid and s < hi and e > lo]
        out += [(b.start_pfn, b.end_pfn) for b in self.blocks.values() if b.zone is zone]
        out += [(b.start_pfn, b.end_pfn) for bid, b in self.blocks.items() if self.zone_link.get(bid) is zone]
        return out

    def _offline_interrupted(self, zone: Zone, block: MemoryBlock, at: int) -> int:
        """offline_pages() gave up on a signal: undo_isolate_page_range(), MEM_CANCEL_OFFLINE, -EINTR."""
        if at >= 0:
            self.placement.back(zone, block, at)
            self.placement.refresh(zone)
        self.stats.offline_eintr += 1
        return -EINTR

    def remove_memory(self, start: int, size: int) -> int:
        """try_remove_memory(): every block offline, else -EBUSY; frees the memmap and metadata."""
        if size <= 0 or start % self.block_size or size % self.block_size:
            return -EINVAL
        start_pfn, nr_pages = start >> PAGE_SHIFT, size >> PAGE_SHIFT
        blocks = self.blocks_in(start_pfn, nr_pages)
        if len(blocks) != nr_pages // self.block_pages:
            return -EINVAL
        if any(b.state is BlockState.ONLINE for b in blocks):
            return -EBUSY
        ids = {b.id for b in blocks}
        for b in blocks:  # a block in the range hosts the memmap of one outside it
            if self.hosted_by.get(b.id, set()) - ids:
                return -EBUSY
        if any(b.unmovable for b in blocks):
            return -EBUSY
        err = self.vmemmap.check_remove(blocks)
        if err:
            return err
        for b in blocks:
            self._account_memmap(b, -1)
        self.vmemmap.vmemmap_free(blocks)
        for b in blocks:
            del self.blocks[b.id]
            linked = self.zone_link.pop(b.id, None)
            if linked is not None:  # before 5.5: __remove_pages() -> __remove_zone() -> shrink_zone_span()
                linked.shrink_span(b.start_pfn, b.end_pfn, self._zone_ranges(linked))
        lowest, highest = blocks[0].id, blocks[-1].id
        for first, bid in self._free_from.items():  # first_free_block(): the freed blocks come first again
            if highest >= first and max(first, lowest) < bid:
                self._free_from[first] = max(first, lowest)
        for key in self.pagetables.unmap_sections(start_pfn, nr_pages, self.sp, keep_pud=not self.config.la57):
            self.alloc.release(self.table_pages.pop(key))
            self.stats.pagetable_pages -= 1
        meta = metadata_bytes(len(blocks), nr_pages // PAGES_PER_SECTION, 0)  # section roots stay
        self.uncharge_slab(meta)
        self.stats.metadata_bytes -= meta
        for gid in {b.group for b in blocks}:
            gs, gn = self.groups[gid]
            if all(i not in self.blocks for i in range(gs // self.block_pages, (gs + gn) // self.block_pages)):
                del self.groups[gid]
        return 0

    # ----------------------------------------------------------------------------- views ---
    def gigantic_pages(self) -> int:
        """Naturally aligned 1 GiB ranges of hot-added memory that could become gigantic pages: online
        in a kernel zone (gigantic pages are unmovable), backed, handed to the buddy allocator, and
        free of memmap, fake-offline holes and unmovable kernel data, all in one zone:
        alloc_contig_pages() -> pfn_range_valid_contig() refuses a range whose pages are in two zones (or nodes)
        (`if (page_zone(page) != z) return false;`, 6.12.118 mm/page_alloc.c l.6842)."""
        clean: dict[int, int] = {}
        zone_of: dict[int, object] = {}
        for b in self.blocks.values():
            if b.state is not BlockState.ONLINE or not b.is_kernel_zone or b.unmovable:
                continue
            for s, e in b.exposed:
                g = s // PUD_PAGES
                while s < e:
                    ge = min(e, (g + 1) * PUD_PAGES)
                    clean[g] = clean.get(g, 0) + ge - s
                    if zone_of.setdefault(g, b.zone) is not b.zone:
                        clean[g] = -PUD_PAGES  # two zones in one GiB: never a gigantic page
                    s = ge
                    g += 1
        return sum(1 for v in clean.values() if v == PUD_PAGES)

    def removable(self, block: MemoryBlock) -> bool:
        """Could offline_pages() + remove_memory() take this block now (migration aside)?"""
        if block.unmovable or (block.withheld and not block.withheld_offlinable):
            return False
        return not self.hosted_by.get(block.id)

    def meminfo(self) -> Meminfo:
        return read_meminfo(self)

    def what_if(self) -> list[str]:
        """What of this guest's configuration no kernel release has."""
        if self.config.accounting == "allocated":
            return [
                "guest.accounting allocated: self-hosted vmemmap shown as allocated (proposed 2025, not merged by 7.3)"
            ]
        return []
