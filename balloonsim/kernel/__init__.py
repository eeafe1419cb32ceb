"""The guest kernel's memory model, with no SimPy in it."""

from balloonsim.kernel.block import BlockState, Memmap, MemoryBlock
from balloonsim.kernel.errno import E2BIG, EBUSY, EEXIST, EINVAL, ENOMEM, GuestCrash, errname
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.guest import Guest, GuestConfig, probe_memory_block_size
from balloonsim.kernel.meminfo import Meminfo
from balloonsim.kernel.profiles import PROFILES, KernelProfile, get_profile
from balloonsim.kernel.zone import Zone, ZoneType

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
