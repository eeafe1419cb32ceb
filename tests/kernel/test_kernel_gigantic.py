"""1 GiB gigantic-page capacity of hot-added memory (kernel-facts.md sections 1 and 8).

The capacity tests boot 4 GiB (3 GiB DMA32 + 1 GiB of ZONE_NORMAL at 4 GiB) and add at 8 GiB: the kernel's own
unmovable allocations then land in boot memory's free pages (balloonsim.kernel.unmovable), so what is measured
is the memmap strategy. A guest without boot ZONE_NORMAL is tested at the end.
"""

import pytest
from kmodel_helpers import add_backed, make_guest, online_all

from balloonsim.kernel.extents import Extents
from balloonsim.kernel.page_alloc import Gfp
from balloonsim.kernel.zone import ZoneType
from balloonsim.units import PAGE_SHIFT, PUD_PAGES, GiB, MiB

AT = 8 * GiB
FIRST = AT >> 27  # memory block 64


def _guest(strategy, size=10 * GiB, online="online", **cfg):
    cfg.setdefault("boot", [4 * GiB])
    cfg.setdefault("max_addr", 128 * GiB)
    g = make_guest(strategy, **cfg)
    assert add_backed(g, 0, AT, size) == 0
    online_all(g, online)
    return g


def test_altmap_128m_blocks_none():
    assert _guest("altmap").gigantic_pages() == 0


@pytest.mark.parametrize("size", [2 * GiB, 8 * GiB])
def test_altmap_2g_blocks_one_per_block(size):
    g = _guest("altmap", size=size, block_size=2 * GiB)
    assert g.gigantic_pages() == size // (2 * GiB)


def test_altmap_1g_blocks_none():
    assert _guest("altmap", size=4 * GiB, block_size=1 * GiB).gigantic_pages() == 0


@pytest.mark.parametrize("size", [1 * GiB, 10 * GiB])
def test_kmalloc_all(size):
    assert _guest("kmalloc", size=size).gigantic_pages() == size // GiB


@pytest.mark.parametrize("strategy", ["kmalloc", "altmap", "node-pool"])
def test_online_movable_none(strategy):
    # gigantic pages are unmovable: only kernel zones can hold them
    assert _guest(strategy, online="online_movable").gigantic_pages() == 0


def test_movable_node_online_is_movable():
    assert _guest("kmalloc", movable_node=True).gigantic_pages() == 0


@pytest.mark.parametrize(("size", "lost"), [(10 * GiB, 1), (20 * GiB, 1), (40 * GiB, 1), (64 * GiB, 1)])
def test_altmap_range_loses_only_the_start(size, lost):
    # one altmap for the range: size/64 of memmap at its start (160 MiB for 10 GiB, 1 GiB for 64 GiB)
    g = _guest("altmap-range", size=size)
    assert g.gigantic_pages() == size // GiB - lost


def test_altmap_range_memmap_over_1g_loses_two():
    g = _guest("altmap-range", size=72 * GiB, max_addr=256 * GiB)  # 1.125 GiB of memmap
    assert g.gigantic_pages() == 72 - 2


