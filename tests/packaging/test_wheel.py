"""What the wheel installs: `balloonsim` and nothing else at the top level, with every package of the tree in it.

drivers/ lives at the top of the repository but is installed as balloonsim.drivers (setuptools package-dir); a
top-level `drivers` in site-packages would collide, unseen by pip, with any other distribution that ships one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import distribution
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {"balloonsim": ROOT / "balloonsim", "balloonsim.drivers": ROOT / "drivers"}


def source_packages() -> dict[str, Path]:
    """Every package directory of the tree, by the dotted name it installs as."""
    out: dict[str, Path] = {}
    for name, base in SOURCES.items():
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            if "__pycache__" not in rel:
                out[".".join((name, *rel))] = init.parent
    return out


def test_pyproject_lists_every_package():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert sorted(tool["packages"]) == sorted(source_packages())
    assert tool["package-dir"] == {"balloonsim.drivers": "drivers"}


def test_installed_distribution_has_one_top_level_name():
    top = distribution("balloonsim").read_text("top_level.txt")
    assert top is not None and top.split() == ["balloonsim"]


def test_wheel_holds_balloonsim_only_and_every_module(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("balloonsim", "drivers"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("balloonsim-*.whl")
    files = zipfile.ZipFile(wheel).namelist()
    assert {f.split("/")[0] for f in files if ".dist-info/" not in f} == {"balloonsim"}
    expected = {
        "/".join((*pkg.split("."), py.name)) for pkg, path in source_packages().items() for py in path.glob("*.py")
    }
    assert expected <= set(files)
    assert "balloonsim/drivers/base.py" in expected
    assert "balloonsim/validate/coverage.json" in files  # what the reports say of the validation
