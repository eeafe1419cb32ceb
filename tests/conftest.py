"""Fixtures more than one test directory uses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings

# The property tests draw the same examples on every run, so CI's verdict never depends on the draw, and keep no
# example database in the checkout. HYPOTHESIS_PROFILE=explore draws afresh each run, to hunt for new failures.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", settings.get_profile("default"))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def pip_install_target() -> Callable[[Path, Path], dict[str, str]]:
    """`install(src, target)`: pip-install the package at `src` (offline, no dependencies) into `target`, a
    directory a fresh interpreter gets on its path as a site-packages would be; returns that interpreter's
    environment. Entry points are install-time metadata, so a plugin package must be installed to be found."""

    def install(src: Path, target: Path) -> dict[str, str]:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target)]
            + [str(src)],
            check=True,
            capture_output=True,
        )
        path = os.pathsep.join(p for p in (str(target), os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "PYTHONPATH": path}

    return install
