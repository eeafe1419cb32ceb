"""The virtio-mem device, whatever its mode: probe, region, worker, requests to the host, kernel hooks.

What is modelled, with the kernel function it follows (kernel-facts.md section 7):
- Probe (virtio_mem_init): SBM if the subblock size (see sbm.py) is below the memory block size and
  force_bbm is off, else BBM. offline_threshold = max(2 * memory_block_size, 1 GiB), in BBM also >= 2 *
  bb_size. The region is `region_start` (or the first free memory block above boot memory) + `region_size`,
  usable up to the guest's max_addr (mhp_get_pluggable_range()).
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
- offline_size: adding counts toward it; MEM_ONLINE subtracts, MEM_OFFLINE adds, removal subtracts.
- Online-page callback (virtio_mem_online_page_cb): the mode says what is plugged; the rest stays
  fake-offline. Blocks get `withheld_offlinable`: virtio-mem's going-offline notifier lets those pages go.
- Fake-offlining (virtio_mem_fake_offline -> alloc_contig_range): Guest.alloc_contig_range() drops the
  range's clean page cache, migrates the rest to any allowed zone of the node (balloonsim.kernel.migrate) and
  takes its free pages with no watermark check. The errno goes up as the kernel's callers pass it: -ENOMEM (no
  migration target) ends the unplug pass and arms the retry timer, -EBUSY moves on to the next subblock or big
  block, -EAGAIN (config changed) starts the worker over.
- The host side: a plug request is QEMU populating the range (HostMemory.populate + Guest.backing.populate);
  when the host cannot back it, the device answers BUSY (-ETXTBSY). Unplug gives the frames back. QEMU's usable
  region (requested_size + 256 MiB, growing only; `usable_region`) bounds the blocks the driver may use
  (virtio_mem_refresh_config(): last_usable_mb_id / last_usable_bb_id); beyond it a plug that needs a new
  block ends with -ENOSPC.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import simpy
from pydantic import Field, field_validator, model_validator

from balloonsim.drivers.base import Driver, DriverParams, Process
from balloonsim.drivers.virtio_mem.bbm import Bbm
from balloonsim.drivers.virtio_mem.common import EAGAIN, ENOSPC, ETXTBSY, Request, err
from balloonsim.drivers.virtio_mem.sbm import Sbm
from balloonsim.errors import ConfigError
from balloonsim.kernel.errno import EBUSY, ENOMEM
from balloonsim.kernel.extents import Extents
from balloonsim.plugin import World
from balloonsim.types import Duration, Size
from balloonsim.units import PAGE_SHIFT, PAGE_SIZE, GiB, MiB, align_up

if TYPE_CHECKING:
    from balloonsim.kernel.block import MemoryBlock
    from balloonsim.kernel.guest import Guest

VIRTIO_MEM_DEFAULT_OFFLINE_THRESHOLD = 1 * GiB
VIRTIO_MEM_USABLE_EXTENT = 256 * MiB  # QEMU hw/virtio/virtio-mem.c on x86 (2 * 128 MiB); cloud-hypervisor the same


def _is_pow2(v: int) -> bool:
    return v > 0 and not v & (v - 1)


class VirtioMemParams(DriverParams):
    region_start: Size | None = Field(
        None, description="device region start (default: the first free memory-block-aligned address above boot memory)"
    )
    region_size: Size = Field(32 * GiB, description="device region size: a multiple of the memory block size")
    device_block_size: Size = Field(
        2 * MiB, description="the device's plug granularity (a power of two; QEMU's default on x86: the THP size)"
    )
    force_bbm: bool = Field(False, description="module parameter force_bbm: Big Block Mode even when SBM fits")
    bbm_block_size: Size | None = Field(None, description="module parameter bbm_block_size (power of two)")
    plug_latency: Duration = Field(0.01, description="time of one plug/unplug request to the device")
    retry_min: Duration = Field(50.0, description="VIRTIO_MEM_RETRY_TIMER_MIN_MS")
    retry_max: Duration = Field(300.0, description="VIRTIO_MEM_RETRY_TIMER_MAX_MS")
    unplug_online: bool = Field(True, description="module parameter unplug_online: unplug from online blocks")
    usable_region: Literal["qemu", "whole"] = Field(
        "qemu",
        description="how the device sizes the part of its region the guest may use: qemu (QEMU and cloud-hypervisor"
        " on x86: requested_size + 256 MiB rounded up to the device block, at most the region, 0 while nothing is"
        " requested, never shrinking while the guest runs) or whole (every block of the region, whatever is"
        " requested)",
    )

    @field_validator("device_block_size")
    @classmethod
    def _dbs(cls, v: int) -> int:
        if v < PAGE_SIZE or not _is_pow2(v):
            raise ValueError("must be a power of two of at least 4K")
        return v

    @field_validator("bbm_block_size")
    @classmethod
    def _bbs(cls, v: int | None) -> int | None:
        if v is not None and not _is_pow2(v):
            raise ValueError("must be a power of two (the kernel warns 'bbm_block_size is not a power of 2')")
        return v

    @field_validator("plug_latency")
    @classmethod
    def _latency(cls, v: float) -> float:
        if v < 0:
            raise ValueError("must not be negative")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> VirtioMemParams:
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
    kernel_passes_mhp_flag = False  # MHP_MERGE_RESOURCE | MHP_NID_IS_MGID, never MHP_MEMMAP_ON_MEMORY

    # -- probe -------------------------------------------------------------------------------------
    def __init__(self, sim: World, params: VirtioMemParams) -> None:
        """virtio_mem_probe() -> virtio_mem_init(): the mode, the geometry, the hooks; refuses what it cannot drive."""
        super().__init__(sim, params)
        g = self.guest
        p = params
        if not g.profile.virtio_mem:
            raise ConfigError(
                "guest.kernel", f"virtio-mem needs kernel 5.8 or later (profile {g.profile.name} has none)"
            )
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
        self.pluggable_end = limit
        self.region_pfns = (addr >> PAGE_SHIFT, self.region_end >> PAGE_SHIFT)

        # virtio_mem_init_hotplug(): sb_size = max(pageblock_nr_pages * PAGE_SIZE, device_block_size) since
        # 448b8ec3bf11 (5.19), max(MAX_ORDER_NR_PAGES, pageblock_nr_pages) * PAGE_SIZE (4 MiB) before
        sb_size = max(p.device_block_size, g.profile.virtio_mem_sb_min)
        self.offline_threshold = max(2 * bsize, VIRTIO_MEM_DEFAULT_OFFLINE_THRESHOLD)
        self.mode: Sbm | Bbm
        if sb_size < bsize and not p.force_bbm:
            self.mode = Sbm(self, g, p, addr, limit, sb_size)
        else:
            self.mode = Bbm(self, g, p, addr, limit)
            self.offline_threshold = max(2 * self.mode.bb_size, self.offline_threshold)

        # virtio_mem_init_hotplug(): one dynamic memory group per device (ffaa6ce835ea, 5.15+), its unit a memory
        # block in SBM and a big block in BBM
        unit = bsize if isinstance(self.mode, Sbm) else self.mode.bb_size
        self.memory_group = (
            g.register_memory_group(p.node, unit_pages=unit >> PAGE_SHIFT) if g.profile.auto_movable else None
        )
        self.plugged_size = 0
        self.requested_size = 0
        self.usable_region_size = 0  # QEMU's, from the requested size (resize_usable_region)
        self.offline_size = 0
        self.retry_s = p.retry_min
        self.broken = False
        self.wq_active = False
        self._pending = False
        self._wake: simpy.Event | None = None
        self._cfg_event: simpy.Event | None = None  # the target event seen at the last config refresh (None: changed)
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

    # -- kernel hooks ----------------------------------------------------------------------------
    def _ours(self, block: MemoryBlock) -> bool:
        s, e = self.region_pfns
        return s <= block.start_pfn and block.end_pfn <= e

    def online_page_cb(self, guest: Guest, block: MemoryBlock, span: Extents) -> Extents:
        """virtio_mem_online_page_cb(): plugged memory to the buddy, the rest kept fake-offline."""
        if not self._ours(block):
            return span  # not virtio-mem memory (a DIMM): generic_online_page
        block.withheld_offlinable = True
        expose = self.mode.expose(block, span)
        kept = span.total - expose.total
        if kept:
            self.stats["fake_offline_pages"] += kept
            self.log("fake_offline", block.id, f"{kept} pages ({kept >> 8}M) of unplugged memory kept fake-offline")
        return expose

    def memory_notifier(self, event: str, block: MemoryBlock) -> None:
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

    # -- the worker ------------------------------------------------------------------------------
    def run(self) -> Process:
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
                self.log("virtio_mem", -1, f"{err(rc)}: retry in {timer:g}s")
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

    def run_wq(self) -> Request:
        """virtio_mem_run_wq() up to the result switch; -EAGAIN starts over (config changed)."""
        while True:
            if self.config_changed():
                self.refresh_config()
            rc = yield from self.mode.unplug_pending()
            if not rc and self.requested_size != self.plugged_size:
                if self.requested_size > self.plugged_size:
                    rc = yield from self.mode.plug_request(self.requested_size - self.plugged_size)
                else:
                    rc = yield from self.mode.unplug_request(self.plugged_size - self.requested_size)
            if not rc and isinstance(self.mode, Sbm) and self.mode.have_unplugged_mb:
                rc = -EBUSY  # "Keep retrying to offline and remove completely unplugged Linux memory blocks."
            if rc != -EAGAIN:
                return rc

    def config_changed(self) -> bool:
        return self._cfg_event is None or self._cfg_event.triggered

    def refresh_config(self) -> None:
        """virtio_mem_refresh_config(): the host's requested_size (the target minus boot memory, in device blocks,
        within the region) and the usable region QEMU derives from it, which bounds the blocks the driver may
        use (last_usable_mb_id / last_usable_bb_id: below end_addr = min(addr + usable_region_size,
        mhp_get_pluggable_range().end); 6.12.118 l.2379-2394)."""
        self._cfg_event = self.sim.target_event
        boot = sum(self.sim.scenario.guest.boot)
        dbs = self.p.device_block_size
        req = max(0, self.sim.target_bytes - boot) // dbs * dbs
        req = min(req, self.p.region_size)
        self._resize_usable_region(req)
        self.mode.set_usable_end(min(self.addr + self.usable_region_size, self.pluggable_end))
        if req != self.requested_size:
            self.requested_size = req
            self.log("hotadd_request", -1, f"requested_size {req >> 20}M (plugged {self.plugged_size >> 20}M)")

    def _resize_usable_region(self, requested: int) -> None:
        """QEMU's virtio_mem_resize_usable_region(vmem, requested_size, can_shrink=false), run when the requested
        size is set (hw/virtio/virtio-mem.c): min(region, requested + VIRTIO_MEM_USABLE_EXTENT) rounded up to the
        device block, 0 for a request of 0, and never smaller than before (only a reset or an unplug-all, which
        this driver never sends, shrinks it). The headroom lets the guest use most of the request even when it
        has to skip blocks it cannot fill; beyond it, a plug that needs a new block ends with -ENOSPC."""
        region, dbs = self.p.region_size, self.p.device_block_size
        if self.p.usable_region == "whole":
            new = region
        else:
            new = align_up(min(region, requested + VIRTIO_MEM_USABLE_EXTENT), dbs) if requested else 0
        self.usable_region_size = max(self.usable_region_size, new)

    # -- device requests -------------------------------------------------------------------------
    def send_plug_request(self, start: int, end: int, block_id: int, what: str) -> Request:
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
        self.guest.backing.populate(start, end)
        self.plugged_size += pages << PAGE_SHIFT
        self.log("populate", block_id, f"plug {what} ({pages >> 8}M)")
        return 0

    def send_unplug_request(
        self, start: int, end: int, block_id: int, what: str, before: Callable[[], None] | None = None
    ) -> Request:
        """virtio_mem_send_unplug_request(): the host takes the frames back. `before` runs when the request
        is sent (the state change the hotplug_mutex keeps consistent)."""
        if self.config_changed():
            return -EAGAIN
        if before is not None:
            before()
        yield self.env.timeout(self.p.plug_latency)
        self.guest.backing.unpopulate(start, end)  # also drops backing recorded before a failed add_memory()
        self.sim.host.release(end - start)
        self.plugged_size -= (end - start) << PAGE_SHIFT
        self.log("unplug", block_id, f"unplug {what} ({(end - start) >> 8}M)")
        return 0

    def add_memory(self, bid: int, start: int, size: int, hint: Extents) -> int:
        """virtio_mem_add_memory(): counts toward offline_size before the call (it may online at once)."""
        self.offline_size += size
        ret = self.hot_add(self.p.node, start, size, hint, self.memory_group)
        if ret:
            self.offline_size -= size
            self.stats["add_failures"] += 1
            self.log("virtio_mem", bid, f"adding memory failed: {ret}")
        return ret

    def memory_removed(self, size: int) -> None:
        self.offline_size -= size
        self.retry()  # "We might have freed up memory we can now unplug, retry immediately"

    # -- fake-offline (alloc_contig_range) / fake-online -----------------------------------------
    def fake_offline(self, block: MemoryBlock, start: int, end: int) -> int:
        """virtio_mem_fake_offline(): -EAGAIN when the config changed (checked before every try), else
        alloc_contig_range() (Guest.alloc_contig_range(): the range's clean page cache dropped, the rest
        migrated, its free pages taken with no watermark check). -ENOMEM is returned as it is ("whoops, out of
        memory"), any other failure as -EBUSY; the kernel's five tries for a ZONE_MOVABLE range would all give
        the same answer here."""
        if self.config_changed():
            return -EAGAIN
        rc = self.guest.alloc_contig_range(block, start, end)
        if rc == -ENOMEM:
            return rc
        return -EBUSY if rc else 0

    # -- results ---------------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        s = self.stats
        return {
            "virtio_mem_mode": self.mode.name,
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
