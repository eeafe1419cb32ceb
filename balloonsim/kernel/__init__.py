"""The guest kernel's memory model, with no SimPy in it.

`Guest` and its configuration load on first use: a memmap strategy imports kernel.vmemmap, and must
not pull the guest in with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from balloonsim.kernel.block import BlockState, Memmap, MemoryBlock
from balloonsim.kernel.errno import E2BIG, EBUSY, EEXIST, EINVAL, ENOMEM, GuestCrash, errname
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.meminfo import Meminfo
from balloonsim.kernel.profiles import PROFILES, KernelProfile, get_profile
from balloonsim.kernel.zone import Zone, ZoneType

if TYPE_CHECKING:
    from balloonsim.kernel.guest import Guest, GuestConfig, probe_memory_block_size

_FROM_GUEST = ("Guest", "GuestConfig", "probe_memory_block_size")


def __getattr__(name: str) -> Any:
    if name in _FROM_GUEST:
        from balloonsim.kernel import guest

        return getattr(guest, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BlockState",
    "E2BIG",
    "EBUSY",
    "EEXIST",
    "EINVAL",
    "ENOMEM",
    "Extents",
    "Guest",
    "GuestConfig",
    "GuestCrash",
    "KernelProfile",
    "Memmap",
    "Meminfo",
    "MemoryBlock",
    "PROFILES",
    "Zone",
    "ZoneType",
    "errname",
    "get_profile",
    "probe_memory_block_size",
]
