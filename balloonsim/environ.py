"""What the `balloonsim` command sets in its environment first thing, for itself and every process it starts,
before numpy and pyarrow load (`cli.main`, and `experiment.forkserver.start_early` for a batch started from
Python); a value the user has set is kept.

- One BLAS thread (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS), as Dask's nanny sets for its workers
  (`distributed.nanny.pre-spawn-environ`). balloonsim's processes never hand BLAS work big enough to share, but
  OpenBLAS starts a thread per core when numpy is imported, and that thread spins for ~0.1 s of CPU: under
  `--jobs 2` the runner's and the workers' forkserver's spun at the same moment on two cores, and delayed the
  first runs by about 0.1 s.
- Arrow's system allocator (ARROW_DEFAULT_MEMORY_POOL=system) instead of mimalloc: the runner makes a
  short-lived table for every part it writes and decodes them all again for the final merge, the analysis reads
  the tables through pandas, and mimalloc kept what they freed resident. The quickstart's runner peaked at 109 MiB
  with mimalloc and 96 MiB with the system allocator (at four times the runs, 122 and 103 MiB); `balloonsim
  report --redraw` of its results at 176 and 162 MiB.
"""

from __future__ import annotations

import os

SETTINGS = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ARROW_DEFAULT_MEMORY_POOL": "system",
}


def settle() -> None:
    """Set SETTINGS where the user has not: in this process (numpy's BLAS threads and Arrow's allocator read them
    when those libraries load; if they have loaded already, only the processes started from now on follow) and
    in the processes it starts, which inherit them."""
    for name, value in SETTINGS.items():
        os.environ.setdefault(name, value)
