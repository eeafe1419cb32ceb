"""CLI start-up: a few commands as fresh processes against `python -c "import click"`, alternating, best of N.

What a user waits for before a command does any work. benchmarks/startup.py measures every command and
compares installations; this is the short version the suite reports.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

COMMANDS: tuple[tuple[str, ...], ...] = (("--version",), ("run", "--help"), ("hotplug", "--help"))
BASELINE = "python -c 'import click'"


def _wall(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def startup(repeats: int) -> dict[str, Any]:
    """Best wall time (ms) per command, each command's ratio to the baseline in the same rounds."""
    exe = Path(sys.executable).parent / "balloonsim"
    prefix = [str(exe)] if exe.exists() else [sys.executable, "-m", "balloonsim.cli"]
    runs: dict[str, list[str]] = {BASELINE: [sys.executable, "-c", "import click"]}
    runs.update({"balloonsim " + " ".join(c): [*prefix, *c] for c in COMMANDS})
    best: dict[str, float] = {}
    for _ in range(repeats):
        for name, argv in runs.items():
            wall = _wall(argv)
            best[name] = min(best.get(name, wall), wall)
    base = best[BASELINE]
    return {
        "repeats": repeats,
        "commands": {name: {"ms": wall * 1e3, "x_import_click": wall / base} for name, wall in best.items()},
    }
