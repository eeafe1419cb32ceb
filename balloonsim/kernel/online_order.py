"""The hot-added blocks online in a zone, in onlining order, with running sums of their managed pages.

Where the zone's next unmovable page lands (balloonsim.kernel.unmovable) is the first block whose running sum of
managed pages exceeds the pages already in use. A Fenwick tree (binary indexed tree) over the blocks in onlining
order answers that, and takes a block's change, in O(log n); walking a list did it in O(n) per allocation, which
made a guest grown one block at a time quadratic. A block that goes offline leaves a hole where it was, so that
an offline that fails puts it back in its place (undo_isolate_page_range()); holes are dropped when onlining
finds them outnumbering the blocks.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar


class Keyed(Protocol):
    @property
    def id(self) -> int: ...


T = TypeVar("T", bound=Keyed)


class OnlineOrder(Generic[T]):
    """Items (memory blocks) in the order they came, each with a count of pages, searchable by running sum."""

    __slots__ = ("_items", "_pages", "_tree", "_at", "_head")

    def __init__(self) -> None:
        self._items: list[T | None] = []  # by position; None: a block that left
        self._pages: array[int] = array("q")  # pages counted for each position
        self._tree: array[int] = array("q", [0])  # Fenwick tree over _pages, 1-based
        self._at: dict[int, int] = {}  # item id -> position
        self._head = 0  # no item before this position

    def __len__(self) -> int:
        return len(self._at)

    def __bool__(self) -> bool:
        return bool(self._at)

    def __iter__(self) -> Iterator[T]:
        """The items in onlining order."""
        self.first()  # past the holes at the front, once: blocks offlined oldest first are not walked again
        items = self._items
        for pos in range(self._head, len(items)):
            item = items[pos]
            if item is not None:
                yield item

    def __contains__(self, item: T) -> bool:
        return item.id in self._at

    def pages(self, item: T) -> int:
        """The pages counted for `item`."""
        return self._pages[self._at[item.id]]

    @property
    def total(self) -> int:
        return self._prefix(len(self._pages))

    # -- changes -------------------------------------------------------------------------------------------
    def append(self, item: T, pages: int) -> None:
        """`item` comes last, with `pages`."""
        if item.id in self._at:
            raise ValueError(f"item {item.id} is already in the order")
        if len(self._items) >= 32 and 2 * len(self._at) < len(self._items):
            self._compact()
        pos = len(self._items)
        self._items.append(item)
        self._pages.append(pages)
        self._at[item.id] = pos
        i = pos + 1  # the new node covers (i - lowbit(i), i]
        self._tree.append(pages + self._prefix(i - 1) - self._prefix(i - (i & -i)))

    def add(self, item: T, delta: int) -> None:
        """`item`'s pages change by `delta`."""
        pos = self._at[item.id]
        self._pages[pos] += delta
        self._update(pos, delta)

    def remove(self, item: T) -> int:
        """`item` leaves; returns its place, for restore()."""
        pos = self._at.pop(item.id)
        self._update(pos, -self._pages[pos])
        self._pages[pos] = 0
        self._items[pos] = None
        return pos

    def restore(self, item: T, pos: int, pages: int) -> None:
        """`item` comes back to the place remove() gave (nothing was appended in between)."""
        if self._items[pos] is not None or item.id in self._at:
            raise ValueError(f"place {pos} is not the one item {item.id} left")
        self._items[pos] = item
        self._at[item.id] = pos
        self._pages[pos] = pages
        self._update(pos, pages)
        self._head = min(self._head, pos)

    # -- searches ------------------------------------------------------------------------------------------
    def first(self) -> T | None:
        """The oldest item."""
        items = self._items
        while self._head < len(items) and items[self._head] is None:
            self._head += 1
        return items[self._head] if self._head < len(items) else None

    def first_above(self, used: int) -> T | None:
        """The first item whose running sum of pages exceeds `used` (the oldest item when `used` < 0); None when
        the sum of all does not."""
        if used < 0:
            return self.first()
        pos, rest = 0, used
        tree = self._tree
        n = len(self._pages)
        step = 1 << (n.bit_length() - 1) if n else 0
        while step:  # the longest prefix whose sum is at most `used`
            nxt = pos + step
            if nxt <= n and tree[nxt] <= rest:
                pos = nxt
                rest -= tree[nxt]
            step >>= 1
        return self._items[pos] if pos < n else None

    def through(self, item: T) -> int:
        """The running sum of pages up to and including `item`."""
        return self._prefix(self._at[item.id] + 1)

    def last_with_pages(self) -> T | None:
        """The newest item that has pages."""
        total = self.total
        return self.first_above(total - 1) if total > 0 else None

    # -- the tree ------------------------------------------------------------------------------------------
    def _prefix(self, i: int) -> int:
        """Sum of the first i positions."""
        tree = self._tree
        s = 0
        while i > 0:
            s += tree[i]
            i &= i - 1
        return s

    def _update(self, pos: int, delta: int) -> None:
        tree = self._tree
        n = len(tree) - 1
        i = pos + 1
        while i <= n:
            tree[i] += delta
            i += i & -i

    def _compact(self) -> None:
        """Drop the holes, keeping the order; rebuild the tree in O(n)."""
        live = [(item, self._pages[pos]) for pos, item in enumerate(self._items) if item is not None]
        self._items = [item for item, _ in live]
        self._pages = array("q", (pages for _, pages in live))
        self._at = {item.id: pos for pos, (item, _) in enumerate(live)}
        self._head = 0
        tree = array("q", [0])
        tree.extend(self._pages)
        n = len(self._pages)
        for i in range(1, n + 1):
            j = i + (i & -i)
            if j <= n:
                tree[j] += tree[i]
        self._tree = tree
