"""The running sums behind "where does the next unmovable page land" (balloonsim.kernel.online_order): on random
appends, changes, removals and restores, every answer equals a walk over a plain list in onlining order."""

from __future__ import annotations

from dataclasses import dataclass

import hypothesis.strategies as st
from hypothesis import given, settings

from balloonsim.kernel.online_order import OnlineOrder


@dataclass(eq=False)
class Item:
    id: int


def walk_first_above(items: list[tuple[Item, int]], used: int) -> Item | None:
    seen = 0
    for item, pages in items:
        seen += pages
        if seen > used:
            return item
    return None


OPS = st.lists(
    st.tuples(
        st.sampled_from(["append", "add", "remove", "restore", "remove"]), st.integers(0, 99), st.integers(0, 50)
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_running_sums_answer_what_a_walk_answers(ops):
    order: OnlineOrder[Item] = OnlineOrder()
    walk: list[tuple[Item, int]] = []  # (item, pages) in order
    left: tuple[Item, int, int] | None = None  # the last removal: (item, place in order, place in walk)
    next_id = 0
    for op, k, pages in ops:
        if op == "append":
            item = Item(next_id)
            next_id += 1
            order.append(item, pages)
            walk.append((item, pages))
            left = None  # restore() puts back only what the last removal took, with nothing appended since
        elif op == "add" and walk:
            i = k % len(walk)
            item, old = walk[i]
            order.add(item, pages)
            walk[i] = (item, old + pages)
        elif op == "remove" and walk:
            i = k % len(walk)
            item, _ = walk.pop(i)
            left = (item, order.remove(item), i)
        elif op == "restore" and left is not None:
            item, at, i = left
            order.restore(item, at, pages)
            walk.insert(i, (item, pages))
            left = None
        assert [x.id for x in order] == [x.id for x, _ in walk]
        assert len(order) == len(walk) and bool(order) == bool(walk)
        assert [order.pages(x) for x, _ in walk] == [p for _, p in walk]
        total = sum(p for _, p in walk)
        assert order.total == total
        for used in (-1, 0, 1, k, pages, total // 2, total - 1, total, total + 1):
            assert order.first_above(used) is (walk[0][0] if used < 0 and walk else walk_first_above(walk, used))
        assert order.last_with_pages() is next((x for x, p in reversed(walk) if p), None)
        assert order.first() is (walk[0][0] if walk else None)


def test_holes_are_dropped_and_order_kept():
    """Blocks that went offline leave holes; onlining drops them once they outnumber the blocks, in order."""
    order: OnlineOrder[Item] = OnlineOrder()
    items = [Item(i) for i in range(100)]
    for it in items:
        order.append(it, 10)
    for it in items[:80]:
        order.remove(it)
    assert len(order._items) == 100  # holes until the next append
    order.append(Item(100), 5)
    assert len(order._items) == 21
    assert [x.id for x in order] == [*range(80, 101)]
    assert order.first_above(0) is items[80] and order.first_above(199) is items[99]
    assert order.first_above(204).id == 100 and order.first_above(205) is None and order.total == 205
