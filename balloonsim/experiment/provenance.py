"""Where results came from: balloonsim version and git commit, Python and key package versions, the host.

Written into metadata.json so that a results directory found months later says what produced it.
"""

from __future__ import annotations

import importlib.metadata
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

KEY_PACKAGES = (
    "simpy",
    "numpy",
    "pandas",
    "scipy",
    "pyarrow",
    "pydantic",
    "dask",
    "distributed",
    "click",
    "tqdm",
)


def now() -> str:
    """UTC time in ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def balloonsim_version() -> str:
    version = package_version("balloonsim")
    if version:
        return version
    try:
        import balloonsim

        return str(getattr(balloonsim, "__version__", "unknown"))
    except ImportError:
        return "unknown"


def git_state(directory: Path, outputs: Path | None = None) -> dict[str, Any]:
    """Commit and whether the work tree had uncommitted changes; empty when not in a git checkout. Changes inside
    `outputs` (the results directory being written, when the checkout tracks it, as results/ does) do not count:
    a study re-run in place has replaced its own files by then, and they are not what produced it."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=directory, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    pathspec = []
    top = git("rev-parse", "--show-toplevel") if outputs is not None else None
    if top and outputs is not None:
        try:
            inside = Path(outputs).resolve().relative_to(Path(top).resolve())
        except ValueError:  # written outside the checkout: nothing to leave out
            inside = None
        if inside is not None and inside.parts:
            pathspec = ["--", ":(top)", f":(top,exclude){inside.as_posix()}"]
    status = git("status", "--porcelain", "--untracked-files=no", *pathspec)
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def environment(outputs: Path | None = None) -> dict[str, Any]:
    """What produced results written to `outputs` (see git_state())."""
    source_dir = Path(__file__).resolve().parents[1]
    return {
        "balloonsim": balloonsim_version(),
        "git": git_state(source_dir, outputs),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "packages": {name: package_version(name) for name in KEY_PACKAGES},
    }
