"""What virtio-mem's device and its two modes share: errnos the kernel model lacks, and the Mode interface."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol

from balloonsim.kernel.errno import errname
from balloonsim.kernel.extents import Extents

if TYPE_CHECKING:
    from balloonsim.kernel.block import MemoryBlock
    from balloonsim.kernel.guest import Guest

EAGAIN = 11
ETXTBSY = 26
ENOSPC = 28
_MORE_ERRNAMES = {-EAGAIN: "-EAGAIN", -ETXTBSY: "-ETXTBSY", -ENOSPC: "-ENOSPC"}

# A device request: a SimPy process step returning 0 or a negative errno
Request = Generator[Any, Any, int]
# an SBM step over one memory block: (0 or a negative errno, subblocks still to do)
Step = Generator[Any, Any, tuple[int, int]]


def err(rc: int) -> str:
    return _MORE_ERRNAMES.get(rc) or errname(rc)


class Device(Protocol):
    """What a mode asks of the device (balloonsim.drivers.virtio_mem.device.VirtioMem)."""

    stats: dict[str, int]

    def could_add_memory(self, size: int) -> bool: ...

    def log(self, kind: str, block: int = -1, detail: str = "") -> None: ...

    def send_plug_request(self, start: int, end: int, block_id: int, what: str) -> Request: ...

    def send_unplug_request(
        self, start: int, end: int, block_id: int, what: str, before: Callable[[], None] | None = None
    ) -> Request: ...

    def add_memory(self, bid: int, start: int, size: int, hint: Extents) -> int: ...

    def memory_removed(self, size: int) -> None: ...

    def fake_offline(self, block: MemoryBlock, start: int, end: int) -> int: ...


class Mode:
    """SBM or BBM: how the device's memory is cut into units, plugged, added, exposed and unplugged."""

    name = ""

    def __init__(self, dev: Device, guest: Guest, params: Any) -> None:
        self.dev = dev
        self.guest = guest
        self.p = params

    def expose(self, block: MemoryBlock, span: Extents) -> Extents:
        """The part of `span` (being onlined) that is plugged: virtio_mem_online_page_cb()."""
        raise NotImplementedError

    def set_usable_end(self, end: int) -> None:
        """virtio_mem_refresh_config(): the last usable memory block (SBM) or big block (BBM) is the last one
        wholly below `end` (the usable region's end, or the pluggable range's if lower; bytes, exclusive)."""
        raise NotImplementedError

    def plug_request(self, diff: int) -> Request:
        raise NotImplementedError

    def unplug_request(self, diff: int) -> Request:
        raise NotImplementedError

    def unplug_pending(self) -> Request:
        """virtio_mem_unplug_pending_mb(): units plugged but not added (add failed, then unplug failed)."""
        raise NotImplementedError
