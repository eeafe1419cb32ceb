"""Shared helpers for the guest memory model tests (imported by name: tests/kernel is on sys.path)."""

from __future__ import annotations

from balloonsim.kernel import BlockState, Guest, GuestConfig
from balloonsim.kernel.page_alloc import USER_ZONEIDX, Gfp
from balloonsim.memmap import get_strategy
from balloonsim.units import PAGE_SHIFT, GiB, MiB, kb

DIMM_START = 4 * GiB  # the RFC18 qemu example: 10 GiB DIMM at 4 GiB on node 1
DIMM_SIZE = 10 * GiB
DIMM_PFN = DIMM_START >> PAGE_SHIFT  # 0x100000
DIMM_PAGES = DIMM_SIZE >> PAGE_SHIFT  # 2,621,440


def make_guest(strategy: str = "kmalloc", params: dict | None = None, trace: bool = False, **cfg) -> Guest:
    cfg.setdefault("boot", [2 * GiB])  # the RFC's qemu example guest; GuestConfig's default is 4 GiB
    cfg.setdefault("block_size", 128 * MiB)
    return Guest(GuestConfig(**cfg), get_strategy(strategy, params), trace=trace)


def dimm_guest(strategy: str, params: dict | None = None, **cfg) -> Guest:
    """Boot 2 GiB on node 0 plus a memoryless node 1, as in the qemu example."""
    cfg.setdefault("extra_nodes", 1)
    return make_guest(strategy, params, **cfg)


def populate(g: Guest, start: int, size: int) -> None:
    g.backing.populate(start >> PAGE_SHIFT, (start + size) >> PAGE_SHIFT)


def add_backed(g: Guest, nid: int, start: int, size: int, **kw) -> int:
    """A DIMM: back the whole range, then add_memory() it."""
    populate(g, start, size)
    return g.add_memory(nid, start, size, **kw)


def online_all(g: Guest, online_type: str = "online") -> None:
    for bid in sorted(g.blocks):
        if g.blocks[bid].state is BlockState.OFFLINE:
            assert g.online_memory_block(bid, online_type) == 0


def offline_all(g: Guest) -> None:
    for bid in sorted(g.blocks, reverse=True):
        if g.blocks[bid].state is BlockState.ONLINE:
            assert g.offline_memory_block(bid) == 0


def overhead_pages(g: Guest) -> int:
    """Page-table and slab pages add_memory() took from online memory whatever the strategy, and the page the
    kernel's background put in a block it pinned (balloonsim.kernel.unmovable)."""
    return g.stats.pagetable_pages + sum(g.slab_pages.values()) + g.placement.background_pages


def fill_user(g: Guest, nid: int = 0, leave: int = 0) -> int:
    """USER allocations until only `leave` pages above the min watermarks (plus the lowmem reserves a
    GFP_HIGHUSER_MOVABLE allocation leaves, __zone_watermark_ok()) are left near `nid`."""
    zl = g.alloc.zonelist(nid, kernel_only=False)
    room = sum(max(0, z.free - z.wmark_min - z.lowmem_reserve[USER_ZONEIDX]) for z in zl)
    n = room - leave
    assert n > 0
    assert g.alloc.alloc(nid, n, Gfp.USER) == n
    return n


def state(g: Guest) -> dict:
    """Everything add_memory() may touch, in comparable form."""
    pt = g.pagetables
    return {
        "meminfo": g.meminfo().as_dict(),
        "zones": {
            (z.nid, z.type.value): (z.present, z.managed, z.free, z.pagecache, z.anon, z.kernel)
            for z in g.alloc.iter_zones()
        },
        "pagetables": (
            {k: v for k, v in pt.direct_pmd.items() if v},
            {k: v for k, v in pt.direct_pud.items() if v},
            {k: v for k, v in pt.vmemmap_pmd.items() if v},
            {k: v for k, v in pt.vmemmap_pud.items() if v},
            frozenset(pt.section_roots),
        ),
        "slab": (g.slab_bytes, {k: v for k, v in g.slab_pages.items() if v}),
        "blocks": sorted(g.blocks),
        "groups": dict(g.groups),
        "hosted_by": {k: set(v) for k, v in g.hosted_by.items()},
        "online_nodes": set(g.online_nodes),
        "memmap_stats": (
            g.stats.memmap_kmalloc_pages,
            g.stats.memmap_remote_pages,
            g.stats.memmap_in_range_pages,
            g.stats.pagetable_pages,
            g.stats.metadata_bytes,
        ),
    }


def kb_of(npages: int) -> int:
    return kb(npages)


def diff(a: dict, b: dict) -> dict:
    """Keys (and meminfo fields) whose values differ: {key: (a, b)}."""
    out = {}
    for k in a.keys() | b.keys():
        if k == "meminfo":
            for f in a[k]:
                if a[k][f] != b[k][f]:
                    out[f"meminfo.{f}"] = (a[k][f], b[k][f])
        elif a.get(k) != b.get(k):
            out[k] = (a.get(k), b.get(k))
    return out
