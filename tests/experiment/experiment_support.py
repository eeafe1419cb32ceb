"""Paths and subprocess helpers for the end-to-end experiment tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"


def balloonsim_command() -> list[str]:
    """The `balloonsim` command of this checkout, run with this interpreter."""
    return [sys.executable, "-m", "balloonsim.cli"]


def subprocess_env() -> dict[str, str]:
    """The environment for a `balloonsim` subprocess: this checkout importable whether installed or not."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env
