"""Run mypy on balloonsim packages as installed, where drivers/ is balloonsim.drivers.

mypy finds modules by path and cannot follow setuptools' package-dir mapping (nor the editable install's
import hook), so this lays out a tree of symlinks in which balloonsim/drivers is the repository's drivers/,
and runs mypy there with the repository's configuration (pyproject.toml [tool.mypy]).

    python tests/packaging/typecheck.py [PACKAGE ...]     # default: balloonsim.drivers
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ("balloonsim.drivers",)


def link_tree(dest: Path) -> Path:
    """dest/balloonsim: every entry of balloonsim/ linked, plus drivers/ linked as balloonsim/drivers."""
    pkg = dest / "balloonsim"
    pkg.mkdir()
    for entry in (ROOT / "balloonsim").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    (pkg / "drivers").symlink_to(ROOT / "drivers")
    return dest


def run(packages: tuple[str, ...] = DEFAULT) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as tmp:
        tree = link_tree(Path(tmp))
        args = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
        args += ["--cache-dir", str(ROOT / ".mypy_cache")]
        for package in packages:
            args += ["-p", package]
        return subprocess.run(args, cwd=tree, capture_output=True, text=True)


if __name__ == "__main__":
    proc = run(tuple(sys.argv[1:]) or DEFAULT)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    sys.exit(proc.returncode)
