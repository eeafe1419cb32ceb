"""Fixtures: synthetic results directories with known answers (see analysis_synth.py)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# Let the tests run from a clean clone without `pip install -e .` and import their helper module.
if importlib.util.find_spec("balloonsim") is None:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import analysis_synth as synth  # noqa: E402


@pytest.fixture
def planted_dir(tmp_path: Path) -> Path:
    return synth.planted(tmp_path / "planted")


@pytest.fixture(scope="session")
def realistic_master(tmp_path_factory) -> Path:
    """Written once per session; tests that modify it take a copy (realistic_dir)."""
    return synth.realistic(tmp_path_factory.mktemp("realistic") / "quickstart", seeds=10)


@pytest.fixture(scope="session")
def finished_dir(realistic_master: Path, tmp_path_factory) -> Path:
    """A realistic directory after `finish`: CSVs, plots and the report, made once for every reader."""
    from balloonsim.analysis import finish

    target = tmp_path_factory.mktemp("finished") / "quickstart"
    shutil.copytree(realistic_master, target)
    finish(target)
    return target


@pytest.fixture
def realistic_dir(realistic_master: Path, tmp_path: Path) -> Path:
    target = tmp_path / "quickstart"
    shutil.copytree(realistic_master, target)
    return target
