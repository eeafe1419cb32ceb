"""What the garbage collector walks: the objects alive before a piece of work are set aside (gc.freeze) while it
runs, and what the work makes stays collectable."""

from __future__ import annotations

import gc
import weakref

from balloonsim import collector
from balloonsim.collector import long_lived_set_aside, set_aside_for_good
from balloonsim.experiment.design import RunSpec
from balloonsim.experiment.worker import execute_chunk


class _Node:
    pass


def _garbage_cycle() -> weakref.ref:
    """A reference cycle nobody holds: only a collection that walks it frees it."""
    node = _Node()
    node.me = node
    return weakref.ref(node)


def test_a_block_sets_aside_what_was_alive_and_collects_what_it_makes():
    gc.disable()  # no automatic collection in between: each one here is the test's
    try:
        before = _garbage_cycle()
        with long_lived_set_aside():
            assert gc.get_freeze_count() > 0
            inside = _garbage_cycle()
            gc.collect()
            assert inside() is None  # made during the work: collected
            assert before() is not None  # set aside: not walked
        assert gc.get_freeze_count() == 0
        gc.collect()
        assert before() is None  # given back, and collected
    finally:
        gc.enable()


def test_a_block_inside_another_changes_nothing():
    with long_lived_set_aside():
        frozen = gc.get_freeze_count()
        with long_lived_set_aside():
            _garbage_cycle()
        assert gc.get_freeze_count() == frozen  # the inner block neither froze more nor gave anything back
    assert gc.get_freeze_count() == 0


def test_objects_frozen_by_someone_else_do_not_stop_a_block():
    """CPython 3.12 starts with objects of its own frozen (gc.get_freeze_count() is 375 on 3.12.1 before any
    code runs): a block must still set aside what is alive, and give it back."""
    gc.disable()
    try:
        gc.freeze()  # frozen before any block, as the interpreter's own
        before = _garbage_cycle()
        with long_lived_set_aside():
            gc.collect()
            assert before() is not None  # set aside by the block: not walked
        gc.collect()
        assert before() is None
    finally:
        gc.unfreeze()
        gc.enable()


def test_a_block_after_set_aside_for_good_gives_nothing_back(monkeypatch):
    monkeypatch.setattr(collector, "_for_good", False)  # restored after the test: this process is no worker
    gc.disable()
    try:
        set_aside_for_good()
        frozen = gc.get_freeze_count()
        with long_lived_set_aside():
            pass
        # the worker's imports stay set aside: a give-back would empty the permanent generation. (Not an exact
        # count: another thread of this test process can free a few frozen objects meanwhile; CI saw 2 of 265,776.)
        assert gc.get_freeze_count() > frozen // 2
    finally:
        gc.unfreeze()
        gc.enable()


def test_a_workers_runs_leave_what_it_set_aside_as_it_was_and_their_garbage_collectable(monkeypatch):
    """A worker sets its imports aside once; its runs (SimPy's processes and events are reference cycles) must
    neither set anything aside nor give anything back: set aside per run, a run's garbage still uncollected when
    the next began would be frozen with it, and never collected."""
    config = {"duration": "2m", "guest": {"boot": "2G", "max_addr": "8G"}, "workload": {"name": "bursts"}}
    specs = [
        RunSpec(run_id=f"r{seed}", index=0, replicate=seed, factors={}, config=config, seed=seed) for seed in range(3)
    ]
    monkeypatch.setattr(collector, "_for_good", False)  # restored after the test: this process is no worker
    gc.disable()
    try:
        set_aside_for_good()
        frozen = gc.get_freeze_count()
        chunk = execute_chunk(specs)
        assert all(outcome.ok for outcome in chunk.outcomes)
        # nothing set aside since, and nothing given back (a few set-aside objects may have been freed meanwhile)
        assert 0.9 * frozen < gc.get_freeze_count() <= frozen
        left = _garbage_cycle()
        gc.collect()
        assert left() is None
    finally:
        gc.unfreeze()
        gc.enable()