def test_node_pool_loses_only_pool_hosts():
    g = _guest("node-pool")
    pools = g.strategy.pools[0]
    assert len(pools) == 5  # 80 blocks, 16 memmap slots per 32 MiB pool
    hosts = {p.host for p in pools}
    assert hosts == {FIRST, FIRST + 16, FIRST + 32, FIRST + 48, FIRST + 64}
    lost = {g.blocks[h].start_pfn // PUD_PAGES for h in hosts}
    assert len(lost) == 5
    assert g.gigantic_pages() == 10 - len(lost)


def test_withheld_range_does_not_count():
    g = make_guest("kmalloc", boot=[4 * GiB])
    s = AT >> PAGE_SHIFT
    g.backing.populate(s, s + 2 * PUD_PAGES - 1)  # the last page of the second GiB is not backed
    g.set_online_page_callback(
        lambda guest, b, span: Extents([(x, y) for s0, e0 in span for x, y in b.backed.clip(s0, e0)])
    )
    assert g.add_memory(0, AT, 2 * GiB) == 0
    online_all(g)
    assert g.blocks[FIRST + 15].withheld == 1
    assert g.gigantic_pages() == 1


def test_unmovable_kmalloc_memmap_breaks_a_range():
    g = _guest("kmalloc", size=2 * GiB, kernel="4.19")
    # before 5.10 onlined pages go to the head of the free lists; the kernel's small allocations stay in boot
    # memory's unmovable pageblocks, but a later add's 2 MiB kmalloc memmap steals a pageblock at the head:
    # the newest onlined block's
    last = FIRST + 15
    assert not any(b.unmovable for b in g.blocks.values()) and g.gigantic_pages() == 2
    assert add_backed(g, 0, 12 * GiB, 128 * MiB) == 0
    assert g.blocks[96].memmap.landed_in == {last}
    assert g.blocks[last].unmovable == 512
    assert not g.removable(g.blocks[last])
    assert g.gigantic_pages() == 1


def test_offline_block_breaks_its_range():
    g = _guest("kmalloc", size=2 * GiB)
    assert g.gigantic_pages() == 2
    assert g.offline_memory_block(FIRST + 1) == 0
    assert g.gigantic_pages() == 1


def test_partial_range_not_counted():
    g = make_guest("kmalloc", boot=[4 * GiB])
    assert add_backed(g, 0, AT, 512 * MiB) == 0
    online_all(g)
    assert g.gigantic_pages() == 0
    g = make_guest("kmalloc", boot=[4 * GiB])
    assert add_backed(g, 0, AT, 512 * MiB) == 0
    assert add_backed(g, 0, AT + 512 * MiB, 512 * MiB) == 0  # two adds make one aligned GiB
    online_all(g)
    assert g.gigantic_pages() == 1


def test_since_5_10_kmalloc_memmap_prefers_older_free_memory():
    """FPI_TO_TAIL: onlined pages are used last, so boot memory hosts the next memmap while it has room."""
    g = _guest("kmalloc", size=2 * GiB)
    assert add_backed(g, 0, 12 * GiB, 128 * MiB) == 0
    assert g.blocks[96].memmap.landed_in == set()
    assert g.gigantic_pages() == 2
    # with boot memory's free pages gone, the oldest onlined block hosts it: ZONE_NORMAL first (zonelist
    # order), boot memory's part used up, then the block onlined first
    normal = g.alloc.zones[(0, ZoneType.NORMAL)]
    assert g.alloc.alloc(0, normal.free - normal.hot_managed + 100, Gfp.USER) > 0
    assert g.blocks[FIRST].unmovable == 0  # boot memory's unmovable pageblocks serve the kernel's small ones
    assert add_backed(g, 0, 13 * GiB, 128 * MiB) == 0
    assert g.blocks[104].memmap.landed_in == {FIRST}
    assert g.gigantic_pages() == 1


def test_without_boot_zone_normal_the_first_block_is_pinned():
    """A 2 GiB guest has only DMA32 at boot: the first block onlined creates ZONE_NORMAL, every unmovable
    allocation starts there (build_zonerefs_node(): highest zone first), and the running kernel's own
    allocations pin that block at once. A real Debian 6.1/6.12 guest could not offline it (EBUSY)."""
    g = make_guest("kmalloc")
    assert add_backed(g, 0, 4 * GiB, 2 * GiB) == 0
    online_all(g)
    assert [b for b in sorted(g.blocks) if g.blocks[b].unmovable] == [32]
    assert g.gigantic_pages() == 1
    g = make_guest("kmalloc")
    assert add_backed(g, 0, 4 * GiB, 2 * GiB) == 0
    online_all(g, "online_movable")  # ZONE_MOVABLE never takes an unmovable allocation
    assert not any(b.unmovable for b in g.blocks.values())


def test_a_gib_split_between_two_nodes_is_no_gigantic_page():
    """alloc_contig_pages() -> pfn_range_valid_contig() (6.12.118 mm/page_alloc.c l.6842) refuses a range whose
    pages are in another zone than its first (`if (page_zone(page) != z) return false;`): 512 MiB of one aligned
    GiB on node 0 and 512 MiB on node 1, both online in ZONE_NORMAL, make no gigantic page; the same GiB on one
    node makes one."""
    for nodes, expected in (((0, 1), 0), ((0, 0), 1)):
        g = make_guest("kmalloc", boot=[4 * GiB], extra_nodes=1, max_addr=64 * GiB)
        for nid, start in zip(nodes, (6 * GiB, 6 * GiB + 512 * MiB), strict=True):
            assert add_backed(g, nid, start, 512 * MiB, memmap_on_memory=False) == 0
        online_all(g, "online_kernel")
        assert g.gigantic_pages() == expected, nodes
