"""virtio-mem Big Block Mode: the device's memory is plugged, added, removed and unplugged in big blocks.

Sources: kernel-facts.md section 7 ([VM515]). What is modelled, with the kernel function it follows:
- Geometry (virtio_mem_init): bb_size = max(device_block_size, memory_block_size), or `bbm_block_size` (a
  power of two, at least that: smaller is refused, where the kernel warns 'bbm_block_size is too small' and
  ignores it); the offline threshold is at least 2 * bb_size; the first big block is the region start
  rounded up to a big block, the last usable one ends at min(region end, the guest's max_addr).
- Plug (virtio_mem_bbm_plug_request): plug a whole big block, then add it (-ENOSPC past the threshold).
- Online-page callback (virtio_mem_online_page_cb): everything is exposed unless the big block is
  FAKE_OFFLINE.
- Unplug (virtio_mem_bbm_unplug_request): three passes over added big blocks from the top (fully offline,
  then movable-only, then any), each bbm_safe_unplug'ed: mark FAKE_OFFLINE, fake-offline all online memory,
  offline and remove, then unplug; -EBUSY rolls back and moves on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from balloonsim.drivers.virtio_mem.common import ENOSPC, Device, Mode, Request, err
from balloonsim.errors import ConfigError
from balloonsim.kernel.block import BlockState
from balloonsim.kernel.errno import EBUSY
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.zone import ZoneType
from balloonsim.units import PAGE_SHIFT, div_round_up

if TYPE_CHECKING:
    from balloonsim.kernel.block import MemoryBlock
    from balloonsim.kernel.guest import Guest

# big block states (enum virtio_mem_bbm_bb_state)
BB_UNUSED, BB_PLUGGED, BB_ADDED, BB_FAKE_OFFLINE = "unused", "plugged", "added", "fake_offline"


class Bbm(Mode):
    name = "bbm"

    def __init__(self, dev: Device, guest: Guest, params: Any, addr: int, limit: int) -> None:
        super().__init__(dev, guest, params)
        bb = max(params.device_block_size, guest.block_size)
        if params.bbm_block_size is not None:
            if params.bbm_block_size < bb:
                raise ConfigError(
                    "driver.bbm_block_size",
                    f"too small: at least {bb >> 20}M (the kernel warns 'bbm_block_size is too small' and ignores it)",
                )
            bb = params.bbm_block_size
        self.bb_size = bb
        self.bb_pages = bb >> PAGE_SHIFT
        self.first_bb = div_round_up(addr, bb)
        self.next_bb = self.first_bb
        self.last_usable_bb = limit // bb - 1
        self.bb_state: dict[int, str] = {}

    def set_usable_end(self, end: int) -> None:
        self.last_usable_bb = end // self.bb_size - 1

    def expose(self, block: MemoryBlock, span: Extents) -> Extents:
        bb = block.start_pfn // self.bb_pages
        return Extents() if self.bb_state.get(bb) == BB_FAKE_OFFLINE else span

    def unplug_pending(self) -> Request:
        for bb in sorted(b for b, st in self.bb_state.items() if st == BB_PLUGGED):
            rc = yield from self.bbm_unplug_bb(bb)
            if rc:
                return rc
            self.bb_state[bb] = BB_UNUSED
        return 0

    def _bb_range(self, bb: int) -> tuple[int, int]:
        return bb * self.bb_pages, (bb + 1) * self.bb_pages

    def _bb_first_block(self, bb: int) -> int:
        return bb * self.bb_pages // self.guest.block_pages

    def bbm_plug_bb(self, bb: int) -> Request:
        s, e = self._bb_range(bb)
        return (yield from self.dev.send_plug_request(s, e, self._bb_first_block(bb), f"big block {bb}"))

    def bbm_unplug_bb(self, bb: int) -> Request:
        s, e = self._bb_range(bb)
        return (yield from self.dev.send_unplug_request(s, e, self._bb_first_block(bb), f"big block {bb}"))

    def bbm_plug_and_add_bb(self, bb: int) -> Request:
        rc = yield from self.bbm_plug_bb(bb)
        if rc:
            return rc
        self.bb_state[bb] = BB_ADDED
        s, e = self._bb_range(bb)
        ret = self.dev.add_memory(self._bb_first_block(bb), s << PAGE_SHIFT, self.bb_size, Extents.span(s, e))
        if ret:
            rc = yield from self.bbm_unplug_bb(bb)
            self.bb_state[bb] = BB_PLUGGED if rc else BB_UNUSED  # PLUGGED: "Retry from the main loop"
            return ret
        for b in self.guest.blocks_in(s, self.bb_pages):
            b.withheld_offlinable = True
        return 0

    def plug_request(self, diff: int) -> Request:
        nb_bb = diff // self.bb_size
        if not nb_bb:
            return 0
        for bb in range(self.first_bb, self.next_bb):
            if self.bb_state.get(bb, BB_UNUSED) != BB_UNUSED:
                continue
            if not self.dev.could_add_memory(self.bb_size):
                return -ENOSPC
            rc = yield from self.bbm_plug_and_add_bb(bb)
            if not rc:
                nb_bb -= 1
            if rc or not nb_bb:
                return rc
        while nb_bb:
            if not self.dev.could_add_memory(self.bb_size):
                return -ENOSPC
            if self.next_bb > self.last_usable_bb:  # virtio_mem_bbm_prepare_next_bb()
                return -ENOSPC
            bb = self.next_bb
            self.next_bb += 1
            self.bb_state[bb] = BB_UNUSED
            rc = yield from self.bbm_plug_and_add_bb(bb)
            if rc:
                return rc
            nb_bb -= 1
        return 0

    def _bb_blocks(self, bb: int) -> list[MemoryBlock]:
        s, _ = self._bb_range(bb)
        return self.guest.blocks_in(s, self.bb_pages)

    def bbm_offline_remove_and_unplug_bb(self, bb: int) -> Request:
        """virtio_mem_bbm_offline_remove_and_unplug_bb() with bbm_safe_unplug."""
        g = self.guest
        blocks = self._bb_blocks(bb)
        self.bb_state[bb] = BB_FAKE_OFFLINE
        faked: list[MemoryBlock] = []

        def rollback(rc: int = -EBUSY) -> int:
            for b in faked:
                g.generic_online_page(b, b.start_pfn, b.end_pfn)  # virtio_mem_fake_online()
            self.bb_state[bb] = BB_ADDED
            return rc

        for b in blocks:
            if b.state is not BlockState.ONLINE:
                continue
            if not g.removable(b):
                return rollback()
            rc = self.dev.fake_offline(b, b.start_pfn, b.end_pfn)
            if rc:  # -ENOMEM and -EAGAIN as they are: the caller ends its pass
                return rollback(rc)
            faked.append(b)
        offlined: list[tuple[MemoryBlock, str]] = []
        for b in blocks:  # offline_and_remove_memory()
            if b.state is BlockState.ONLINE:
                online_type = b.reonline_type  # sensed from the zone (try_offline_memory_block())
                assert online_type is not None  # an online block is in a zone
                ret = g.offline_memory_block(b.id)
                if ret:
                    for ob, t in offlined:
                        g.online_memory_block(ob.id, t)
                    return rollback()
                offlined.append((b, online_type))
        s, _ = self._bb_range(bb)
        ret = g.remove_memory(s << PAGE_SHIFT, self.bb_size)
        if ret:
            self.dev.log("unplug", self._bb_first_block(bb), f"remove_memory: {err(ret)}")
            for ob, t in offlined:
                g.online_memory_block(ob.id, t)
            return rollback()
        self.dev.memory_removed(self.bb_size)
        self.dev.log("unplug", self._bb_first_block(bb), f"big block {bb} offlined and removed")
        rc = yield from self.bbm_unplug_bb(bb)
        self.bb_state[bb] = BB_PLUGGED if rc else BB_UNUSED
        return rc

    def unplug_request(self, diff: int) -> Request:
        nb_bb = diff // self.bb_size
        if not nb_bb:
            return 0
        for i in range(3):
            for bb in range(self.next_bb - 1, self.first_bb - 1, -1):
                if self.bb_state.get(bb) != BB_ADDED:
                    continue
                blocks = self._bb_blocks(bb)
                online = [b for b in blocks if b.state is BlockState.ONLINE]
                if i == 0 and online:
                    continue
                if i == 1 and any(b.zone is None or b.zone.type is not ZoneType.MOVABLE for b in online):
                    continue
                rc = yield from self.bbm_offline_remove_and_unplug_bb(bb)
                if rc == -EBUSY:
                    continue
                if not rc:
                    nb_bb -= 1
                if rc or not nb_bb:
                    return rc
            if i == 0 and not self.p.unplug_online:
                return 0
        self.dev.stats["unplug_failures"] += 1
        return -EBUSY
