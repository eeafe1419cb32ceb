"""One measurement in a fresh interpreter, so that its peak RSS and its imports are its own.

The parent runs `python -m balloonsim.bench TASK-JSON` (balloonsim/bench/__main__.py) and reads one JSON line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def run_child(task: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """Run one task in a fresh interpreter (`python -m balloonsim.bench TASK-JSON`); its JSON result."""
    cmd = [sys.executable, "-m", "balloonsim.bench", json.dumps(task)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])
