"""Partially backed blocks: touching unbacked memory is fatal (kernel-facts.md sections 2, 3 and 6)."""

import pytest
from kmodel_helpers import make_guest

from balloonsim.kernel import BlockState, GuestCrash
from balloonsim.kernel.extents import Extents
from balloonsim.units import PAGE_SHIFT, GiB, MiB, pfn_to_page_addr

S = 4 * GiB >> PAGE_SHIFT  # first pfn of block 32
HALF = S + 16384
END = S + 32768


def backed_only(guest, block, span):
    """hv_balloon's hv_online_page(): only pages the host backed go to generic_online_page()."""
    out = Extents()
    for s, e in span:
        for bs, be in block.backed.clip(s, e):
            out.add(bs, be)
    return out


def second_half_guest(strategy, params=None, **cfg):
    g = make_guest(strategy, params, **cfg)
    assert g.backing.populate(HALF, END) == 16384
    return g


@pytest.mark.parametrize("strategy", ["altmap", "altmap-range", "altmap,kmalloc"])
def test_altmap_crashes_at_online(strategy):
    g = second_half_guest(strategy)
    g.set_online_page_callback(backed_only)
    assert g.add_memory(0, 4 * GiB, 128 * MiB) == 0  # the memmap is only mapped at add
    assert g.crashed is None
    with pytest.raises(GuestCrash) as exc:
        g.online_memory_block(32)
    crash = exc.value
    assert crash.phys_addr == S << PAGE_SHIFT  # the first unbacked pfn of the memmap region
    assert crash.vaddr == pfn_to_page_addr(S)
    assert "memmap_init_range" in crash.what
    assert g.crashed is crash
    assert g.blocks[32].state is BlockState.OFFLINE
    assert g.meminfo().blocks_online == 0


def test_altmap_crash_address_inside_memmap():
    g = make_guest("altmap")
    g.backing.populate(S, S + 100)  # the first 100 pages of the memmap are backed, then a hole
    g.backing.populate(HALF, END)
    g.set_online_page_callback(backed_only)
    assert g.add_memory(0, 4 * GiB, 128 * MiB) == 0
    with pytest.raises(GuestCrash) as exc:
        g.online_memory_block(32)
    assert exc.value.phys_addr == (S + 100) << PAGE_SHIFT
    # that backing page holds the struct pages of pfns S + 100 * 64 ...
    assert exc.value.vaddr == pfn_to_page_addr(S + 100 * 64) == pfn_to_page_addr(S) + 100 * 4096


def test_altmap_debug_vm_crashes_at_add():
    g = second_half_guest("altmap", debug_vm=True)
    with pytest.raises(GuestCrash) as exc:
        g.add_memory(0, 4 * GiB, 128 * MiB)
    assert exc.value.phys_addr == S << PAGE_SHIFT
    assert "page_init_poison" in exc.value.what
    assert g.crashed is exc.value


def test_altmap_fully_backed_memmap_does_not_crash():
    g = make_guest("altmap", debug_vm=True)
    g.backing.populate(S, S + 512)  # exactly the memmap
    g.backing.populate(HALF, END)
    g.set_online_page_callback(backed_only)
    assert g.add_memory(0, 4 * GiB, 128 * MiB) == 0
    assert g.online_memory_block(32) == 0
    b = g.blocks[32]
    assert b.managed == 16384 and b.withheld == 16384 - 512
    assert g.meminfo().withheld_pages == 16384 - 512


@pytest.mark.parametrize("debug_vm", [False, True])
def test_kmalloc_does_not_crash(debug_vm):
    g = second_half_guest("kmalloc", debug_vm=debug_vm)
    g.set_online_page_callback(backed_only)
    assert g.add_memory(0, 4 * GiB, 128 * MiB) == 0
    before = g.meminfo()
    assert g.online_memory_block(32) == 0
    b = g.blocks[32]
    assert b.exposed == Extents.span(HALF, END)
    assert b.withheld == 16384 and b.vmemmap_pfns.total == 0
    after = g.meminfo()
    assert after.MemTotal_kb - before.MemTotal_kb == 16384 * 4
    assert after.present_pages - before.present_pages == 32768
    assert after.withheld_pages == 16384
    assert g.crashed is None


def test_kmalloc_without_callback_crashes_in_buddy():
    """generic_online_page() on every page: the buddy allocator writes unbacked pages."""
    g = second_half_guest("kmalloc")
    assert g.add_memory(0, 4 * GiB, 128 * MiB) == 0
    with pytest.raises(GuestCrash) as exc:
        g.online_memory_block(32)
    assert exc.value.phys_addr == S << PAGE_SHIFT
    assert g.crashed is exc.value


