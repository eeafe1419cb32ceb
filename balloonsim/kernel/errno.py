"""The kernel's error numbers, as add_memory() and friends return them (negated)."""

from __future__ import annotations

EINTR = 4
EBUSY = 16
EEXIST = 17
EINVAL = 22
ENOMEM = 12
E2BIG = 7

NAMES = {
    0: "0",
    -EINTR: "-EINTR",
    -EBUSY: "-EBUSY",
    -EEXIST: "-EEXIST",
    -EINVAL: "-EINVAL",
    -ENOMEM: "-ENOMEM",
    -E2BIG: "-E2BIG",
}


def errname(err: int) -> str:
    return NAMES.get(err, str(err))


class GuestCrash(Exception):
    """The guest touched memory the hypervisor has not backed: a fatal fault (GP / EPT violation)."""

    def __init__(self, phys_addr: int, vaddr: int, what: str):
        # args stay (phys_addr, vaddr, what): SimPy re-raises a process's exception as type(e)(*e.args)
        super().__init__(phys_addr, vaddr, what)
        self.phys_addr = phys_addr
        self.vaddr = vaddr
        self.what = what

    def __str__(self) -> str:
        return f"{self.what}: write to unbacked memory at {self.phys_addr:#x} (vaddr {self.vaddr:#x})"


class KernelOops(GuestCrash):
    """The guest dies of a kernel bug rather than of unbacked memory (args stay (0, 0, what) for SimPy)."""

    def __str__(self) -> str:
        return self.what
