"""x86_64 constants and size/time parsing: the one source of truth for every number.

Sizes are bytes internally and pages (4 KiB) in the kernel model; kB only where
/proc/meminfo shows kB. Sources: docs/kernel-facts.md section 1.
"""

from __future__ import annotations

import math
import re

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT  # 4 KiB
STRUCT_PAGE_SIZE = 64  # sizeof(struct page) in normal configs
SECTION_SIZE_BITS = 27  # arch/x86/include/asm/sparsemem.h
SECTION_SIZE = 1 << SECTION_SIZE_BITS  # 128 MiB
PAGES_PER_SECTION = SECTION_SIZE // PAGE_SIZE  # 32768
PMD_SHIFT = 21
PMD_SIZE = 1 << PMD_SHIFT  # 2 MiB
PMD_PAGES = PMD_SIZE // PAGE_SIZE  # 512
PUD_SHIFT = 30
PUD_SIZE = 1 << PUD_SHIFT  # 1 GiB, also the gigantic page
PUD_PAGES = PUD_SIZE // PAGE_SIZE
PTRS_PER_TABLE = 512
PAGEBLOCK_PAGES = 512  # pageblock_order 9 on x86_64
MAX_ORDER_PAGES = 1024  # buddy maximum: 4 MiB, order 10
SUBSECTION_SIZE = 2 << 20  # SUBSECTION_SHIFT 21
MIN_MEMORY_BLOCK_SIZE = SECTION_SIZE
MAX_MEMORY_BLOCK_SIZE = 2 << 30  # MAX_BLOCK_SIZE in arch/x86/mm/init_64.c
MEM_SIZE_FOR_LARGE_BLOCK = 64 << 30
VMEMMAP_START = 0xFFFFEA0000000000  # __VMEMMAP_BASE, 4-level paging, no KASLR
# arch/x86/include/asm/sparsemem.h: MAX_PHYSMEM_BITS is 46 with 4-level paging, 52 with 5-level (la57).
MAX_PHYSMEM_BITS = 46
MAX_PHYSMEM_BITS_LA57 = 52
# NODES_SHIFT 10 (x86_64 with MAXSMP, and the distributions' configs): MAX_NUMNODES = 1 << NODES_SHIFT.
MAX_NUMNODES = 1 << 10
# No byte count in a scenario can exceed the largest physical address space x86_64 has (5-level paging):
# anything larger is a typo (a P for a G), and would only make the model spin.
MAX_SIZE = 1 << MAX_PHYSMEM_BITS_LA57
# Sixty years: the longest simulated time any number in a scenario may describe (finite, and far beyond use).
MAX_DURATION = 60 * 365 * 86400.0


def div_round_up(n: int, d: int) -> int:
    """DIV_ROUND_UP(n, d): whole units of d needed to hold n."""
    return -(-n // d)


def align_up(x: int, a: int) -> int:
    """ALIGN(x, a) for any positive a (the kernel's needs a power of two; the arithmetic does not)."""
    return -(-x // a) * a


def align_down(x: int, a: int) -> int:
    """ALIGN_DOWN(x, a)."""
    return x - x % a


KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

_SUFFIX = {"": 1, "B": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB, "P": 1 << 50}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)
_TIME_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$", re.IGNORECASE)
_TIME_UNIT = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_size(value: str | int | float, limit: int = MAX_SIZE) -> int:
    """Bytes from `128M`, `10G`, `2GiB`, `0x100000000` or a plain integer, at most `limit`.

    Raises ValueError naming the text when it is not a size (negative, fractional, not finite, too large).
    """
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"negative size: {value}")
        return _size_within(value, value, limit)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a size: {value!r} (sizes are finite byte counts)")
        if value < 0 or value != int(value):
            raise ValueError(f"not a whole number of bytes: {value}")
        return _size_within(int(value), value, limit)
    text = str(value).strip()
    if len(text) > 64:
        raise ValueError(f"not a size: {text[:32]!r}... (use e.g. 128M, 10G, 0x100000000)")
    if text.lower().startswith("0x"):
        try:
            return _size_within(int(text, 16), value, limit)
        except ValueError as exc:
            if "exceeds" in str(exc):
                raise
            raise ValueError(f"not a size: {value!r}") from None
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(f"not a size: {value!r} (use e.g. 128M, 10G, 0x100000000)")
    number, suffix = m.groups()
    whole, _, frac = number.partition(".")
    scale = _SUFFIX[suffix.upper()]
    numerator = int(whole + frac) * scale  # exact: no float rounding for 1.5G or 0.1K
    denominator = 10 ** len(frac)
    if numerator % denominator:
        raise ValueError(f"not a whole number of bytes: {value!r}")
    return _size_within(numerator // denominator, value, limit)


def _size_within(nbytes: int, given: object, limit: int) -> int:
    if nbytes > limit:
        raise ValueError(f"{given!r} exceeds {format_size(limit)} ({limit:#x}), the largest size here")
    return nbytes


def parse_duration(value: str | int | float, limit: float = MAX_DURATION) -> float:
    """Seconds from `90`, `1.5s`, `10m`, `2h`: finite, not negative, at most `limit`."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"not a duration: {value!r} (durations are finite)")
        if value < 0:
            raise ValueError(f"negative duration: {value}")
        seconds = float(value)
    else:
        m = _TIME_RE.match(str(value)) if len(str(value)) <= 64 else None
        if not m:
            raise ValueError(f"not a duration: {str(value)[:64]!r} (use e.g. 30s, 10m, 1h)")
        number, unit = m.groups()
        seconds = float(number) * _TIME_UNIT[unit.lower() if unit else None]
    if seconds > limit:
        raise ValueError(f"{value!r} is longer than {limit / (365 * 86400):g} years, the longest duration here")
    return seconds


def format_size(nbytes: int) -> str:
    """Shortest exact binary form: 128M, 10G, 1536K; bytes otherwise."""
    if nbytes == 0:
        return "0"
    for suffix, scale in (("P", 1 << 50), ("T", TiB), ("G", GiB), ("M", MiB), ("K", KiB)):
        if nbytes % scale == 0:
            return f"{nbytes // scale}{suffix}"
    return str(nbytes)


def pages(nbytes: int) -> int:
    """Whole 4 KiB pages in `nbytes` (which must be page aligned)."""
    if nbytes % PAGE_SIZE:
        raise ValueError(f"{nbytes:#x} is not a multiple of the page size")
    return nbytes >> PAGE_SHIFT


def pfn_to_page_addr(pfn: int, struct_page_size: int = STRUCT_PAGE_SIZE) -> int:
    """pfn_to_page() with SPARSEMEM_VMEMMAP: VMEMMAP_START + pfn * sizeof(struct page)."""
    return VMEMMAP_START + pfn * struct_page_size


def kb(npages: int) -> int:
    """/proc/meminfo shows kB."""
    return npages * (PAGE_SIZE // KiB)
