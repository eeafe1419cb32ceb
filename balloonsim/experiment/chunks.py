"""How many runs to hand a worker at once.

Each hand-over costs the same whatever it carries (a round trip through a pipe or Dask's scheduler, a future,
a wake-up of the runner), so runs that take milliseconds are handed over in chunks. A chunk aims at
`target_s` of work, from the run times measured so far (the CPU time each run took in its worker, which other
processes on a shared host do not inflate as they do wall time): the first chunks hold one run each, and the
size follows the observed time per run. Near the end chunks shrink again, so that the workers finish together rather
than one of them running a long last chunk alone. A chunk's runs are still committed one by one as the chunk
comes back; an interrupted batch loses at most the chunks in flight (a few times `target_s` per worker).
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable

from balloonsim.units import div_round_up

TARGET_S = 0.5  # of work (CPU) per chunk: long next to a hand-over (~1-5 ms), short next to a batch
MAX_RUNS = 256  # per chunk, whatever the run time: bounds what one chunk holds in memory
WINDOW = 64  # recent run times the size follows (a median: a slow first run or an outlier does not steer it)


class ChunkSizer:
    """The size of the next chunk, from the run times seen so far and the runs still to hand out."""

    def __init__(self, workers: int, target_s: float = TARGET_S, max_runs: int = MAX_RUNS, chunked: bool = True):
        self.workers = max(1, workers)
        self.target_s = target_s
        self.max_runs = max_runs if chunked else 1
        self._times: deque[float] = deque(maxlen=WINDOW)

    def observe(self, run_times: Iterable[float]) -> None:
        self._times.extend(t for t in run_times if t > 0)

    @property
    def per_run_s(self) -> float | None:
        """The typical run time so far (None before any run came back)."""
        return statistics.median(self._times) if self._times else None

    def next_size(self, remaining: int) -> int:
        """Runs for the next chunk when `remaining` runs are still to be handed out."""
        if self.max_runs == 1 or not self._times:
            return 1
        per_run = self.per_run_s or self.target_s
        size = max(1, round(self.target_s / per_run))
        # the tail: at most a share of what is left, so that every worker gets some of it
        size = min(size, max(1, div_round_up(remaining, 2 * self.workers)))
        return min(size, self.max_runs)
