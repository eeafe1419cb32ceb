"""allocate_resource() for the drivers (balloonsim.drivers.base.find_free_range): the lowest free, aligned gap above
boot memory. It starts from the guest's remembered first free block (Guest.first_free_block()); on random
sequences of adds where it points, adds elsewhere and removals, it must answer what a scan from the bottom of the
window answers: never an occupied range, never past a free one."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from balloonsim.drivers.base import find_free_range
from balloonsim.kernel import Guest, GuestConfig
from balloonsim.units import PAGE_SHIFT, GiB, MiB, align_up

BLOCK = 256 * MiB
MAX_ADDR = 12 * GiB  # blocks 16 (4 GiB) .. 47
SIZES = [128 * MiB, 256 * MiB, 512 * MiB, 768 * MiB, 1 * GiB]
ALIGNS = [128 * MiB, 256 * MiB, 1 * GiB]


def scan_from_bottom(g: Guest, size: int, align: int) -> int | None:
    """The search without the hint: from the first aligned address above boot memory and 4 GiB, every time."""
    pos = align_up(max(g.boot_end_pfn << PAGE_SHIFT, 4 * GiB), align)
    while pos + size <= g.max_pfn << PAGE_SHIFT:
        busy = [i for i in range(pos // BLOCK, (pos + size - 1) // BLOCK + 1) if i in g.blocks]
        if not busy:
            return pos
        pos = align_up((busy[-1] + 1) * BLOCK, align)
    return None


def guest() -> Guest:
    return Guest(GuestConfig(boot=[2 * GiB], max_addr=MAX_ADDR, block_size=BLOCK))


OPS = st.one_of(
    st.tuples(st.just("driver"), st.sampled_from(SIZES), st.sampled_from(ALIGNS)),  # find, then add there
    st.tuples(st.just("add"), st.integers(16, 47), st.integers(1, 4)),  # an add elsewhere (a DIMM at a fixed address)
    st.tuples(st.just("remove"), st.integers(0, 1000), st.just(0)),  # remove one earlier add (whole)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=60))
def test_hint_answers_what_a_scan_from_the_bottom_answers(ops):
    g = guest()
    for op, a, b in ops:
        if op == "driver":
            size = align_up(a, BLOCK)  # add_memory() takes whole blocks
            got = find_free_range(g, size, b)
            assert got == scan_from_bottom(g, size, b)
            if got is not None:
                assert got % b == 0 and got + size <= MAX_ADDR
                assert not g.blocks_in(got >> PAGE_SHIFT, size >> PAGE_SHIFT)  # never an occupied range
                assert g.add_memory(0, got, size) == 0
        elif op == "add":
            size = min(b, 48 - a) * BLOCK
            g.add_memory(0, a * BLOCK, size)  # -EEXIST when it overlaps: nothing changes then
        elif g.groups:
            start, nr = g.groups[sorted(g.groups)[a % len(g.groups)]]
            assert g.remove_memory(start << PAGE_SHIFT, nr << PAGE_SHIFT) == 0
        for size in SIZES[:2]:  # every step: the answer for a block-sized request
            size = align_up(size, BLOCK)
            assert find_free_range(g, size, BLOCK) == scan_from_bottom(g, size, BLOCK)


def test_a_removal_below_the_hint_is_found_again():
    """Adds move the first free block up; removing a block below it brings the search back down to it."""
    g = guest()
    starts = []
    for _ in range(6):
        start = find_free_range(g, BLOCK, BLOCK)
        assert start is not None and g.add_memory(0, start, BLOCK) == 0
        starts.append(start)
    assert starts == [(16 + i) * BLOCK for i in range(6)]
    assert g.first_free_block(16) == 22
    assert g.remove_memory(starts[2], BLOCK) == 0
    assert find_free_range(g, BLOCK, BLOCK) == starts[2]
    assert find_free_range(g, 2 * BLOCK, BLOCK) == 22 * BLOCK  # one free block is too small: past it
