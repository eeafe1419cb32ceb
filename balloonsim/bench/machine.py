"""The machine under the figures: what it is, how much memory we used, and how much others used meanwhile.

The host is shared (other containers on the same VM are invisible to `ps` but not to /proc/stat) and its vCPUs'
speed varies, so every figure is the best of several tries, every goal a ratio of figures measured side by
side, and each section reports what other processes used while it ran.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[2]


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM), MiB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def children_peak_rss_mib() -> float:
    """The largest peak RSS among this process's waited-for children (0 if none), MiB."""
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def machine() -> dict[str, Any]:
    """Where the figures came from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 1
    mem_gib = None
    try:
        with open("/proc/meminfo") as fh:
            mem_gib = round(int(fh.readline().split()[1]) / 2**20, 1)  # MemTotal, kB
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 1,
        "usable_cores": usable,
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "simpy": _simpy_version(),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git": _git_revision(),
    }


def _simpy_version() -> str:
    """Imported here, not at the top: a sweep's cold start (balloonsim.bench.sweep_point) uses this module."""
    import simpy

    return simpy.__version__


def _git_revision() -> str | None:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}{' (with uncommitted changes)' if dirty else ''}"


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def own_cpu_s() -> float:
    """CPU seconds used by this process and its waited-for children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _host_cpu() -> tuple[float, float] | None:
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat (None elsewhere)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / hz, steal / hz


class CpuWatch:
    """How much of the machine others used while we measured: host busy CPU (/proc/stat) minus ours.

    Processes of other containers on the same VM are invisible to `ps` but not to /proc/stat."""

    def __init__(self) -> None:
        self.t0, self.own0, self.host0 = time.perf_counter(), own_cpu_s(), _host_cpu()

    def result(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        own = own_cpu_s() - self.own0
        host = _host_cpu()
        out: dict[str, Any] = {"wall_s": wall, "own_cpu_s": own, "cores": os.cpu_count() or 1}
        if host is not None and self.host0 is not None and wall > 0:
            busy, steal = host[0] - self.host0[0], host[1] - self.host0[1]
            out["others_cores"] = max(0.0, busy - own) / wall  # average cores busy with other work
            out["steal_cores"] = steal / wall
        return out


def wait_quiet(max_wait_s: float, below_cores: float = 0.15, window_s: float = 2.0) -> float | None:
    """Wait (at most `max_wait_s`) until other processes use fewer than `below_cores` cores over `window_s`;
    the last window's figure (None without /proc/stat)."""
    deadline = time.monotonic() + max_wait_s
    while True:
        watch = CpuWatch()
        time.sleep(window_s)
        others = watch.result().get("others_cores")
        if others is None or others < below_cores or time.monotonic() >= deadline:
            return others


def best_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return min(runs, key=lambda r: r[key])