@pytest.mark.parametrize("debug_vm", [False, True])
def test_subrange_hint_with_backed_hint_does_not_crash(debug_vm):
    g = second_half_guest("subrange-hint", debug_vm=debug_vm)
    g.set_online_page_callback(backed_only)
    assert g.add_memory(0, 4 * GiB, 128 * MiB, hint=Extents.span(HALF, END)) == 0
    b = g.blocks[32]
    assert b.memmap.in_range == Extents.span(HALF, HALF + 512)
    assert g.online_memory_block(32) == 0
    assert b.exposed == Extents.span(HALF + 512, END)
    assert b.withheld == 16384
    assert g.meminfo().memmap_in_range_pages == 512
    assert g.crashed is None


def test_subrange_hint_with_wrong_hint_crashes():
    """The hint is the driver's promise: a hint that is not backed crashes like altmap."""
    g = second_half_guest("subrange-hint")
    g.set_online_page_callback(backed_only)
    assert g.add_memory(0, 4 * GiB, 128 * MiB, hint=Extents.span(S, END)) == 0
    with pytest.raises(GuestCrash) as exc:
        g.online_memory_block(32)
    assert exc.value.phys_addr == S << PAGE_SHIFT


def test_altmap_range_crash_in_host_block():
    """RFC: block 33's memmap lives in block 32; an unbacked block 32 kills onlining block 33."""
    g = make_guest("altmap-range")
    g.backing.populate(S + 32768, S + 65536)  # block 33 fully backed, block 32 not at all
    g.set_online_page_callback(backed_only)
    assert g.add_memory(0, 4 * GiB, 256 * MiB) == 0
    with pytest.raises(GuestCrash) as exc:
        g.online_memory_block(33)
    assert exc.value.phys_addr == (S + 512) << PAGE_SHIFT  # block 33's memmap slot in block 32


def test_fake_online_later_and_withdraw():
    g = second_half_guest("kmalloc")
    g.set_online_page_callback(backed_only)
    assert g.set_online_page_callback(backed_only) == -22  # one driver callback at a time
    assert g.add_memory(0, 4 * GiB, 128 * MiB) == 0
    assert g.online_memory_block(32) == 0
    b = g.blocks[32]
    g.backing.populate(S, HALF)  # the host backs the rest; the driver fake-onlines it
    total = g.meminfo().MemTotal_kb
    assert g.generic_online_page(b, S, HALF) == 16384
    assert g.generic_online_page(b, S, HALF) == 0  # already exposed
    assert b.withheld == 0
    assert g.meminfo().MemTotal_kb - total == 16384 * 4
    assert g.withdraw_pages(b, S, S + 1024) == 1024  # balloon inflation of a known range
    assert b.withheld == 1024
    assert g.meminfo().MemTotal_kb - total == (16384 - 1024) * 4
    g.restore_online_page_callback(backed_only)
    assert g.online_page_callback is None


# ------------------------------------------------------------------------- the hypervisor's view ---
def test_backing_before_add_moves_to_the_block_and_back_on_failure():
    """Backing done before add_memory() (a DIMM, Xen's memmap share) belongs to the range, not to a block:
    the add hands it to the block, a failed add hands it back, and unpopulate reaches it either way."""
    g = make_guest("kmalloc")
    assert g.backing.populate(S, S + 100) == 100
    assert g.backing.pending(32) == Extents.span(S, S + 100)
    assert g.add_memory(0, 4 * GiB, 128 * MiB) == 0
    assert g.blocks[32].backed == Extents.span(S, S + 100) and g.backing.pending_blocks == []
    assert g.backing.populate(S, S + 200) == 100  # already backed pages are not counted twice
    assert g.backing.unpopulate(S + 50, S + 60) == 10
    assert g.blocks[32].backed == Extents([(S, S + 50), (S + 60, S + 200)])
    # an add that fails after registering the range's blocks keeps their backing with the range
    g = make_guest("subrange-hint", {"fallback": "fail"})
    assert g.backing.populate(S, S + 100) == 100
    assert g.add_memory(0, 4 * GiB, 128 * MiB) == -12  # no hint: no place for the memmap
    assert 32 not in g.blocks and g.backing.pending(32) == Extents.span(S, S + 100)
    assert g.backing.unpopulate(S, END) == 100
    assert g.backing.pending_blocks == []


def test_backing_first_missing_crosses_blocks():
    """A write over a range that spans blocks meets the first hole wherever it is (write_memmap)."""
    g = make_guest("kmalloc")
    g.backing.populate(S, END + 10)
    assert g.add_memory(0, 4 * GiB, 128 * MiB) == 0  # block 33 stays unadded: its backing is pending
    assert g.backing.first_missing(S, END + 10) is None
    assert g.backing.first_missing(S, END + 11) == END + 10
    g.backing.unpopulate(HALF, HALF + 1)
    assert g.backing.first_missing(S, END + 10) == HALF
