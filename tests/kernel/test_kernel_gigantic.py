"""1 GiB gigantic-page capacity of hot-added memory (kernel-facts.md sections 1 and 8)."""

import pytest
from kmodel_helpers import add_backed, fill_user, make_guest, online_all

from balloonsim.kernel.extents import Extents
from balloonsim.units import PAGE_SHIFT, PUD_PAGES, GiB, MiB


def _guest(strategy, size=10 * GiB, online="online", **cfg):
    g = make_guest(strategy, **cfg)
    assert add_backed(g, 0, 4 * GiB, size) == 0
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
    g = _guest("altmap-range", size=size, max_addr=128 * GiB)
    assert g.gigantic_pages() == size // GiB - lost


def test_altmap_range_memmap_over_1g_loses_two():
    g = _guest("altmap-range", size=72 * GiB, max_addr=128 * GiB)  # 1.125 GiB of memmap
    assert g.gigantic_pages() == 72 - 2


def test_node_pool_loses_only_pool_hosts():
    g = _guest("node-pool")
    pools = g.strategy.pools[0]
    assert len(pools) == 5  # 80 blocks, 16 memmap slots per 32 MiB pool
    hosts = {p.host for p in pools}
    assert hosts == {32, 48, 64, 80, 96}
    lost = {g.blocks[h].start_pfn // PUD_PAGES for h in hosts}
    assert len(lost) == 5
    assert g.gigantic_pages() == 10 - len(lost)


def test_withheld_range_does_not_count():
    g = make_guest("kmalloc")
    s = 4 * GiB >> PAGE_SHIFT
    g.backing.populate(s, s + 2 * PUD_PAGES - 1)  # the last page of the second GiB is not backed
    g.set_online_page_callback(
        lambda guest, b, span: Extents([(x, y) for s0, e0 in span for x, y in b.backed.clip(s0, e0)])
    )
    assert g.add_memory(0, 4 * GiB, 2 * GiB) == 0
    online_all(g)
    assert g.blocks[47].withheld == 1
    assert g.gigantic_pages() == 1


def test_unmovable_kmalloc_memmap_breaks_a_range():
    g = _guest("kmalloc", size=2 * GiB, kernel="4.19")
    assert g.gigantic_pages() == 2
    # before 5.10 a later add's kmalloc memmap lands in the newest kernel block (onlined pages at the
    # head of the free lists): unmovable
    assert add_backed(g, 0, 8 * GiB, 128 * MiB) == 0
    assert g.blocks[64].memmap.host_block == 47
    assert g.blocks[47].unmovable == 512
    assert not g.removable(g.blocks[47])
    assert g.gigantic_pages() == 1


def test_offline_block_breaks_its_range():
    g = _guest("kmalloc", size=2 * GiB)
    assert g.gigantic_pages() == 2
    assert g.offline_memory_block(33) == 0
    assert g.gigantic_pages() == 1


def test_partial_range_not_counted():
    g = make_guest("kmalloc")
    assert add_backed(g, 0, 4 * GiB, 512 * MiB) == 0
    online_all(g)
    assert g.gigantic_pages() == 0
    g = make_guest("kmalloc")
    assert add_backed(g, 0, 4 * GiB, 512 * MiB) == 0
    assert add_backed(g, 0, 4 * GiB + 512 * MiB, 512 * MiB) == 0  # two adds make one aligned GiB
    online_all(g)
    assert g.gigantic_pages() == 1


def test_since_5_10_kmalloc_memmap_prefers_older_free_memory():
    """FPI_TO_TAIL: onlined pages are used last, so boot memory hosts the next memmap while it has room."""
    g = _guest("kmalloc", size=2 * GiB)
    assert add_backed(g, 0, 8 * GiB, 128 * MiB) == 0
    assert g.blocks[64].memmap.host_block is None
    assert g.gigantic_pages() == 2
    # with boot memory's free pages gone, the oldest onlined block hosts it
    hot = sum(b.managed for b in g.blocks.values())
    fill_user(g, 0, leave=hot + 100)  # what is left free is (at most) the hot-added blocks' pages
    assert add_backed(g, 0, 9 * GiB, 128 * MiB) == 0
    assert g.blocks[72].memmap.host_block == 32
    assert g.gigantic_pages() == 1
