"""Property-based tests: random add/online/offline/remove/populate sequences keep the books balanced.

A multi-section add whose ordinary memmap fails in a later section leaves the sections before it, as
__add_pages() does (6.12.118, 7.3.4): their memmap, usage maps and the add's tables are counted as the kernel's
for good, and a later add over them gets -EEXIST (rule add_short_of_memmap fills the kernel zones to make it
happen: about a fifth of the examples of a 400-example run reach it; 2 in 2,400 did by chance before).

Conservation, for the whole guest:
  present == managed + boot memmap + kernel reserved + self-hosted vmemmap of online blocks (kernel
             accounting) + withheld (fake-offline)
and per zone: managed == free + pagecache + anon + kernel. Counters never go negative, nothing is
online before it is added, nothing is removed while online, a crash happens exactly when a memmap is
written into unbacked memory, and removing everything returns the guest to its boot state.
"""

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from kmodel_helpers import diff, state

from balloonsim.kernel import E2BIG, EBUSY, EEXIST, EINVAL, ENOMEM, BlockState, Guest, GuestConfig, GuestCrash
from balloonsim.kernel.errno import EINTR
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.guest import ONLINE_TYPES
from balloonsim.kernel.overhead import SECTION_USAGE_BYTES
from balloonsim.kernel.page_alloc import KERNEL_ZONEIDX, Gfp, Transaction
from balloonsim.kernel.profiles import PROFILES
from balloonsim.memmap import get_strategy
from balloonsim.units import PAGE_SHIFT, PAGES_PER_SECTION, GiB, MiB

BLOCK = 32768  # pages per 128 MiB block
FIRST, LAST = 32, 96  # hot-add window: 4 GiB .. 12 GiB
STRATEGIES = [
    ("kmalloc", {}),
    ("altmap", {}),
    ("altmap", {"mode": "force"}),
    ("altmap-range", {}),
    ("subrange-hint", {}),
    ("subrange-hint", {"fallback": "fail"}),
    ("node-pool", {}),
    ("node-pool", {"pool_size": "8M"}),
    ("altmap,kmalloc", {}),
    ("subrange-hint,kmalloc", {"fallback": "fail"}),
]
# the strategies whose add without MHP_MEMMAP_ON_MEMORY is the kernel's ordinary memmap, section by section
ORDINARY = {"kmalloc", "altmap", "altmap,kmalloc"}
LAYOUTS = [([2 * GiB], 0), ([1 * GiB, 1 * GiB], 0), ([2 * GiB], 1), ([1 * GiB, 1 * GiB], 1)]


def live(self) -> bool:
    return hasattr(self, "g") and not self.crashed


