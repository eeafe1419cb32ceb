"""virtio-mem (drivers/virtio/virtio_mem.c): a paravirtualized memory device whose plugged size follows the
host's `requested_size`, in Sub Block Mode (SBM) or Big Block Mode (BBM).

Sources: shared/kernel-facts.md section 7 ([VM510] torvalds/linux virtio_mem.c@01afdee2, ~5.10, SBM only;
[VM515] the ~5.14-5.16 file with BBM and force_bbm), sections 2-4 (add_memory, onlining, the online-page
callback). What is modelled, with the kernel function it follows:

- Mode (virtio_mem_init): sb_size = max(MAX_ORDER_NR_PAGES, pageblock_nr_pages) * PAGE_SIZE = 4 MiB, then
  max(device_block_size, sb_size). SBM if sb_size < memory_block_size and not force_bbm, else BBM with
  bb_size = max(device_block_size, memory_block_size), or `bbm_block_size` (a power of two >= that).
  offline_threshold = max(2 * memory_block_size, 1 GiB), in BBM also >= 2 * bb_size. The first block is
  the region start rounded up to a memory block (SBM) or big block (BBM); the last usable one ends at
  min(region end, the guest's max_addr) (virtio_mem_refresh_config, mhp_get_pluggable_range()).
- The worker (virtio_mem_run_wq): refresh the config (requested_size; a change is a "hotadd_request"
  event), unplug leftovers (virtio_mem_unplug_pending_mb), then plug or unplug the difference. Every
  plug/unplug request first checks config_changed (-EAGAIN: start over with the new requested_size) and
  takes `plug_latency`. Result 0 resets the retry timer to `retry_min` (50 s); -ENOSPC (threshold reached,
  region full) arms nothing; -ETXTBSY (the device refused: host out of memory), -EBUSY (nothing more could
  be unplugged) and -ENOMEM arm the timer; when it fires it doubles, up to `retry_max` (300 s)
  (virtio_mem_timer_expired). Any other error (add_memory() -EINVAL/-EEXIST/-E2BIG) marks the device
  broken: it stops processing. The worker also runs when the target changes (config_changed), on
  MEM_ONLINE once half the threshold is free again (unless it is the worker's own add), on MEM_OFFLINE
  with unplug_online=0, and after every successful remove.
- SBM plug (virtio_mem_sbm_plug_request): fill partially plugged blocks first (online kernel, online
  movable, then offline ones; plugged subblocks of an online block are fake-onlined with
  generic_online_page), then reuse unused blocks, then prepare new ones; each new block is plugged first
  (subblocks 0..count-1 in one request) and then added (virtio_mem_sbm_plug_and_add_mb), the plugged
  extents being the usable-subrange hint. A failed add_memory() ("adding memory failed: %d") unplugs them
  again (or leaves them for unplug_pending_mb). Before each add: offline memory + block <= threshold, else
  -ENOSPC. Adding counts toward offline_size; MEM_ONLINE subtracts, MEM_OFFLINE adds, removal subtracts.
- Online-page callback (virtio_mem_online_page_cb): SBM exposes plugged subblocks and keeps unplugged ones
  fake-offline (PageOffline + PageDirty); BBM exposes everything unless the big block is FAKE_OFFLINE.
  Blocks get `withheld_offlinable`: virtio-mem's going-offline notifier lets fake-offline pages go.
- SBM unplug (virtio_mem_sbm_unplug_request), highest block first, in state order offline-partial,
  offline, movable-partial, kernel-partial, movable, kernel (online ones only with unplug_online).
  Offline blocks: contiguous runs of plugged subblocks from the top (unplug_any_sb_raw). Online blocks:
  the whole block in one shot if possible, else single subblocks from the top; each is fake-offlined first
  (alloc_contig_range: modelled by Guest.withdraw_pages(), refused when the zone would drop below its min
  watermark after reclaiming page cache) and skipped with -EBUSY when it cannot be. A block left with no
  plugged subblock is offlined and removed (offline_and_remove_memory).
- BBM plug (virtio_mem_bbm_plug_request): plug a whole big block, then add it; unplug
  (virtio_mem_bbm_unplug_request): three passes over added big blocks from the top (fully offline, then
  movable-only, then any), each bbm_safe_unplug'ed: mark FAKE_OFFLINE, fake-offline all online memory,
  offline and remove, then unplug; -EBUSY rolls back and moves on.
- The host side: a plug request is QEMU populating the range (HostMemory.populate + Guest.host_populate);
  when the host cannot back it, the device answers BUSY (-ETXTBSY). Unplug gives the frames back.

Where the model goes beyond the kernel (virtio-mem never passes MHP_MEMMAP_ON_MEMORY, kernel-facts section
7), for the study's what-if:
- Subblocks holding vmemmap pages (the block's own altmap, or other blocks' memmaps with the node-pool or
  altmap-range strategies) and subblocks holding unmovable kernel data (another block's kmalloc memmap,
  counted in `block.unmovable` and placed in the lowest plugged subblocks) cannot be fake-offlined:
  -EBUSY, as alloc_contig_range() would fail on them. A subblock holding only the block's own memmap is
  unplugged last, together with the block: once every other subblock is gone the block is offlined and
  removed first and that subblock unplugged right after (removal first, so nothing can online a block
  whose memmap is gone; the kernel's order is unplug-then-remove, guarded by its MEM_GOING_ONLINE veto,
  which the kernel model has no hook for). The same remove-first order is used when an offline block's
  last plugged subblocks hold its memmap.
- The hotplug_mutex is modelled by applying each request's effects atomically at its completion: subblock
  bits are cleared before an unplug request is sent (a block onlined meanwhile keeps them fake-offline)
  and set after a plug request completes (then fake-onlined if the block went online meanwhile).
- The 5.14+ state order (kernel vs movable) is used for every kernel profile; 4.19 has no virtio-mem
  (merged in 5.8) and is refused.

Metrics: virtio_mem_mode ("sbm"/"bbm"), _plugged_bytes and _requested_bytes at the end, _offline_bytes_end
(offline_size), _plug_failures (plug requests the host refused), _unplug_failures (unplug passes that ended
-EBUSY), _add_failures, _retry_timer_fires, _fake_offline_pages (withheld at online), _broken.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from balloonsim.drivers.base import Driver, DriverParams
from balloonsim.errors import ConfigError
from balloonsim.kernel.block import BlockState
from balloonsim.kernel.errno import EBUSY, ENOMEM, errname
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.zone import ZoneType
from balloonsim.plugin import World
from balloonsim.types import Duration, Size
from balloonsim.units import MAX_ORDER_PAGES, PAGE_SHIFT, PAGE_SIZE, PAGEBLOCK_PAGES, GiB, MiB

EAGAIN = 11
ETXTBSY = 26
ENOSPC = 28
_MORE_ERRNAMES = {-EAGAIN: "-EAGAIN", -ETXTBSY: "-ETXTBSY", -ENOSPC: "-ENOSPC"}

VIRTIO_MEM_DEFAULT_OFFLINE_THRESHOLD = 1 * GiB
SB_MIN_SIZE = max(MAX_ORDER_PAGES, PAGEBLOCK_PAGES) * PAGE_SIZE  # 4 MiB on x86_64

# SBM memory block states (enum virtio_mem_sbm_mb_state); derived from the guest and the subblock bitmap
UNUSED, PLUGGED = "unused", "plugged"
OFFLINE, OFFLINE_PARTIAL = "offline", "offline_partial"
KERNEL, KERNEL_PARTIAL = "kernel", "kernel_partial"
MOVABLE, MOVABLE_PARTIAL = "movable", "movable_partial"
# BBM big block states (enum virtio_mem_bbm_bb_state)
BB_UNUSED, BB_PLUGGED, BB_ADDED, BB_FAKE_OFFLINE = "unused", "plugged", "added", "fake_offline"


def _err(rc: int) -> str:
    return _MORE_ERRNAMES.get(rc) or errname(rc)


def _is_pow2(v: int) -> bool:
    return v > 0 and not v & (v - 1)


class VirtioMemParams(DriverParams):
    region_start: Size | None = Field(
        None, description="device region start (default: the first free memory-block-aligned address above boot memory)"
    )
    region_size: Size = Field(32 * GiB, description="device region size: a multiple of the memory block size")
    device_block_size: Size = Field(2 * MiB, description="the device's plug granularity (a power of two)")
    force_bbm: bool = Field(False, description="module parameter force_bbm: Big Block Mode even when SBM fits")
    bbm_block_size: Size | None = Field(None, description="module parameter bbm_block_size (power of two)")
    plug_latency: Duration = Field(0.01, description="time of one plug/unplug request to the device")
    retry_min: Duration = Field(50.0, description="VIRTIO_MEM_RETRY_TIMER_MIN_MS")
    retry_max: Duration = Field(300.0, description="VIRTIO_MEM_RETRY_TIMER_MAX_MS")
    unplug_online: bool = Field(True, description="module parameter unplug_online: unplug from online blocks")

    @field_validator("device_block_size")
    @classmethod
    def _dbs(cls, v):
        if v < PAGE_SIZE or not _is_pow2(v):
            raise ValueError("must be a power of two of at least 4K")
        return v

    @field_validator("bbm_block_size")
    @classmethod
    def _bbs(cls, v):
        if v is not None and not _is_pow2(v):
            raise ValueError("must be a power of two (the kernel warns 'bbm_block_size is not a power of 2')")
        return v

    @field_validator("plug_latency")
    @classmethod
    def _latency(cls, v):
        if v < 0:
            raise ValueError("must not be negative")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        if self.retry_min <= 0:
            raise ValueError("retry_min: must be positive")
        if self.retry_max < self.retry_min:
            raise ValueError("retry_max: must not be below retry_min")
        if self.region_size <= 0 or self.region_size % self.device_block_size:
            raise ValueError("region_size: must be a positive multiple of device_block_size")
        if self.region_start is not None and self.region_start % self.device_block_size:
            raise ValueError("region_start: must be aligned to device_block_size")
        return self


class VirtioMem(Driver):
    Params = VirtioMemParams
    name = "virtio-mem"
    p: VirtioMemParams

    # -- probe -------------------------------------------------------------------------------------
    def __init__(self, sim: World, params: VirtioMemParams) -> None:
        """virtio_mem_probe() -> virtio_mem_init(): the mode, the geometry, the hooks; refuses what it cannot drive."""
        super().__init__(sim, params)
        g = self.guest
        p = params
        if g.profile.name == "4.19":
            raise ConfigError("guest.kernel", "virtio-mem needs kernel 5.8 or later (profile 4.19 has none)")
        bsize = g.block_size
        if p.region_size % bsize:
            raise ConfigError("driver.region_size", f"must be a multiple of the memory block size ({bsize >> 20}M)")
        addr = p.region_start
        if addr is None:
            addr = self.find_free_range(bsize, bsize)
            if addr is None:
                raise ConfigError("driver.region_start", "no free memory block above boot memory below guest.max_addr")
        elif any(addr >> PAGE_SHIFT < e and (addr + p.region_size) >> PAGE_SHIFT > s for _, s, e in g.boot_ranges):
            raise ConfigError(
                "driver.region_start", f"the region {addr:#x}+{p.region_size >> 20}M overlaps boot memory"
            )
        self.addr = addr
        self.region_end = addr + p.region_size
        limit = min(self.region_end, g.max_pfn << PAGE_SHIFT)  # mhp_get_pluggable_range()
        self.region_pfns = (addr >> PAGE_SHIFT, self.region_end >> PAGE_SHIFT)

        sb_size = max(p.device_block_size, SB_MIN_SIZE)
        self.offline_threshold = max(2 * bsize, VIRTIO_MEM_DEFAULT_OFFLINE_THRESHOLD)
        self.in_sbm = sb_size < bsize and not p.force_bbm
        if self.in_sbm:
            self.sb_size = sb_size
            self.sb_pages = sb_size >> PAGE_SHIFT
            self.sbs_per_mb = bsize // sb_size
            self.full_mask = (1 << self.sbs_per_mb) - 1
            self.first_mb = -(-addr // bsize)
            self.next_mb = self.first_mb
            self.last_usable_mb = limit // bsize - 1
            self.sb_bits: dict[int, int] = {}  # memory block -> bitmap of plugged subblocks
            self.added: set[int] = set()  # memory blocks added to Linux
            self.pending_unplug: set[int] = set()  # VIRTIO_MEM_SBM_MB_PLUGGED: plugged, add failed, unplug failed
        else:
            bb = max(p.device_block_size, bsize)
            if p.bbm_block_size is not None:
                if p.bbm_block_size < bb:
                    raise ConfigError(
                        "driver.bbm_block_size",
                        f"too small: at least {bb >> 20}M "
                        "(the kernel warns 'bbm_block_size is too small' and ignores it)",
                    )
                bb = p.bbm_block_size
            self.bb_size = bb
            self.bb_pages = bb >> PAGE_SHIFT
            self.first_bb = -(-addr // bb)
            self.next_bb = self.first_bb
            self.last_usable_bb = limit // bb - 1
            self.bb_state: dict[int, str] = {}
            self.offline_threshold = max(2 * bb, self.offline_threshold)

        self.plugged_size = 0
        self.requested_size = 0
        self.offline_size = 0
        self.retry_s = p.retry_min
        self.broken = False
        self.wq_active = False
        self._pending = False
        self._wake = None
        self._cfg_event = None  # the target event seen at the last config refresh (None: changed)
        self.stats = {
            "plug_failures": 0,
            "unplug_failures": 0,
            "add_failures": 0,
            "retry_timer_fires": 0,
            "fake_offline_pages": 0,
        }
        self.claim_online_page_callback(self.online_page_cb)
        g.notifiers.append(self.memory_notifier)

    def start(self) -> None:
        self.env.process(self.run())

    # -- kernel hooks ------------------------------------------------------------------------------
    def _ours(self, block) -> bool:
        s, e = self.region_pfns
        return s <= block.start_pfn and block.end_pfn <= e

    def online_page_cb(self, guest, block, span: Extents) -> Extents:
        """virtio_mem_online_page_cb(): plugged memory to the buddy, the rest kept fake-offline."""
        if not self._ours(block):
            return span  # not virtio-mem memory (a DIMM): generic_online_page
        block.withheld_offlinable = True
        if self.in_sbm:
            bits = self.sb_bits.get(block.id, 0)
            expose = Extents()
            for sb in range(self.sbs_per_mb):
                if bits >> sb & 1:
                    s = block.start_pfn + sb * self.sb_pages
                    for a, b in span.clip(s, s + self.sb_pages):
                        expose.add(a, b)
        else:
            bb = block.start_pfn // self.bb_pages
            expose = Extents() if self.bb_state.get(bb) == BB_FAKE_OFFLINE else span
        kept = span.total - expose.total
        if kept:
            self.stats["fake_offline_pages"] += kept
            self.log("fake_offline", block.id, f"{kept} pages ({kept >> 8}M) of unplugged memory kept fake-offline")
        return expose

    def memory_notifier(self, event: str, block) -> None:
        """virtio_mem_memory_notifier_cb(): offline_size bookkeeping and wakeups."""
        if not self._ours(block):
            return
        size = block.nr_pages << PAGE_SHIFT
        if event == "MEM_ONLINE":
            self.offline_size -= size
            # "Start adding more memory once we onlined half of our threshold"; not for our own adds
            if not self.wq_active and self.could_add_memory(self.offline_threshold // 2):
                self.retry()
        elif event == "MEM_OFFLINE":
            self.offline_size += size
            if not self.p.unplug_online:
                self.retry()

    def could_add_memory(self, size: int) -> bool:
        if size > self.offline_threshold:
            return False
        return self.offline_size + size <= self.offline_threshold

    def retry(self) -> None:
        """virtio_mem_retry(): queue the worker (again, if it is running)."""
        self._pending = True
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    # -- the worker --------------------------------------------------------------------------------
    def run(self):
        env = self.env
        while True:
            if self.broken:
                yield self.sim.target_event
                continue
            self._pending = False
            self.wq_active = True
            rc = yield from self.run_wq()
            self.wq_active = False
            timer = None
            if rc == 0:
                self.retry_s = self.p.retry_min
            elif rc == -ENOSPC:
                pass  # too much offline memory or the region is full: MEM_ONLINE or a target change wakes us
            elif rc in (-ETXTBSY, -EBUSY, -ENOMEM):
                timer = self.retry_s
                self.log("virtio_mem", -1, f"{_err(rc)}: retry in {timer:g}s")
            else:
                self.broken = True
                self.log("virtio_mem", -1, f"unknown error, marking device broken: {rc}")
                continue
            if self._pending or self.config_changed():  # virtio_mem_config_changed() queued the work again
                continue
            self._wake = env.event()
            waits = [self.sim.target_event, self._wake]
            t_ev = env.timeout(timer) if timer is not None else None
            if t_ev is not None:
                waits.append(t_ev)
            yield env.any_of(waits)
            self._wake = None
            if t_ev is not None and t_ev.processed:  # virtio_mem_timer_expired()
                self.stats["retry_timer_fires"] += 1
                self.retry_s = min(self.retry_s * 2, self.p.retry_max)

    def run_wq(self):
        """virtio_mem_run_wq() up to the result switch; -EAGAIN starts over (config changed)."""
        while True:
            if self.config_changed():
                self.refresh_config()
            rc = yield from self.unplug_pending()
            if not rc and self.requested_size != self.plugged_size:
                if self.requested_size > self.plugged_size:
                    diff = self.requested_size - self.plugged_size
                    rc = yield from (self.sbm_plug_request(diff) if self.in_sbm else self.bbm_plug_request(diff))
                else:
                    diff = self.plugged_size - self.requested_size
                    rc = yield from (self.sbm_unplug_request(diff) if self.in_sbm else self.bbm_unplug_request(diff))
            if rc != -EAGAIN:
                return rc

    def config_changed(self) -> bool:
        return self._cfg_event is None or self._cfg_event.triggered

    def refresh_config(self) -> None:
        """The host's requested_size: the target minus boot memory, in device blocks, within the region."""
        self._cfg_event = self.sim.target_event
        boot = sum(self.sim.scenario.guest.boot)
        dbs = self.p.device_block_size
        req = max(0, self.sim.target_bytes - boot) // dbs * dbs
        req = min(req, self.p.region_size)
        if req != self.requested_size:
            self.requested_size = req
            self.log("hotadd_request", -1, f"requested_size {req >> 20}M (plugged {self.plugged_size >> 20}M)")

    # -- device requests ---------------------------------------------------------------------------
    def _plug(self, start: int, end: int, block_id: int, what: str):
        """virtio_mem_send_plug_request(): the host backs [start, end) or answers BUSY."""
        if self.config_changed():
            return -EAGAIN
        yield self.env.timeout(self.p.plug_latency)
        pages = end - start
        got = self.sim.host.populate(pages)
        if got < pages:
            self.sim.host.release(got)
            self.stats["plug_failures"] += 1
            self.log("populate", block_id, f"plug {what} refused: host out of memory (-ETXTBSY)")
            return -ETXTBSY
        self.guest.host_populate(start, end)
        self.plugged_size += pages << PAGE_SHIFT
        self.log("populate", block_id, f"plug {what} ({pages >> 8}M)")
        return 0

    def _unplug(self, start: int, end: int, block_id: int, what: str, before=None):
        """virtio_mem_send_unplug_request(): the host takes the frames back. `before` runs when the request
        is sent (the state change the hotplug_mutex keeps consistent)."""
        if self.config_changed():
            return -EAGAIN
        if before is not None:
            before()
        yield self.env.timeout(self.p.plug_latency)
        self._unback(start, end)
        self.sim.host.release(end - start)
        self.plugged_size -= (end - start) << PAGE_SHIFT
        self.log("unplug", block_id, f"unplug {what} ({(end - start) >> 8}M)")
        return 0

    def _unback(self, start: int, end: int) -> None:
        g = self.guest
        g.host_unpopulate(start, end)
        # backing recorded for a block whose add_memory() failed is not reached by host_unpopulate()
        bp = g.block_pages
        for bid in range(start // bp, (end - 1) // bp + 1):
            pre = g._prebacked.get(bid)
            if bid not in g.blocks and pre is not None:
                pre.remove(start, end)
                if not pre:
                    del g._prebacked[bid]

    def _add(self, bid: int, start: int, size: int, hint: Extents) -> int:
        """virtio_mem_add_memory(): counts toward offline_size before the call (it may online at once)."""
        self.offline_size += size
        ret = self.hot_add(self.p.node, start, size, hint)
        if ret:
            self.offline_size -= size
            self.stats["add_failures"] += 1
            self.log("virtio_mem", bid, f"adding memory failed: {ret}")
        return ret

    def _removed(self, size: int) -> None:
        self.offline_size -= size
        self.retry()  # "We might have freed up memory we can now unplug, retry immediately"

    # -- fake-offline (alloc_contig_range) / fake-online -------------------------------------------
    def _fake_offline(self, block, start: int, end: int) -> bool:
        n = block.exposed.count(start, end)
        if not n:
            return True
        zone = block.zone
        short = n + zone.wmark_min - zone.free
        if short > 0:
            self.guest.alloc.reclaim([zone], short)
        if zone.free - n < zone.wmark_min:
            return False
        return self.guest.withdraw_pages(block, start, end) == n

    # -- SBM: subblock bookkeeping -----------------------------------------------------------------
    def _sb_range(self, mb: int, sb: int, count: int) -> tuple[int, int]:
        s = mb * self.guest.block_pages + sb * self.sb_pages
        return s, s + count * self.sb_pages

    def _plugged(self, mb: int, sb: int) -> bool:
        return bool(self.sb_bits.get(mb, 0) >> sb & 1)

    def _plugged_sbs(self, mb: int) -> list[int]:
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
            movable = block.zone.type is ZoneType.MOVABLE
            return (MOVABLE if movable else KERNEL) if full else (MOVABLE_PARTIAL if movable else KERNEL_PARTIAL)
        return OFFLINE if full else OFFLINE_PARTIAL

    def _vmemmap_sbs(self, block) -> set[int]:
        out: set[int] = set()
        for s, e in block.vmemmap_pfns:
            out.update(range((s - block.start_pfn) // self.sb_pages, (e - 1 - block.start_pfn) // self.sb_pages + 1))
        return out

    def _pinned_sbs(self, block) -> set[int]:
        """Subblocks alloc_contig_range() cannot take: vmemmap pages, and unmovable kernel data attributed to
        the block (placed in its lowest plugged subblocks)."""
        pins = self._vmemmap_sbs(block)
        need = -(-block.unmovable // self.sb_pages)
        for sb in self._plugged_sbs(block.id):
            if need <= 0:
                break
            if sb not in pins:
                pins.add(sb)
                need -= 1
        return pins

    # -- SBM: plug ---------------------------------------------------------------------------------
    def sbm_plug_sb(self, mb: int, sb: int, count: int):
        s, e = self._sb_range(mb, sb, count)
        rc = yield from self._plug(s, e, mb, f"subblocks {sb}-{sb + count - 1}")
        if not rc:
            self._set_sbs(mb, sb, count, True)
        return rc

    def sbm_unplug_sb(self, mb: int, sb: int, count: int):
        s, e = self._sb_range(mb, sb, count)
        return (
            yield from self._unplug(
                s, e, mb, f"subblocks {sb}-{sb + count - 1}", before=lambda: self._set_sbs(mb, sb, count, False)
            )
        )

    def sbm_plug_and_add_mb(self, mb: int, nb_sb: int):
        """virtio_mem_sbm_plug_and_add_mb(): plug the first subblocks, then add the block."""
        count = min(nb_sb, self.sbs_per_mb)
        rc = yield from self.sbm_plug_sb(mb, 0, count)
        if rc:
            return rc, nb_sb
        s, e = self._sb_range(mb, 0, count)
        ret = self._add(mb, mb * self.guest.block_size, self.guest.block_size, Extents.span(s, e))
        if ret:
            if (yield from self.sbm_unplug_sb(mb, 0, count)):
                self.pending_unplug.add(mb)
            return ret, nb_sb
        self.added.add(mb)
        self.guest.blocks[mb].withheld_offlinable = True
        return 0, nb_sb - count

    def sbm_plug_any_sb(self, mb: int, nb_sb: int):
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
                s, e = self._sb_range(mb, sb, count)
                g.generic_online_page(block, s, e)
        return 0, nb_sb

    def sbm_plug_request(self, diff: int):
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
            if not self.could_add_memory(bsize):
                return -ENOSPC
            rc, nb_sb = yield from self.sbm_plug_and_add_mb(mb, nb_sb)
            if rc or not nb_sb:
                return rc
        while nb_sb:
            if not self.could_add_memory(bsize):
                return -ENOSPC
            if self.next_mb > self.last_usable_mb:  # virtio_mem_sbm_prepare_next_mb()
                return -ENOSPC
            mb = self.next_mb
            self.next_mb += 1
            rc, nb_sb = yield from self.sbm_plug_and_add_mb(mb, nb_sb)
            if rc:
                return rc
        return 0

    # -- SBM: unplug -------------------------------------------------------------------------------
    def sbm_unplug_any_sb_raw(self, mb: int, nb_sb: int, pins: set[int]):
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

    def sbm_unplug_sb_online(self, mb: int, sb: int, count: int):
        """virtio_mem_sbm_unplug_sb_online(): fake-offline, then unplug (fake-online again on failure)."""
        g = self.guest
        block = g.blocks[mb]
        if self._pinned_sbs(block) & set(range(sb, sb + count)):
            return -EBUSY
        s, e = self._sb_range(mb, sb, count)
        if not self._fake_offline(block, s, e):
            return -EBUSY
        rc = yield from self.sbm_unplug_sb(mb, sb, count)
        if rc:
            g.generic_online_page(block, s, e)
        return rc

    def sbm_unplug_any_sb_online(self, mb: int, nb_sb: int):
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

    def sbm_unplug_any_sb_offline(self, mb: int, nb_sb: int):
        block = self.guest.blocks[mb]
        rc, nb_sb = yield from self.sbm_unplug_any_sb_raw(mb, nb_sb, self._pinned_sbs(block))
        if rc:
            return rc, nb_sb
        return (yield from self.sbm_finish_mb(mb, nb_sb))

    def sbm_finish_mb(self, mb: int, nb_sb: int):
        """A block with no unpinned plugged subblock left: offline (if online) and remove it; subblocks that
        hold only its own memmap go with it, unplugged right after the removal."""
        g = self.guest
        block = g.blocks[mb]
        left = self._plugged_sbs(mb)
        if left and (not set(left) <= self._vmemmap_sbs(block) or len(left) > nb_sb or not g.removable(block)):
            return 0, nb_sb
        online_type = block.online_type if block.state is BlockState.ONLINE else None
        if online_type is not None:
            faked: list[tuple[int, int]] = []
            for sb in left:
                s, e = self._sb_range(mb, sb, 1)
                if not self._fake_offline(block, s, e):
                    break
                faked.append((s, e))
            ret = g.offline_memory_block(mb) if len(faked) == len(left) else -EBUSY
            if ret:
                for s, e in faked:  # virtio_mem_fake_online()
                    g.generic_online_page(block, s, e)
                self.log("unplug", mb, f"offline_memory_block: {_err(ret)}")
                return 0, nb_sb
        ret = g.remove_memory(mb * g.block_size, g.block_size)
        if ret:
            self.log("unplug", mb, f"remove_memory: {_err(ret)}")
            if online_type is not None:
                g.online_memory_block(mb, online_type)  # offline_and_remove_memory() rolls back
            return 0, nb_sb
        self.added.discard(mb)
        self._removed(g.block_size)
        self.log("unplug", mb, f"memory{mb} {'offlined and ' if online_type else ''}removed")
        if left:
            rc, nb_sb = yield from self.sbm_unplug_any_sb_raw(mb, nb_sb, set())
            if rc:
                self.pending_unplug.add(mb)
        return 0, nb_sb

    def sbm_unplug_request(self, diff: int):
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
        self.stats["unplug_failures"] += 1
        return -EBUSY

    def unplug_pending(self):
        """virtio_mem_unplug_pending_mb(): blocks plugged but not added (add failed, then unplug failed)."""
        if self.in_sbm:
            for mb in sorted(self.pending_unplug):
                rc, _ = yield from self.sbm_unplug_any_sb_raw(mb, self.sbs_per_mb, set())
                if rc:
                    return rc
                self.pending_unplug.discard(mb)
            return 0
        for bb in sorted(b for b, st in self.bb_state.items() if st == BB_PLUGGED):
            rc = yield from self.bbm_unplug_bb(bb)
            if rc:
                return rc
            self.bb_state[bb] = BB_UNUSED
        return 0

    # -- BBM ---------------------------------------------------------------------------------------
    def _bb_range(self, bb: int) -> tuple[int, int]:
        return bb * self.bb_pages, (bb + 1) * self.bb_pages

    def _bb_first_block(self, bb: int) -> int:
        return bb * self.bb_pages // self.guest.block_pages

    def bbm_plug_bb(self, bb: int):
        s, e = self._bb_range(bb)
        return (yield from self._plug(s, e, self._bb_first_block(bb), f"big block {bb}"))

    def bbm_unplug_bb(self, bb: int):
        s, e = self._bb_range(bb)
        return (yield from self._unplug(s, e, self._bb_first_block(bb), f"big block {bb}"))

    def bbm_plug_and_add_bb(self, bb: int):
        rc = yield from self.bbm_plug_bb(bb)
        if rc:
            return rc
        self.bb_state[bb] = BB_ADDED
        s, e = self._bb_range(bb)
        ret = self._add(self._bb_first_block(bb), s << PAGE_SHIFT, self.bb_size, Extents.span(s, e))
        if ret:
            rc = yield from self.bbm_unplug_bb(bb)
            self.bb_state[bb] = BB_PLUGGED if rc else BB_UNUSED  # PLUGGED: "Retry from the main loop"
            return ret
        for b in self.guest.blocks_in(s, self.bb_pages):
            b.withheld_offlinable = True
        return 0

    def bbm_plug_request(self, diff: int):
        nb_bb = diff // self.bb_size
        if not nb_bb:
            return 0
        for bb in range(self.first_bb, self.next_bb):
            if self.bb_state.get(bb, BB_UNUSED) != BB_UNUSED:
                continue
            if not self.could_add_memory(self.bb_size):
                return -ENOSPC
            rc = yield from self.bbm_plug_and_add_bb(bb)
            if not rc:
                nb_bb -= 1
            if rc or not nb_bb:
                return rc
        while nb_bb:
            if not self.could_add_memory(self.bb_size):
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

    def _bb_blocks(self, bb: int):
        s, _ = self._bb_range(bb)
        return self.guest.blocks_in(s, self.bb_pages)

    def bbm_offline_remove_and_unplug_bb(self, bb: int):
        """virtio_mem_bbm_offline_remove_and_unplug_bb() with bbm_safe_unplug."""
        g = self.guest
        blocks = self._bb_blocks(bb)
        self.bb_state[bb] = BB_FAKE_OFFLINE
        faked = []

        def rollback():
            for b in faked:
                g.generic_online_page(b, b.start_pfn, b.end_pfn)  # virtio_mem_fake_online()
            self.bb_state[bb] = BB_ADDED
            return -EBUSY

        for b in blocks:
            if b.state is not BlockState.ONLINE:
                continue
            if not g.removable(b) or not self._fake_offline(b, b.start_pfn, b.end_pfn):
                return rollback()
            faked.append(b)
        offlined = []
        for b in blocks:  # offline_and_remove_memory()
            if b.state is BlockState.ONLINE:
                online_type = b.online_type
                ret = g.offline_memory_block(b.id)
                if ret:
                    for ob, t in offlined:
                        g.online_memory_block(ob.id, t)
                    return rollback()
                offlined.append((b, online_type))
        s, _ = self._bb_range(bb)
        ret = g.remove_memory(s << PAGE_SHIFT, self.bb_size)
        if ret:
            self.log("unplug", self._bb_first_block(bb), f"remove_memory: {_err(ret)}")
            for ob, t in offlined:
                g.online_memory_block(ob.id, t)
            return rollback()
        self._removed(self.bb_size)
        self.log("unplug", self._bb_first_block(bb), f"big block {bb} offlined and removed")
        rc = yield from self.bbm_unplug_bb(bb)
        self.bb_state[bb] = BB_PLUGGED if rc else BB_UNUSED
        return rc

    def bbm_unplug_request(self, diff: int):
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
                if i == 1 and any(b.zone.type is not ZoneType.MOVABLE for b in online):
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
        self.stats["unplug_failures"] += 1
        return -EBUSY

    # -- results -----------------------------------------------------------------------------------
    def metrics(self):
        s = self.stats
        return {
            "virtio_mem_mode": "sbm" if self.in_sbm else "bbm",
            "virtio_mem_plugged_bytes": self.plugged_size,
            "virtio_mem_requested_bytes": self.requested_size,
            "virtio_mem_offline_bytes_end": self.offline_size,
            "virtio_mem_plug_failures": s["plug_failures"],
            "virtio_mem_unplug_failures": s["unplug_failures"],
            "virtio_mem_add_failures": s["add_failures"],
            "virtio_mem_retry_timer_fires": s["retry_timer_fires"],
            "virtio_mem_fake_offline_pages": s["fake_offline_pages"],
            "virtio_mem_broken": self.broken,
        }
