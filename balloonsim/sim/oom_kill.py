"""The OOM killer's choice of victim (mm/oom_kill.c): select_bad_process() over oom_badness(), and the order of
the tasks that lets a run that kills hundreds of times make it without weighing every task at every kill.

oom_badness() (4.19-6.18) is a task's mapped pages (rss + swap entries) plus its page tables, plus oom_score_adj
thousandths of RAM + swap; -1000 is never chosen. oom_evaluate_task() keeps a later task whose points are not
below the chosen one's, so ties go to the task spawned last.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from heapq import heapify, heappop, heappush
from typing import Generic, Protocol, TypeVar

from balloonsim.units import PTRS_PER_TABLE, div_round_up

OOM_SCORE_ADJ_MIN = -1000  # never chosen
# OomOrder rebuilds its heap when it would hold this many times the live tasks (plus REBUILD_SLACK): the entries
# of dead tasks and old counts are otherwise dropped only when they reach the top, and a long run would keep them
REBUILD_FACTOR = 4
REBUILD_SLACK = 1024
# ... and when at least 1/REBUILD_CHANGED of the live tasks changed since the last choice: one heapify of them all
# is then cheaper than a push now and a pop later for each (a guest of a few tasks that kills now and then)
REBUILD_CHANGED = 4


class Mm(Protocol):
    """What the OOM killer reads of a task (balloonsim.sim.memory.Task)."""

    id: int
    rss: int
    swapped: int
    oom_score_adj: int


T = TypeVar("T", bound=Mm)


def mm_pgtables(mapped: int) -> int:
    """mm_pgtables_bytes() / PAGE_SIZE for `mapped` pages: a PTE page per 512 of them, a PMD page per 512 PTE
    pages."""
    ptes = div_round_up(mapped, PTRS_PER_TABLE)
    return ptes + div_round_up(ptes, PTRS_PER_TABLE)


def select_bad_process(tasks: list[T], totalpages: int, adjusted: Iterable[T] | None = None) -> T | None:
    """select_bad_process() (mm/oom_kill.c, 4.19-6.18): the task of highest oom_badness(), ties to the later one;
    None when no killable task maps a page or has a positive oom_score_adj. `tasks` in the order they were spawned
    (their ids rising); `adjusted`: those of them with an oom_score_adj, when the caller keeps them (else found
    here).

    The same choice as `Task.badness` of each task in turn (tests/sim/test_swap.py holds it to that), by a scan:
    without an oom_score_adj, the points grow with the pages a task maps, so the last task of most pages wins
    among those; the few tasks with an adjustment are then weighed against it one by one."""
    plain = [t.rss + t.swapped if not t.oom_score_adj else 0 for t in tasks]
    most = max(plain, default=0)
    best = tasks[len(plain) - 1 - plain[::-1].index(most)] if most else None
    return weigh_adjusted(best, [t for t in tasks if t.oom_score_adj] if adjusted is None else adjusted, totalpages)


def weigh_adjusted(best: T | None, adjusted: Iterable[T], totalpages: int) -> T | None:
    """The victim: `best`, the choice among the tasks without an oom_score_adj, or one of `adjusted` whose
    oom_badness() is higher (or equal and the task later)."""
    mapped = best.rss + best.swapped if best is not None else 0
    best_points = mapped + mm_pgtables(mapped)
    adj_unit = totalpages // 1000
    for t in adjusted:
        mapped = t.rss + t.swapped
        # a task that maps nothing still has an mm: with a positive adjustment its points are positive (oom_badness()
        # adds adj * totalpages / 1000 to whatever it maps; 6.12.118 mm/oom_kill.c l.232-238)
        if t.oom_score_adj > OOM_SCORE_ADJ_MIN and (mapped or t.oom_score_adj > 0):
            points = mapped + mm_pgtables(mapped) + t.oom_score_adj * adj_unit
            if best is None or points > best_points or (points == best_points and t.id > best.id):
                best, best_points = t, points
    return best


class OomOrder(Generic[T]):
    """The live tasks without an oom_score_adj, most mapped pages first and the later of equals first: the top
    is select_bad_process()'s choice among them. A scan of every task at every kill was 29 % of the quickstart's
    CPU (~590 kills over ~170 tasks a run); here a kill pushes the tasks that changed since the last one and
    drops the stale entries it meets.

    Whoever changes a task's rss + swapped adds the task to `changed` (a set: one cheap add per allocation, as
    most runs allocate far more often than they kill). The next choice pushes their counts then; entries are never
    changed in place, and one whose count is no longer its task's (a task that exits maps nothing) is dropped when
    it reaches the top. `tasks`: the live tasks by id (the caller's dict, read when the heap is rebuilt)."""

    def __init__(self, tasks: Mapping[int, T]):
        self._tasks = tasks
        self._heap: list[tuple[int, int, T]] = []
        self.changed: set[T] = set()

    def top(self) -> T | None:
        """The last task of most mapped pages among those without an oom_score_adj; None if none maps a page."""
        changed = self.changed
        if changed:
            live = len(self._tasks)
            if (
                len(changed) * REBUILD_CHANGED >= live
                or len(self._heap) + len(changed) > REBUILD_FACTOR * live + REBUILD_SLACK
            ):
                self._rebuild()
            else:
                for task in changed:
                    if (pages := task.rss + task.swapped) and not task.oom_score_adj:
                        heappush(self._heap, (-pages, -task.id, task))
            changed.clear()
        heap = self._heap
        while heap:
            pages, _, task = heap[0]
            if task.rss + task.swapped == -pages:
                return task
            heappop(heap)
        return None

    def choose(self, totalpages: int, adjusted: Iterable[T]) -> T | None:
        """select_bad_process(tasks, totalpages, adjusted), from the top of the order."""
        return weigh_adjusted(self.top(), adjusted, totalpages)

    def _rebuild(self) -> None:
        self._heap = [
            (-pages, -t.id, t) for t in self._tasks.values() if not t.oom_score_adj and (pages := t.rss + t.swapped)
        ]
        heapify(self._heap)
