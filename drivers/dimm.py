"""ACPI memory hot-add of DIMMs (drivers/acpi/acpi_memhotplug.c): the whole range is backed.

The host (QEMU `object_add memory-backend-ram` + `device_add pc-dimm`) backs the DIMM before the
guest sees it, so every page is usable at add time: the only driver for which the kernel chooses
memmap_on_memory. acpi_memory_enable_device() passes MHP_MEMMAP_ON_MEMORY never before 5.13, in 5.13-6.5 only
for a DIMM of exactly one memory block (4a3e5de9c4ec: a larger DIMM gets the ordinary memmap, never -EINVAL),
and always from 6.6 (e3c2bfdd33a3); `memmap_on_memory` overrides that (a what-if). One add_memory() call per
DIMM, in one static memory group (2a1578397a16, 5.15+). Unplug is an ACPI eject: every block is offlined and
the range removed; a block with unmovable pages (-EBUSY) fails the eject, one whose pages cannot migrate yet
keeps it waiting (offline_pages() retries).

A DIMM whose add_memory() failed stays plugged (QEMU keeps the device and its backing; nothing in the guest
ejects it): from 6.9 every later DIMM's notification rescans the bus and retries it first
(KernelProfile.acpi_rescan_retries), before, it is never tried again. A retry that meets the sections an earlier
failure left (-EEXIST) binds the device with no memory: it is not tried again either, and stays plugged (its eject,
which would remove those sections, is not modelled). The host
takes a DIMM that is still waiting back before any other when it wants less memory (device_del of a device with
no memory to offline; the host's policy, not in any source).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from balloonsim.drivers.base import Driver, DriverParams, Process
from balloonsim.errors import ConfigError
from balloonsim.kernel.block import BlockState, MemoryBlock
from balloonsim.kernel.errno import EEXIST, EINTR, errname
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.guest import Guest
from balloonsim.kernel.memory_group import MemoryGroup
from balloonsim.kernel.vmemmap import acpi_memmap_on_memory_flag
from balloonsim.plugin import World
from balloonsim.types import Duration, Size
from balloonsim.units import PAGE_SHIFT

OFFLINE_RETRY = 1.0  # s between the model's looks at an offline that waits for room to migrate
# add_memory() results after which acpi_memory_enable_device() binds the device, so no rescan tries it again: 0, and
# -EEXIST ("Add num_enable even if add_memory() returns -EEXIST, so the device is bound to this driver", 6.12.118
# drivers/acpi/acpi_memhotplug.c l.215-238), which a retry over the sections an earlier failure left gets
BOUND = (0, -EEXIST)


def acpi_memory_group(guest: Guest, nid: int, nr_pages: int) -> MemoryGroup | None:
    """acpi_memory_enable_device(): one static memory group per DIMM (2a1578397a16, 5.15+), so the auto-movable
    policy decides for the whole DIMM; None before 5.15."""
    return guest.register_memory_group(nid, max_pages=nr_pages) if guest.profile.auto_movable else None


class DimmParams(DriverParams):
    dimm_size: Size = 1 << 30
    plug_delay: Duration = Field(1.0, description="ACPI notification to add_memory()")
    unplug: bool = True


class AcpiDimm(Driver):
    Params = DimmParams
    name = "dimm"
    p: DimmParams

    def kernel_mhp_flag(self, nr_pages: int) -> bool:
        """acpi_memory_enable_device() in the guest's release (balloonsim.kernel.vmemmap)."""
        g = self.guest
        return acpi_memmap_on_memory_flag(g.profile, nr_pages, g.block_pages, g.sp)

    def mhp_flag(self, nr_pages: int) -> bool:
        p = self.p.memmap_on_memory
        return self.kernel_mhp_flag(nr_pages) if p is None else p

    def what_if(self, strategy: object) -> list[str]:
        if not getattr(strategy, "uses_mhp_flag", False):
            return []
        pages = self.p.dimm_size >> PAGE_SHIFT
        kernel, ours = self.kernel_mhp_flag(pages), self.mhp_flag(pages)
        if ours == kernel:
            return []
        verb = "forces" if ours else "withholds"
        release = self.guest.profile.name
        return [f"driver dimm {verb} MHP_MEMMAP_ON_MEMORY (acpi_memory_enable_device() in {release} would not)"]

    def __init__(self, sim: World, params: DimmParams) -> None:
        super().__init__(sim, params)
        if params.dimm_size % self.guest.block_size:
            raise ConfigError(
                "driver.dimm_size", f"must be a multiple of the memory block size ({self.guest.block_size >> 20}M)"
            )
        self.dimms: list[tuple[int, int]] = []  # (start, size)
        self.unattached: list[tuple[int, int, int]] = []  # (nid, start, size) plugged, add_memory() failed
        self.empty: list[tuple[int, int, int]] = []  # plugged and bound by -EEXIST: no memory, not tried again
        self.plugged = 0
        self.unplug_ebusy = 0
        self.host_refused = 0

    def start(self) -> None:
        self.env.process(self.run())

    def current_bytes(self) -> int:
        return sum(self.sim.scenario.guest.boot) + sum(size for _, size in self.dimms)

    def run(self) -> Process:
        size = self.p.dimm_size
        while True:
            gap = self.sim.target_bytes - self.current_bytes()
            if self.unattached and gap < size // 2:
                self.drop_unattached()
                continue
            if gap >= size // 2:
                yield from self.plug(size)
                continue
            if self.p.unplug and gap <= -size and self.dimms:
                ejected = yield from self.eject(*self.dimms[-1])
                if not ejected:
                    yield self.sim.target_event
                continue
            yield self.sim.target_event

    def plug(self, size: int) -> Process:
        # QEMU's device-memory region hands out DIMM addresses aligned to the memory block size here,
        # as add_memory() requires (check_hotplug_memory_range): 2 GiB blocks need 2 GiB-aligned DIMMs
        start = self.next_address(size)
        if start is None:
            self.log("hotadd_request", -1, "no free physical range")
            yield self.sim.target_event
            return
        pages = size >> PAGE_SHIFT
        got = self.sim.host.populate(pages)
        if got < pages:  # object_add fails: the host cannot back the DIMM
            self.sim.host.release(got)
            self.host_refused += 1
            self.log("hotadd_request", -1, "host out of memory")
            yield self.sim.target_event
            return
        self.log("hotadd_request", -1, f"dimm {start:#x}+{size >> 20}M")
        yield self.env.timeout(self.p.plug_delay)
        if self.notify(self.p.node, start, size):  # the DIMM stays plugged, its add failed
            yield self.env.timeout(self.p.plug_delay)
            yield self.sim.target_event

    def next_address(self, size: int) -> int | None:
        """Where QEMU puts the next DIMM: the lowest aligned range free of memory blocks and of plugged DIMMs the
        guest has no memory of (waiting, or bound empty)."""
        align = max(self.guest.block_size, min(size, 1 << 30))
        above = 0
        while True:
            start = self.find_free_range(size, align, above)
            if start is None:
                return None
            clash = [s + n for _, s, n in (*self.unattached, *self.empty) if s < start + size and start < s + n]
            if not clash:
                return start
            above = max(clash)

    def notify(self, nid: int, start: int, size: int) -> int:
        """The ACPI notification of a DIMM just plugged: acpi_memory_device_add() -> acpi_memory_enable_device()
        for it and, from 6.9, first for every plugged DIMM whose add failed (the rescan of their parent attaches
        every memory device without a handler, in namespace order: acpi_scan_device_check() ->
        acpi_scan_rescan_bus() -> acpi_bus_scan(); a failed acpi_memory_device_add() leaves the device without
        one, 6.12.118 drivers/acpi/scan.c l.368-409, l.2255-2281, acpi_memhotplug.c l.318-323). Returns the new
        DIMM's add_memory() result; a DIMM whose add fails stays plugged (`unattached`), except on -EEXIST, which
        binds the device without its memory (BOUND)."""
        new = (nid, start, size)
        self.unattached.append(new)  # the newest last: the rescan reaches it after the earlier ones
        ret = 0
        for dimm in list(self.unattached) if self.guest.profile.acpi_rescan_retries else [new]:
            ret = self.add(*dimm)
            if ret in BOUND:
                self.unattached.remove(dimm)
                if ret:
                    self.empty.append(dimm)
        return ret

    def drop_unattached(self) -> None:
        """device_del of the newest DIMM the guest never added: nothing to offline, its backing goes back."""
        _, start, size = self.unattached.pop()
        self.sim.host.release(size >> PAGE_SHIFT)
        self.log("unplug", (start >> PAGE_SHIFT) // self.guest.block_pages, f"{start:#x}+{size >> 20}M never added")

    def add(self, nid: int, start: int, size: int) -> int:
        """acpi_memory_enable_device() for a DIMM the host has backed: the range is populated, a static memory
        group registered (5.15+), then one add_memory() with the release's MHP_MEMMAP_ON_MEMORY (mhp_flag).
        Returns add_memory()'s result; on success the DIMM is this driver's to eject."""
        first, pages = start >> PAGE_SHIFT, size >> PAGE_SHIFT
        self.guest.backing.populate(first, first + pages)
        self.log("populate", first // self.guest.block_pages, f"{pages} pages (whole DIMM)")
        group = acpi_memory_group(self.guest, nid, pages)
        ret = self.hot_add(nid, start, size, Extents.span(first, first + pages), group)
        if not ret:
            self.dimms.append((start, size))
            self.plugged += 1
        elif group is not None and ret not in BOUND:  # acpi_memory_device_free() -> memory_group_unregister()
            self.guest.unregister_memory_group(group)  # (acpi_memhotplug.c l.270-277, l.318-323)
        return ret

    def eject(self, start: int, size: int) -> Process:
        """acpi_scan_hot_remove() -> acpi_scan_try_to_offline() (drivers/acpi/scan.c, 6.12.118 l.201, 7.3.4 l.202),
        then __remove_memory(). A first pass offlines every block in order and notes the failures; a second pass
        retries only those and stops at the first that fails again. Then every block this eject offlined is
        onlined again (acpi_bus_online() -> device_online(): MMOP_ONLINE) and the DIMM stays. Each offline runs in
        a kernel worker, which no signal interrupts: when migration finds no room, offline_pages() keeps retrying
        until it does (the model looks again every OFFLINE_RETRY seconds)."""
        g = self.guest
        blocks = g.blocks_in(start >> PAGE_SHIFT, size >> PAGE_SHIFT)
        put_online: list[MemoryBlock] = []
        failed: list[MemoryBlock] = []
        for b in blocks:  # the first pass: every block, failures noted
            if b.state is BlockState.ONLINE:
                ret = yield from self._offline(b.id)
                (failed if ret else put_online).append(b)
        for b in failed:  # the second pass: the first failure ends it
            ret = yield from self._offline(b.id)
            if ret:
                self.unplug_ebusy += 1
                self.log("offline", b.id, errname(ret))
                for p in put_online:
                    g.online_memory_block(p.id, "online")
                return False
            put_online.append(b)
        if g.remove_memory(start, size):
            self.unplug_ebusy += 1
            return False
        self.sim.host.release(size >> PAGE_SHIFT)
        self.dimms.remove((start, size))
        self.log("remove_memory", blocks[0].id, f"{start:#x}+{size >> 20}M")
        return True

    def _offline(self, block_id: int) -> Process:
        """device_offline() of one block: offline_pages(), waiting while migration finds no room. Returns 0 or
        the error (-EBUSY: something in the block cannot move)."""
        waited = False
        while True:
            ret = self.guest.offline_memory_block(block_id)
            if ret != -EINTR:
                return ret
            if not waited:
                self.log("offline", block_id, "migration finds no room: offline_pages() retries")
                waited = True
            yield self.env.timeout(OFFLINE_RETRY)

    def metrics(self) -> dict[str, Any]:
        return {
            "dimms_plugged": self.plugged,
            "dimm_unplug_ebusy": self.unplug_ebusy,
            "dimm_host_refused": self.host_refused,
        }
