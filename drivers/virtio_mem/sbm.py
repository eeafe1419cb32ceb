"""virtio-mem Sub Block Mode: each memory block is cut into subblocks plugged and unplugged one by one.

Sources: kernel-facts.md section 7 ([VM510], [VM515]). What is modelled, with the kernel function it follows:
- Geometry (virtio_mem_init_hotplug): sb_size = max(device_block_size, pageblock_nr_pages * PAGE_SIZE = 2 MiB)
  since 448b8ec3bf11 (5.19); max(device_block_size, max(MAX_ORDER_NR_PAGES, pageblock_nr_pages) * PAGE_SIZE =
  4 MiB) before (profile field virtio_mem_sb_min). The first block is the region start rounded up to a memory
  block, the last usable one ends at min(region end, the guest's max_addr).
- Plug (virtio_mem_sbm_plug_request): fill partially plugged blocks first (online kernel, online movable,
  then offline ones; plugged subblocks of an online block are fake-onlined with generic_online_page), then
  reuse unused blocks, then prepare new ones; each new block is plugged first (subblocks 0..count-1 in one
  request) and then added (virtio_mem_sbm_plug_and_add_mb), the plugged extents being the usable-subrange
  hint. A failed add_memory() ("adding memory failed: %d") unplugs them again (or leaves them for
  unplug_pending_mb). Before each add: offline memory + block <= threshold, else -ENOSPC.
- Online-page callback (virtio_mem_online_page_cb): plugged subblocks are exposed, unplugged ones stay
  fake-offline (PageOffline + PageDirty).
- Unplug (virtio_mem_sbm_unplug_request), highest block first, in state order offline-partial, offline,
  movable-partial, kernel-partial, movable, kernel (online ones only with unplug_online). Offline blocks:
  contiguous runs of plugged subblocks from the top (unplug_any_sb_raw). Online blocks: the whole block in
  one shot if possible, else single subblocks from the top; each is fake-offlined first (alloc_contig_range)
  and skipped with -EBUSY when it cannot be; any other error (-ENOMEM, -EAGAIN) ends the pass. A block left
  with no plugged subblock is offlined and removed (offline_and_remove_memory).
- A block whose offline or removal fails then (virtio_mem_sbm_try_remove_unplugged_mb()) sets
  have_unplugged_mb: the worker's result becomes -EBUSY, which arms the retry timer, and every run retries
  such blocks, movable-partial, kernel-partial, then offline-partial, ascending
  (virtio_mem_cleanup_pending_mb(), virtio_mem_run_wq(); 6.12.118, 7.3.4). Before 6.5 (profile field
  virtio_mem_retry_unplugged; 6.1.192's virtio_mem_sbm_unplug_any_sb_online() only logs the failure) nothing
  is retried: the block stays added, empty, until an unplug request passes it again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from balloonsim.drivers.virtio_mem.common import ENOSPC, Device, Mode, Request, Step, err
from balloonsim.kernel.block import BlockState
from balloonsim.kernel.errno import EBUSY
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.zone import ZoneType
from balloonsim.units import PAGE_SHIFT, div_round_up

if TYPE_CHECKING:
    from balloonsim.kernel.block import MemoryBlock
    from balloonsim.kernel.guest import Guest

# memory block states (enum virtio_mem_sbm_mb_state), derived from the guest and the subblock bitmap
UNUSED, PLUGGED = "unused", "plugged"
OFFLINE, OFFLINE_PARTIAL = "offline", "offline_partial"
KERNEL, KERNEL_PARTIAL = "kernel", "kernel_partial"
MOVABLE, MOVABLE_PARTIAL = "movable", "movable_partial"


class Sbm(Mode):
    name = "sbm"

    def __init__(self, dev: Device, guest: Guest, params: Any, addr: int, limit: int, sb_size: int) -> None:
        super().__init__(dev, guest, params)
        bsize = guest.block_size
        self.sb_size = sb_size
        self.sb_pages = sb_size >> PAGE_SHIFT
        self.sbs_per_mb = bsize // sb_size
        self.full_mask = (1 << self.sbs_per_mb) - 1
        self.first_mb = div_round_up(addr, bsize)
        self.next_mb = self.first_mb
        self.last_usable_mb = limit // bsize - 1
        self.sb_bits: dict[int, int] = {}  # memory block -> bitmap of plugged subblocks
        self.added: set[int] = set()  # memory blocks added to Linux
        self.pending_unplug: set[int] = set()  # VIRTIO_MEM_SBM_MB_PLUGGED: plugged, add failed, unplug failed
        self.have_unplugged_mb = False  # an unplugged block could not be offlined or removed: retry it

    def set_usable_end(self, end: int) -> None:
        self.last_usable_mb = end // self.guest.block_size - 1

    def expose(self, block: MemoryBlock, span: Extents) -> Extents:
        bits = self.sb_bits.get(block.id, 0)
        expose = Extents()
        for sb in range(self.sbs_per_mb):
            if bits >> sb & 1:
                s = block.start_pfn + sb * self.sb_pages
                for a, b in span.clip(s, s + self.sb_pages):
                    expose.add(a, b)
        return expose

    def unplug_pending(self) -> Request:
        """virtio_mem_cleanup_pending_mb(): unplug PLUGGED blocks, then retry removing unplugged ones."""
        for mb in sorted(self.pending_unplug):
            rc, _ = yield from self.sbm_unplug_any_sb_raw(mb, self.sbs_per_mb, set())
            if rc:
                return rc
            self.pending_unplug.discard(mb)
        if not self.have_unplugged_mb:
            return 0
        self.have_unplugged_mb = False  # set again by sbm_finish_mb() when a retry fails
        for state in (MOVABLE_PARTIAL, KERNEL_PARTIAL, OFFLINE_PARTIAL):
            for mb in [mb for mb in sorted(self.added) if self.mb_state(mb) == state]:
                if mb in self.added and self._unplugged(mb):
                    yield from self.sbm_finish_mb(mb, self.sbs_per_mb)
        return 0  # "Ignore errors, this is not critical. We'll retry later."

    def _unplugged(self, mb: int) -> bool:
        """No plugged subblock left but those holding the block's own memmap (removed with the block)."""
        return set(self.plugged_sbs(mb)) <= self._vmemmap_sbs(self.guest.blocks[mb])

    # -- subblock bookkeeping --------------------------------------------------------------------
    def sb_range(self, mb: int, sb: int, count: int) -> tuple[int, int]:
        s = mb * self.guest.block_pages + sb * self.sb_pages
        return s, s + count * self.sb_pages

    def _plugged(self, mb: int, sb: int) -> bool:
        return bool(self.sb_bits.get(mb, 0) >> sb & 1)

    def plugged_sbs(self, mb: int) -> list[int]:
        bits = self.sb_bits.get(mb, 0)
        return [sb for sb in range(self.sbs_per_mb) if bits >> sb & 1]

    def _set_sbs(self, mb: int, sb: int, count: int, plugged: bool) -> None:
        mask = ((1 << count) - 1) << sb
        bits = self.sb_bits.get(mb, 0)
        self.sb_bits[mb] = bits | mask if plugged else bits & ~mask

    def mb_state(self, mb: int) -> str:
        bits = self.sb_bits.get(mb, 0)
        if mb not in self.added:
            return PLUGGED if bits else UNUSED
        full = bits == self.full_mask
        block = self.guest.blocks[mb]
        if block.state is BlockState.ONLINE:
            movable = block.zone is not None and block.zone.type is ZoneType.MOVABLE
            return (MOVABLE if movable else KERNEL) if full else (MOVABLE_PARTIAL if movable else KERNEL_PARTIAL)
        return OFFLINE if full else OFFLINE_PARTIAL

    def _vmemmap_sbs(self, block: MemoryBlock) -> set[int]:
        out: set[int] = set()
        for s, e in block.vmemmap_pfns:
            out.update(range((s - block.start_pfn) // self.sb_pages, (e - 1 - block.start_pfn) // self.sb_pages + 1))
        return out

    def _pinned_sbs(self, block: MemoryBlock) -> set[int]:
        """Subblocks alloc_contig_range() cannot take: vmemmap pages, and unmovable kernel data attributed to
        the block (placed in its lowest plugged subblocks)."""
        pins = self._vmemmap_sbs(block)
        need = div_round_up(block.unmovable, self.sb_pages)
        for sb in self.plugged_sbs(block.id):
            if need <= 0:
                break
            if sb not in pins:
                pins.add(sb)
                need -= 1
        return pins

    # -- plug ------------------------------------------------------------------------------------
    def sbm_plug_sb(self, mb: int, sb: int, count: int) -> Request:
        s, e = self.sb_range(mb, sb, count)
        rc = yield from self.dev.send_plug_request(s, e, mb, f"subblocks {sb}-{sb + count - 1}")
        if not rc:
            self._set_sbs(mb, sb, count, True)
        return rc

    def sbm_unplug_sb(self, mb: int, sb: int, count: int) -> Request:
        s, e = self.sb_range(mb, sb, count)
        return (
            yield from self.dev.send_unplug_request(
                s, e, mb, f"subblocks {sb}-{sb + count - 1}", before=lambda: self._set_sbs(mb, sb, count, False)
            )
        )

    def sbm_plug_and_add_mb(self, mb: int, nb_sb: int) -> Step:
        """virtio_mem_sbm_plug_and_add_mb(): plug the first subblocks, then add the block."""
        count = min(nb_sb, self.sbs_per_mb)
        rc = yield from self.sbm_plug_sb(mb, 0, count)
        if rc:
            return rc, nb_sb
        s, e = self.sb_range(mb, 0, count)
        ret = self.dev.add_memory(mb, mb * self.guest.block_size, self.guest.block_size, Extents.span(s, e))
        if ret:
            if (yield from self.sbm_unplug_sb(mb, 0, count)):
                self.pending_unplug.add(mb)
            return ret, nb_sb
        self.added.add(mb)
        self.guest.blocks[mb].withheld_offlinable = True
        return 0, nb_sb - count

    def sbm_plug_any_sb(self, mb: int, nb_sb: int) -> Step:
        """virtio_mem_sbm_plug_any_sb(): plug the lowest unplugged subblocks of an added block."""
        g = self.guest
        while nb_sb:
            bits = self.sb_bits.get(mb, 0)
            sb = next((x for x in range(self.sbs_per_mb) if not bits >> x & 1), self.sbs_per_mb)
            if sb >= self.sbs_per_mb:
                break
            count = 1
            while count < nb_sb and sb + count < self.sbs_per_mb and not self._plugged(mb, sb + count):
                count += 1
            rc = yield from self.sbm_plug_sb(mb, sb, count)
            if rc:
                return rc, nb_sb
            nb_sb -= count
            block = g.blocks[mb]
            if block.state is BlockState.ONLINE:  # virtio_mem_fake_online()
                s, e = self.sb_range(mb, sb, count)
                g.generic_online_page(block, s, e)
        return 0, nb_sb

    def plug_request(self, diff: int) -> Request:
        nb_sb = diff // self.sb_size
        if not nb_sb:
            return 0
        for state in (KERNEL_PARTIAL, MOVABLE_PARTIAL, OFFLINE_PARTIAL):
            for mb in range(self.first_mb, self.next_mb):
                if self.mb_state(mb) != state:
                    continue
                rc, nb_sb = yield from self.sbm_plug_any_sb(mb, nb_sb)
                if rc or not nb_sb:
                    return rc
        bsize = self.guest.block_size
        for mb in range(self.first_mb, self.next_mb):
            if self.mb_state(mb) != UNUSED:
                continue
            if not self.dev.could_add_memory(bsize):
                return -ENOSPC
            rc, nb_sb = yield from self.sbm_plug_and_add_mb(mb, nb_sb)
            if rc or not nb_sb:
                return rc
        while nb_sb:
            if not self.dev.could_add_memory(bsize):
                return -ENOSPC
            if self.next_mb > self.last_usable_mb:  # virtio_mem_sbm_prepare_next_mb()
                return -ENOSPC
            mb = self.next_mb
            self.next_mb += 1
            rc, nb_sb = yield from self.sbm_plug_and_add_mb(mb, nb_sb)
            if rc:
                return rc
        return 0

    # -- unplug ----------------------------------------------------------------------------------
    def sbm_unplug_any_sb_raw(self, mb: int, nb_sb: int, pins: set[int]) -> Step:
        """Runs of plugged subblocks from the top, skipping pinned ones, of an offline or not-added block.
        Stops if the block was onlined meanwhile (the kernel's hotplug_mutex would have held that back)."""
        sb = self.sbs_per_mb - 1
        while nb_sb:
            block = self.guest.blocks.get(mb) if mb in self.added else None
            if block is not None and block.state is BlockState.ONLINE:
                break
            while sb >= 0 and (not self._plugged(mb, sb) or sb in pins):
                sb -= 1
            if sb < 0:
                break
            count = 1
            while count < nb_sb and sb > 0 and self._plugged(mb, sb - 1) and sb - 1 not in pins:
                count += 1
                sb -= 1
            rc = yield from self.sbm_unplug_sb(mb, sb, count)
            if rc:
                return rc, nb_sb
            nb_sb -= count
            sb -= 1
        return 0, nb_sb

    def sbm_unplug_sb_online(self, mb: int, sb: int, count: int) -> Request:
        """virtio_mem_sbm_unplug_sb_online(): fake-offline, then unplug (fake-online again on failure)."""
        g = self.guest
        block = g.blocks[mb]
        if self._pinned_sbs(block) & set(range(sb, sb + count)):
            return -EBUSY
        s, e = self.sb_range(mb, sb, count)
        rc = self.dev.fake_offline(block, s, e)
        if rc:
            return rc
        rc = yield from self.sbm_unplug_sb(mb, sb, count)
        if rc:
            g.generic_online_page(block, s, e)
        return rc

    def sbm_unplug_any_sb_online(self, mb: int, nb_sb: int) -> Step:
        n = self.sbs_per_mb
        done = False
        if nb_sb >= n and self.sb_bits.get(mb, 0) == self.full_mask:  # the whole block in one shot
            rc = yield from self.sbm_unplug_sb_online(mb, 0, n)
            if not rc:
                nb_sb -= n
                done = True
            elif rc != -EBUSY:
                return rc, nb_sb
        if not done:
            sb = n - 1
            while sb >= 0 and nb_sb:
                while sb >= 0 and not self._plugged(mb, sb):
                    sb -= 1
                if sb < 0:
                    break
                rc = yield from self.sbm_unplug_sb_online(mb, sb, 1)
                if rc and rc != -EBUSY:
                    return rc, nb_sb
                if not rc:
                    nb_sb -= 1
                sb -= 1
        return (yield from self.sbm_finish_mb(mb, nb_sb))

    def sbm_unplug_any_sb_offline(self, mb: int, nb_sb: int) -> Step:
        block = self.guest.blocks[mb]
        rc, nb_sb = yield from self.sbm_unplug_any_sb_raw(mb, nb_sb, self._pinned_sbs(block))
        if rc:
            return rc, nb_sb
        return (yield from self.sbm_finish_mb(mb, nb_sb))

    def sbm_finish_mb(self, mb: int, nb_sb: int) -> Step:
        """A block with no unpinned plugged subblock left: offline (if online) and remove it; subblocks that
        hold only its own memmap go with it, unplugged right after the removal."""
        g = self.guest
        block = g.blocks[mb]
        left = self.plugged_sbs(mb)
        if left and (not set(left) <= self._vmemmap_sbs(block) or len(left) > nb_sb):
            return 0, nb_sb
        if left and not g.removable(block):  # its memmap subblocks cannot go yet: retried like a failed removal
            self._retry_later()
            return 0, nb_sb
        online_type = block.reonline_type if block.state is BlockState.ONLINE else None
        if online_type is not None:
            faked: list[tuple[int, int]] = []
            for sb in left:
                s, e = self.sb_range(mb, sb, 1)
                if self.dev.fake_offline(block, s, e):
                    break
                faked.append((s, e))
            ret = g.offline_memory_block(mb) if len(faked) == len(left) else -EBUSY
            if ret:
                for s, e in faked:  # virtio_mem_fake_online()
                    g.generic_online_page(block, s, e)
                self.dev.log("unplug", mb, f"offline_memory_block: {err(ret)}")
                self._retry_later()
                return 0, nb_sb
        ret = g.remove_memory(mb * g.block_size, g.block_size)
        if ret:
            self.dev.log("unplug", mb, f"remove_memory: {err(ret)}")
            self._retry_later()
            if online_type is not None:
                g.online_memory_block(mb, online_type)  # offline_and_remove_memory() rolls back
            return 0, nb_sb
        self.added.discard(mb)
        self.dev.memory_removed(g.block_size)
        self.dev.log("unplug", mb, f"memory{mb} {'offlined and ' if online_type else ''}removed")
        if left:
            rc, nb_sb = yield from self.sbm_unplug_any_sb_raw(mb, nb_sb, set())
            if rc:
                self.pending_unplug.add(mb)
        return 0, nb_sb

    def _retry_later(self) -> None:
        """A fully unplugged block stays added: have_unplugged_mb where the release keeps retrying it (6.5+)."""
        if self.guest.profile.virtio_mem_retry_unplugged:
            self.have_unplugged_mb = True

    def unplug_request(self, diff: int) -> Request:
        nb_sb = diff // self.sb_size
        if not nb_sb:
            return 0
        order = (OFFLINE_PARTIAL, OFFLINE, MOVABLE_PARTIAL, KERNEL_PARTIAL, MOVABLE, KERNEL)
        for i, state in enumerate(order):
            for mb in range(self.next_mb - 1, self.first_mb - 1, -1):
                if self.mb_state(mb) != state:
                    continue
                if state in (OFFLINE, OFFLINE_PARTIAL):
                    rc, nb_sb = yield from self.sbm_unplug_any_sb_offline(mb, nb_sb)
                else:
                    rc, nb_sb = yield from self.sbm_unplug_any_sb_online(mb, nb_sb)
                if rc or not nb_sb:
                    return rc
            if not self.p.unplug_online and i == 1:
                return 0
        self.dev.stats["unplug_failures"] += 1
        return -EBUSY
