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
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def long_lived_set_aside() -> Iterator[None]:
    """The objects alive now kept out of the collector's walks until the block ends; what becomes garbage meanwhile
    among them is collected afterwards. A caller that set them aside already (anything frozen) keeps them so: a
    nested block, or one in another thread, changes nothing."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def set_aside_for_good() -> None:
    """For a worker process whose imports are done: what it holds now stays out of the collector's walks for the
    rest of its life, while its runs' garbage is collected as it comes. (Set aside per run instead, a run's
    garbage still uncollected when the next began would be set aside with it, and never collected.)"""
    gc.freeze()
