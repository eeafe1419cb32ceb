"""The cyclic garbage collector kept off the objects that outlive a piece of work.

A process that has imported numpy, pydantic, pandas or Dask holds tens of thousands of long-lived objects, and every
full collection walks them all again (and, in a forked worker, copies the pages it touches). A simulation or an
analysis makes its own objects, many in reference cycles (SimPy's processes and events), and those need collecting;
the imports' do not. `long_lived_set_aside` freezes what is alive when the work starts (gc.freeze: it moves the
collector's lists, whatever their length, in constant time) and gives it back when the work ends, so collections
in between walk only the work's own objects.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Kept here, not read off gc.get_freeze_count(): CPython 3.12 starts with objects of its own frozen (375 static
# tuples on 3.12.1), so a count above zero does not mean that balloonsim set anything aside.
_lock = threading.Lock()
_blocks = 0  # long_lived_set_aside blocks open, in any thread
_for_good = False  # set_aside_for_good was called: nothing is given back any more


@contextmanager
def long_lived_set_aside() -> Iterator[None]:
    """The objects alive now kept out of the collector's walks until the block ends; what becomes garbage meanwhile
    among them is collected afterwards. The first block to open sets aside and the last to close gives back, so a
    nested block, or one in another thread, changes nothing; after set_aside_for_good, no block gives back."""
    global _blocks
    with _lock:
        if _blocks == 0 and not _for_good:
            gc.freeze()
        _blocks += 1
    try:
        yield
    finally:
        with _lock:
            _blocks -= 1
            if _blocks == 0 and not _for_good:
                gc.unfreeze()


def set_aside_for_good() -> None:
    """For a worker process whose imports are done: what it holds now stays out of the collector's walks for the
    rest of its life, while its runs' garbage is collected as it comes. (Set aside per run instead, a run's
    garbage still uncollected when the next began would be set aside with it, and never collected.)"""
    global _for_good
    with _lock:
        _for_good = True
        gc.freeze()
