"""A child process that ends with the process that started it, however that one ends (SIGKILL included).

Used by the simulation workers (`--jobs N`, `--dask local`) and by the analysis' figure drawers, so that killing
only the runner leaves no process of balloonsim behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import threading
import time

PR_SET_PDEATHSIG = 1


def die_with_runner(runner_pid: int) -> None:
    """End this worker as soon as the runner (`runner_pid`) ends, however it ends, so that killing only the
    runner leaves no worker behind.

    A worker forked from the forkserver is the forkserver's child, and the forkserver lives as long as any of
    its children holds its pipe, so neither the parent-death signal nor a closed queue would end it: a daemon
    thread waits on a pidfd of the runner (Linux 5.3; a once-a-second check elsewhere) and exits the process.
    The parent-death signal is armed as well, for a worker whose parent is the runner itself."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the thread below still ends the worker
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
    try:
        pidfd = os.pidfd_open(runner_pid)
    except (OSError, AttributeError):
        pidfd = None
        if not _alive(runner_pid):
            os._exit(1)
    threading.Thread(
        target=_exit_when_gone, args=(runner_pid, pidfd), name="balloonsim-runner-watch", daemon=True
    ).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit_when_gone(pid: int, pidfd: int | None) -> None:
    if pidfd is not None:
        select.select([pidfd], [], [])  # readable once the process has exited
    else:
        while _alive(pid):
            time.sleep(1.0)
    os._exit(1)