class GuestMachine(RuleBasedStateMachine):
    @initialize(
        strat=st.sampled_from(STRATEGIES),
        kernel=st.sampled_from(["4.19", "5.12", "6.1", "6.6", "6.8", "6.12", "6.18"]),
        accounting=st.sampled_from(["kernel", "allocated"]),
        debug_vm=st.booleans(),
        layout=st.sampled_from(LAYOUTS),
        page_cache=st.sampled_from([0, 256 * MiB]),
        movable_node=st.booleans(),
        first=st.integers(FIRST, LAST - 8),
        n=st.integers(1, 8),
        backing=st.sampled_from(["dimm", "dimm", "second-half"]),
        policy=st.sampled_from(["contig-zones", "auto-movable"]),
        auto_online=st.sampled_from([None, None, "online", "online_movable"]),
    )
    def boot(
        self,
        strat,
        kernel,
        accounting,
        debug_vm,
        layout,
        page_cache,
        movable_node,
        first,
        n,
        backing,
        policy,
        auto_online,
    ):
        name, params = strat
        boot, extra = layout
        self.name, self.params = name, params
        self.nnodes = len(boot) + extra
        if not PROFILES[kernel].auto_movable:  # online_policy exists from 5.15 (a config error before)
            policy = "contig-zones"
        cfg = GuestConfig(
            boot=list(boot),
            extra_nodes=extra,
            max_addr=LAST * BLOCK << PAGE_SHIFT,
            block_size=128 * MiB,
            kernel=kernel,
            accounting=accounting,
            debug_vm=debug_vm,
            page_cache=page_cache,
            movable_node=movable_node,
            online_policy=policy,
        )
        self.g = Guest(cfg, get_strategy(name, params))
        self.g.auto_online = auto_online  # auto_online_blocks: onlined at the end of add_memory()
        self.online_order: list[int] = []  # block ids in onlining order, from the memory notifier
        self.g.notifiers.append(self._notified)
        assert self.g.set_online_page_callback(self._callback) == 0
        self.withhold: dict[int, int] = {}  # block id -> quarters withheld at online beyond the unbacked
        self.backed = Extents()  # what the hypervisor backed, as the test sees it
        self.added: set[int] = set()
        self.crashed = False
        self.touched = False  # workload allocations: boot counters cannot come back exactly
        self.boot_mi = self.g.meminfo()
        self.boot_present = {key: z.present for key, z in self.g.alloc.zones.items()}
        self._add(0, first, n, True, backing)  # start with something added

    def _callback(self, guest, block, span):
        out = Extents()
        for s, e in span:
            for bs, be in block.backed.clip(s, e):
                out.add(bs, be)
        q = self.withhold.get(block.id, 0)
        if q:
            out = out.clip(block.start_pfn, block.start_pfn + block.nr_pages * (4 - q) // 4)
        return out

    def _notified(self, action, block):
        if action == "MEM_ONLINE":
            self.online_order.append(block.id)
        elif action == "MEM_OFFLINE":
            self.online_order.remove(block.id)

    def _first_unbacked_memmap(self, block) -> int | None:
        for s, e in block.memmap.in_range:
            hole = self.backed.first_missing(s, e)
            if hole is not None:
                return hole
        return None

    # ----------------------------------------------------------------------------------- rules ---
    @precondition(live)
    @rule(
        first=st.integers(FIRST, LAST - 1),
        off=st.sampled_from([0, 1, 100, 511, 512, 513, 16384]),
        length=st.sampled_from([1, 511, 512, 16384, 32768, 65536, 8 * BLOCK]),
    )
    def populate(self, first, off, length):
        self._populate(first, off, length)

    def _populate(self, first, off, length):
        s = first * BLOCK + off
        e = min(s + length, LAST * BLOCK)
        assert self.g.backing.populate(s, e) == (e - s) - self.backed.count(s, e)
        self.backed.add(s, e)

    @precondition(live)
    @rule(
        node=st.integers(0, 9),
        first=st.integers(FIRST, LAST - 1),
        n=st.integers(1, 8),
        flag=st.booleans(),
        backing=st.sampled_from(["dimm", "dimm", "second-half", "as-is"]),
    )
    def add(self, node, first, n, flag, backing):
        self._add(node % self.nnodes if node < 9 else self.nnodes, first, n, flag, backing)  # now and then
        # a node that is not possible

    def _add(self, nid, first, n, flag, backing):
        g = self.g
        n = min(n, LAST - first)
        ids = set(range(first, first + n))
        start, nr = first * BLOCK, n * BLOCK
        if backing == "dimm":
            self._populate(first, 0, nr)
        elif backing == "second-half":
            for b in range(first, first + n):
                self._populate(b, BLOCK // 2, BLOCK // 2)
        hint = self.backed.clip(start, start + nr)
        before = state(g)
        stale_before = g.stale_sections.copy()
        stale_pages, pieces = g.stats.memmap_stale_pages, len(g.stale_pieces)
        reclaimed = g.alloc.stats.reclaimed_pages
        compacted = g.alloc.stats.compact_success
        try:
            err = g.add_memory(nid, start << PAGE_SHIFT, nr << PAGE_SHIFT, hint=hint, memmap_on_memory=flag)
        except GuestCrash as crash:  # page_init_poison() (CONFIG_DEBUG_VM) or auto-online wrote unbacked memory
            assert g.config.debug_vm or g.auto_online
            holes = [self._first_unbacked_memmap(g.blocks[b]) for b in sorted(ids)]
            assert crash.phys_addr >> PAGE_SHIFT == next(h for h in holes if h is not None)
            self.added |= ids  # the blocks were added before the poisoning
            self.crashed = True
            return
        if ids & self.added:  # register_memory_resource() runs before any other check
            assert err == -EEXIST
        elif nid >= self.nnodes:
            assert err == -EINVAL
        else:
            assert err in (0, -EINVAL, -ENOMEM, -EEXIST)
        if err == -EEXIST and not ids & self.added:  # fill_subsection_map(): sections a failed add left
            assert stale_before.count(start, start + nr)
        if err == -EINVAL and nid < self.nnodes:  # only 5.13-6.5's single-block rule says no
            assert g.profile.name == "6.1" and self.name == "altmap" and flag and n > 1
        if err == -ENOMEM:
            low = sum(max(0, z.free - z.wmark_min) for z in g.alloc.zonelist(nid, kernel_only=True))
            assert self.params.get("fallback") == "fail" or low < n * 4 * (512 + 1) + 64
        if err:
            assert not (ids - self.added) & set(g.blocks)
            left = g.stale_sections.copy()
            for s, e in stale_before:
                left.remove(s, e)
            if left:  # __add_pages() stopped in a later section: the ones before it stay, from the start
                assert getattr(g.strategy, "leaves_failed_sections", False) and err in (-ENOMEM, -EEXIST)
                assert len(left) == 1 and next(iter(left))[0] == start and left.total < nr
                assert g.stats.memmap_stale_pages - stale_pages == sum(t.pages for t in g.stale_pieces[pieces:]) > 0
                return  # what they keep is checked by the invariants
            assert g.stats.memmap_stale_pages == stale_pages
            if g.alloc.stats.reclaimed_pages == reclaimed:
                changed = diff(state(g), before)
                if g.alloc.stats.compact_success == compacted:
                    assert changed == {}
                else:  # direct compaction made whole free pageblocks of fragments: undoing the add leaves
                    # them whole, as the kernel does (the pages it migrated stay where they went)
                    assert set(changed) <= {"meminfo.free_pmd_blocks"}
                    assert all(new > old for new, old in changed.values())
            return
        self.added |= ids
        for b in ids:
            blk = g.blocks[b]
            assert blk.state is (BlockState.ONLINE if g.auto_online else BlockState.OFFLINE) and blk.nid == nid
            if g.config.debug_vm:
                assert self._first_unbacked_memmap(blk) is None

    @precondition(lambda self: live(self) and self.name in ORDINARY)
    @rule(
        data=st.data(),
        node=st.integers(0, 9),
        n=st.integers(2, 8),
        done=st.integers(1, 7),
        slack=st.integers(0, 400),
        backing=st.sampled_from(["dimm", "second-half", "as-is"]),
    )
    def add_short_of_memmap(self, data, node, n, done, slack, backing):
        """Kernel memory filled so that `done` sections' ordinary memmap fits (a 2 MiB block, or 512 base pages
        and their PTE table, each) and the next one's does not: the add fails in a later section with -ENOMEM and
        leaves the ones before it (Guest._leave_sections()); a retry over them gets -EEXIST."""
        g = self.g
        free = [
            b
            for b in range(FIRST, LAST)
            if b not in g.blocks and not g.stale_sections.count(b * BLOCK, (b + 1) * BLOCK)
        ]
        starts = [b for b in free if b + 1 in free]
        if not starts:
            return
        first = data.draw(st.sampled_from(starts))
        n = next((k for k in range(1, n) if first + k not in free), n)  # the free run from `first`, at most n
        nid = node % self.nnodes
        zl = g.alloc.zonelist(nid, kernel_only=True)
        self.touched = True
        g.alloc.reclaim(zl, sum(z.pagecache for z in zl))  # no page cache left for the memmap's reclaim to free
        room = sum(max(0, z.free - z.wmark_min - z.lowmem_reserve[KERNEL_ZONEIDX]) for z in zl)
        # the add's page tables (at most two) and usage maps (a slab page) come first: 8 pages cover them; what is
        # left after `done` sections (under 8 + slack + done pages) holds no further 513
        done = min(done, n - 1, (room - 8 - slack) // 513)
        if done < 1:
            return
        fill = Transaction()  # anonymous memory in the kernel zones: with no swap, nothing reclaims it
        room_left = 8 + slack + done * 513
        assert g.alloc.alloc(nid, room - room_left, Gfp.KERNEL, fill, charge="anon") == room - room_left
        stale = g.stale_sections.copy()
        enomem, eexist = g.stats.add_errors.get(-ENOMEM, 0), g.stats.add_errors.get(-EEXIST, 0)
        self._add(nid, first, n, False, backing)  # no MHP_MEMMAP_ON_MEMORY: the ordinary memmap
        assert g.stats.add_errors.get(-ENOMEM, 0) == enomem + 1
        left = g.stale_sections.copy()
        for s, e in stale:
            left.remove(s, e)
        assert list(left) == [(first * BLOCK, (first + done) * BLOCK)]
        g.alloc.rollback(fill)
        self._add(nid, first, n, False, "as-is")  # fill_subsection_map() at the first section: nothing taken
        assert g.stats.add_errors.get(-EEXIST, 0) == eexist + 1
        stale.add(first * BLOCK, (first + done) * BLOCK)
        assert g.stale_sections == stale

    @precondition(live)
    @rule(
        data=st.data(),
        online_type=st.sampled_from(ONLINE_TYPES),
        withhold=st.sampled_from([0, 0, 0, 1, 2]),
        offlinable=st.booleans(),
        stray=st.integers(FIRST, LAST - 1),
    )
    def online(self, data, online_type, withhold, offlinable, stray):
        g = self.g
        if stray not in g.blocks:  # no block is online before it is added
            assert g.online_memory_block(stray, online_type) == -EINVAL
            assert stray not in g.blocks
        offline = sorted(b for b, blk in g.blocks.items() if blk.state is BlockState.OFFLINE)
        if not offline:
            return
        bid = data.draw(st.sampled_from(offline))
        block = g.blocks[bid]
        hole = self._first_unbacked_memmap(block)
        self.withhold[bid] = withhold
        block.withheld_offlinable = offlinable  # virtio-mem: fake-offline pages may go on offline
        try:
            err = g.online_memory_block(bid, online_type)
        except GuestCrash as crash:  # memmap_init_range() wrote into unbacked memory
            assert hole is not None
            assert crash.phys_addr >> PAGE_SHIFT == hole
            assert block.state is BlockState.OFFLINE
            self.crashed = True
            return
        assert hole is None
        assert err == 0
        assert block.state is BlockState.ONLINE
        assert g.online_memory_block(bid, online_type) == -EINVAL

    @precondition(live)
    @rule(data=st.data())
    def offline(self, data):
        g = self.g
        online = sorted(b for b, blk in g.blocks.items() if blk.state is BlockState.ONLINE)
        if not online:
            return
        bid = data.draw(st.sampled_from(online))
        block = g.blocks[bid]
        must_fail = (
            block.unmovable > 0
            or (block.withheld and not block.withheld_offlinable)
            or any(g.blocks[h].state is BlockState.ONLINE for h in g.hosted_by.get(bid, ()) if h != bid)
        )
        before = [(z.present, z.managed, z.free, z.pagecache, z.anon, z.kernel) for z in g.alloc.iter_zones()]
        reclaimed = g.alloc.stats.reclaimed_pages
        background = g.placement.background_pages
        err = g.offline_memory_block(bid)
        assert err in (0, -EBUSY, -EINTR)  # -EINTR: migration found no room, the writer's timeout fired
        assert (err == -EBUSY) == must_fail  # -EBUSY only for what cannot move (offline_pages(), 4.15+)
        if err:
            assert block.state is BlockState.ONLINE
            if g.alloc.stats.reclaimed_pages == reclaimed and g.placement.background_pages == background:
                assert [
                    (z.present, z.managed, z.free, z.pagecache, z.anon, z.kernel) for z in g.alloc.iter_zones()
                ] == before
        else:
            assert block.state is BlockState.OFFLINE and not block.exposed and block.zone is None

    @precondition(live)
    @rule(
        data=st.data(),
        whole_group=st.sampled_from([True, True, True, False]),
        first=st.integers(FIRST, LAST - 1),
        n=st.integers(1, 8),
        offline_first=st.booleans(),
    )
    def remove(self, data, whole_group, first, n, offline_first):
        g = self.g
        if whole_group and g.groups:
            gs, gn = g.groups[data.draw(st.sampled_from(sorted(g.groups)))]
            first, n = gs // BLOCK, gn // BLOCK
        n = min(n, LAST - first)
        ids = set(range(first, first + n))
        if offline_first:  # offline what can go, from the top (the first blocks may host the others' memmap)
            for b in sorted(ids & set(g.blocks), reverse=True):
                if g.blocks[b].state is BlockState.ONLINE:
                    assert g.offline_memory_block(b) in (0, -EBUSY, -EINTR)
        was_online = any(g.blocks[b].state is BlockState.ONLINE for b in ids & set(g.blocks))
        err = g.remove_memory(first * BLOCK << PAGE_SHIFT, n * BLOCK << PAGE_SHIFT)
        assert err in (0, -EBUSY, -EINVAL)
        if not ids <= self.added:
            assert err == -EINVAL
        elif was_online:
            assert err == -EBUSY  # nothing is removed while online
        if err:
            assert ids & self.added <= set(g.blocks)
            return
        assert not was_online
        self.added -= ids
        assert not ids & set(g.blocks)
        self.backed.remove(first * BLOCK, (first + n) * BLOCK)  # the DIMM/range leaves with its backing
        for b in ids:
            self.withhold.pop(b, None)

    @precondition(live)
    @rule(data=st.data())
    def fake_online(self, data):
        """A driver hands the backed withheld pages of a block to the buddy allocator later."""
        g = self.g
        cands = sorted(b for b, blk in g.blocks.items() if blk.state is BlockState.ONLINE and blk.withheld)
        if not cands:
            return
        blk = g.blocks[data.draw(st.sampled_from(cands))]
        before = blk.exposed.total
        got = sum(g.generic_online_page(blk, s, e) for s, e in blk.backed.clip(blk.start_pfn, blk.end_pfn))
        assert blk.exposed.total == before + got

    @precondition(live)
    @rule(data=st.data(), quarter=st.integers(0, 3))
    def withdraw(self, data, quarter):
        g = self.g
        cands = sorted(b for b, blk in g.blocks.items() if blk.state is BlockState.ONLINE)
        if not cands:
            return
        blk = g.blocks[data.draw(st.sampled_from(cands))]
        s = blk.start_pfn + quarter * BLOCK // 4
        managed = blk.managed
        got = g.withdraw_pages(blk, s, s + BLOCK // 4)
        assert blk.managed == managed - got

    @precondition(live)
    @rule(nid=st.integers(0, 1), n=st.sampled_from([1000, 50000, 300000]), cache=st.booleans())
    def workload_alloc(self, nid, n, cache):
        self.touched = True
        self.g.alloc.alloc(nid, n, Gfp.USER, partial=True, charge="pagecache" if cache else None)

    @precondition(live)
    @rule(data=st.data(), cache=st.booleans())
    def workload_free(self, data, cache):
        kind = "pagecache" if cache else "anon"
        zones = [z for z in self.g.alloc.iter_zones() if getattr(z, kind)]
        if not zones:
            return
        self.touched = True
        z = data.draw(st.sampled_from(zones))
        self.g.alloc.free(z, max(1, getattr(z, kind) // 2), kind)

    @precondition(lambda self: self.crashed)
    @rule()
    def idle(self):
        """A crashed guest stops: nothing else can happen to it."""

    # ------------------------------------------------------------------------------ invariants ---
    @invariant()
    def running_sums_match_a_recount(self):
        """What the guest keeps to add one block at a time in O(1) equals what it would find by walking everything:
        each kernel zone's online blocks in onlining order with their managed pages (and where the next unmovable
        page lands, as the walk over them finds it), the blocks holding another block's memmap, and the first
        free block above boot memory."""
        if not hasattr(self, "g"):
            return
        g = self.g
        for z in g.alloc.iter_zones():
            walk = [g.blocks[b] for b in self.online_order if b in g.blocks and g.blocks[b].zone is z]
            if not z.type.is_kernel:
                assert not z.hot
                continue
            assert [b.id for b in z.hot] == [b.id for b in walk]
            assert [z.hot.pages(b) for b in walk] == [b.managed for b in walk]
            assert z.hot_managed == z.hot.total == sum(b.managed for b in walk)
            for pages in (1, 512):
                assert g.placement.landing(z, pages) is walk_landing(g, z, walk, pages)
        hosted: dict[int, set[int]] = {}  # blocks whose memmap lives in another block
        for b in g.blocks.values():
            for h in b.memmap.host_blocks:
                if h != b.id:
                    hosted.setdefault(h, set()).add(b.id)
        assert g.hosted_by == hosted
        for first in (FIRST, FIRST + 3, LAST - 1):
            free = next((b for b in range(first, LAST + 1) if b not in g.blocks), None)
            assert g.first_free_block(first) == free

    @invariant()
    def conserved(self):
        if not hasattr(self, "g"):
            return
        g = self.g
        for z in g.alloc.iter_zones():
            assert min(z.present, z.managed, z.free_pmd, z.free_base, z.pagecache, z.anon, z.kernel) >= 0, z
            assert z.managed == z.free + z.pagecache + z.anon + z.kernel, z
            assert z.managed <= z.present, z
        kernel_acct = g.config.accounting == "kernel"
        online = [b for b in g.blocks.values() if b.state is BlockState.ONLINE]
        vmemmap_online = sum(b.vmemmap_pfns.total for b in online)
        withheld = sum(b.withheld for b in online)
        present = g.alloc.total("present")
        managed = g.alloc.total("managed")
        assert present == (
            managed
            + g.boot_memmap_pages
            + g.kernel_reserved_pages
            + g.low_reserved_pages
            + (vmemmap_online if kernel_acct else 0)
            + withheld
        )
        assert present == g.boot_present + sum(b.nr_pages for b in online)
        kernel = g.alloc.total("kernel")
        assert kernel == (
            g.stats.memmap_kmalloc_pages
            + sum(b.memmap.pte_pages for b in g.blocks.values())
            + g.stats.pagetable_pages
            + sum(g.slab_pages.values())
            + g.placement.background_pages
            + g.stats.memmap_leaked_pages  # 6.18: what hot-remove did not give back
            + g.stats.memmap_stale_pages  # sections a failed add left
            + (0 if kernel_acct else vmemmap_online)
        )
        assert g.stats.memmap_stale_pages == sum(t.pages for t in g.stale_pieces)
        assert not any(g.stale_sections.count(b.start_pfn, b.end_pfn) for b in g.blocks.values())
        assert g.stats.memmap_kmalloc_pages == sum(
            b.memmap.kmalloc_pages - b.memmap.pte_pages for b in g.blocks.values()
        )
        assert g.stats.memmap_in_range_pages == sum(b.memmap.in_range.total for b in g.blocks.values())
        assert min(g.stats.memmap_remote_pages, g.stats.pagetable_pages, g.slab_bytes) >= 0
        assert set(g.blocks) == self.added  # nothing is added, and so nothing is online, behind our back
        for key, z in g.alloc.zones.items():
            assert z.present == self.boot_present[key] + sum(b.nr_pages for b in online if b.zone is z), z
        in_range = sum(b.memmap.in_range.total for b in g.blocks.values())
        vmemmap = sum(b.vmemmap_pfns.total for b in g.blocks.values())
        assert vmemmap >= in_range if self.name.startswith("node-pool") else vmemmap == in_range
        # every unmovable page is remembered where it landed: memmaps, page tables, slab, the kernel's background
        takes = [t for x in g.blocks.values() for t in x.memmap.pieces]
        takes += [*g.table_pages.values(), *g.slab, *g.placement.background, *g.vmemmap.leaked, *g.stale_pieces]
        assert len(g.table_pages) == g.stats.pagetable_pages
        for b in g.blocks.values():
            assert b.unmovable == sum(t.pages for t in takes if t.block is b)
            if b.unmovable:
                assert b.state is BlockState.ONLINE and b.is_kernel_zone  # nothing lands in Movable
            for h in b.memmap.host_blocks:
                assert h in g.blocks and (h == b.id or b.id in g.hosted_by[h])
                assert g.blocks[h].vmemmap_pfns.count(*next(iter(b.memmap.in_range))) > 0
        for b in g.blocks.values():
            assert b.backed == self.backed.clip(b.start_pfn, b.end_pfn)
            assert b.unmovable >= 0
            if b.state is BlockState.ONLINE:
                assert b.zone is not None and b.zone.nid == b.nid
                assert b.exposed.total + b.vmemmap_pfns.total + b.withheld == b.nr_pages
                assert b.withheld >= 0
                for s, e in b.exposed:
                    assert b.backed.covers(s, e)  # the buddy allocator never got an unbacked page
                    assert b.vmemmap_pfns.count(s, e) == 0
                assert self._first_unbacked_memmap(b) is None  # the memmap was written: it is backed
            else:
                assert not b.exposed and b.zone is None and b.withheld == 0
        mi = g.meminfo()
        for k, v in mi.as_dict().items():
            assert v is None or v >= 0, k
        assert mi.blocks_online == len(online)
        if not g.blocks and not self.touched and g.alloc.stats.reclaimed_pages == 0:
            b = self.boot_mi
            # 6.18: kept by the kernel after hot-remove; and what failed adds left: memmap, tables, usage maps
            leaked = g.stats.memmap_leaked_pages + g.stats.memmap_stale_pages
            leaked += g.stats.pagetable_pages + sum(g.slab_pages.values())
            assert (mi.MemFree_kb, mi.MemTotal_kb, mi.kernel_pages, mi.present_pages, mi.managed_pages) == (
                b.MemFree_kb - leaked * 4,
                b.MemTotal_kb,
                b.kernel_pages + leaked,
                b.present_pages,
                b.managed_pages,
            )
            assert mi.memmap_kmalloc_pages == mi.memmap_in_range_pages == mi.vmemmap_pages == 0
            assert g.slab_bytes == SECTION_USAGE_BYTES * (g.stale_sections.total // PAGES_PER_SECTION)
            if not g.stale_sections:
                assert g.stats.pagetable_pages == 0


GuestMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestGuestModel = GuestMachine.TestCase


def walk_landing(g, zone, blocks, pages):
    """UnmovablePlacement.landing() as a walk over the zone's online blocks in onlining order."""
    if not blocks:
        return None
    free = zone.free
    hot_managed = sum(b.managed for b in blocks)
    to_tail = g.profile.online_to_tail
    if (to_tail or pages < 512) and free - hot_managed >= pages:
        return None
    if not to_tail:
        return next((b for b in reversed(blocks) if b.managed), None)
    used, seen = hot_managed - free, 0
    for b in blocks:
        seen += b.managed
        if seen > used:
            return b
    return None


def test_einval_e2big_eexist_constants():
    # the errno values drivers compare against (Hyper-V disables hot-add for good on -EEXIST only)
    assert (EINVAL, EEXIST, E2BIG, ENOMEM, EBUSY) == (22, 17, 7, 12, 16)


class _Picks:
    """st.data() for a replayed sequence: each draw takes the given index of a sampled_from's elements."""

    def __init__(self, *picks: int) -> None:
        self.picks = iter(picks)

    def draw(self, strategy):
        return strategy.elements[next(self.picks)]


def test_a_failed_add_leaves_direct_compaction_done():
    """Found by the machine above (a fresh clone's run, 2026-12-02): a 4.19 kmalloc guest whose DMA32 has only
    scattered free pages compacts a pageblock for an order-9 vmemmap block (__alloc_pages_direct_compact()),
    then the add fails with -ENOMEM in its third section. The compaction stays done, as in the kernel (the pages
    it migrated stay where they went), and so do the first two sections: __add_pages() stopped at the third and
    add_memory_resource() calls no arch_remove_memory() (6.12.118, 7.3.4). They keep their memmap (a 2 MiB block
    and 512 base pages with their PTE table), their usage maps and the direct map of all three; the rest goes."""
    m = GuestMachine()
    m.boot(
        strat=("kmalloc", {}),
        kernel="4.19",
        accounting="kernel",
        debug_vm=False,
        layout=([2 * GiB], 0),
        page_cache=0,
        movable_node=False,
        first=32,
        n=6,
        backing="dimm",
        policy="contig-zones",
        auto_online=None,
    )
    m.workload_alloc(cache=False, n=300000, nid=0)
    m.add(backing="dimm", first=38, flag=False, n=3, node=0)
    m.workload_alloc(cache=False, n=300000, nid=0)
    for _ in range(2):
        m.remove(data=_Picks(0), first=32, n=1, offline_first=False, whole_group=True)
    m.workload_alloc(cache=True, n=50000, nid=0)
    # the page cache goes (the machine's run had kswapd reclaim all of it during the next add, in one pass of the
    # high watermarks' sum; kswapd's priority loop now stops soon after the high watermark: dropped here instead)
    zl = m.g.alloc.zonelist(0, kernel_only=False)
    m.g.alloc.reclaim(zl, sum(z.pagecache for z in zl))
    m.add(backing="dimm", first=35, flag=False, n=6, node=0)
    g = m.g
    before, compacted, reclaimed = state(g), g.alloc.stats.compact_success, g.alloc.stats.reclaimed_pages
    m.add(backing="dimm", first=32, flag=False, n=3, node=0)  # -ENOMEM; the rule's checks hold
    assert not {32, 33, 34} & set(g.blocks)
    assert g.alloc.stats.compact_success == compacted + 1 and g.alloc.stats.reclaimed_pages == reclaimed
    assert g.stale_sections == Extents.span(32 * BLOCK, 34 * BLOCK) and g.stats.memmap_stale_pages == 1025
    changed = diff(state(g), before)
    assert changed["meminfo.kernel_pages"] == (
        before["meminfo"]["kernel_pages"] + 1025,
        before["meminfo"]["kernel_pages"],
    )
    assert changed["meminfo.MemFree_kb"] == (
        before["meminfo"]["MemFree_kb"] - 1025 * 4,
        before["meminfo"]["MemFree_kb"],
    )
    assert changed["slab"][0][0] == changed["slab"][1][0] + 2 * SECTION_USAGE_BYTES  # in the same slab pages
    direct_pmd, _, vmemmap_pmd, _, _ = changed["pagetables"][0]
    assert direct_pmd[4] == changed["pagetables"][1][0][4] + 3  # init_memory_mapping() of all three sections
    assert vmemmap_pmd[0] == changed["pagetables"][1][2][0] + 2  # the vmemmap of the two left
    assert set(changed) == {"meminfo.MemFree_kb", "meminfo.MemAvailable_kb", "meminfo.free_pages"} | {
        "meminfo.kernel_pages",
        "memmap_stats",
        "pagetables",
        "slab",
        "zones",
    }
    eexist = g.stats.add_errors.get(-EEXIST, 0)
    m.add(backing="dimm", first=32, flag=False, n=3, node=0)  # again: -EEXIST from fill_subsection_map()
    assert g.stats.add_errors[-EEXIST] == eexist + 1 and g.stale_sections == Extents.span(32 * BLOCK, 34 * BLOCK)
    m.conserved()  # the invariants count the left sections' memmap, tables and usage maps
    m.running_sums_match_a_recount()
