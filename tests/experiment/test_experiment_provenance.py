"""Provenance: a study re-run in place is not marked as made from uncommitted code because of its own files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from balloonsim.experiment.provenance import git_state

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=repo, check=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout with a source file and a tracked results directory, all committed."""
    (tmp_path / "src.py").write_text("x = 1\n")
    (tmp_path / "results" / "study").mkdir(parents=True)
    (tmp_path / "results" / "study" / "runs.csv").write_text("run_id\n1\n")
    (tmp_path / "results" / "other.csv").write_text("a\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "start")
    return tmp_path


def test_the_results_being_written_do_not_make_the_checkout_dirty(repo: Path):
    """`balloonsim run --force` into a tracked results/study replaces its files before the metadata is written:
    those changes are left out (git status with an exclude pathspec), so the commit is reported clean."""
    (repo / "results" / "study" / "runs.csv").unlink()  # what --force does first
    assert git_state(repo)["dirty"] is True  # without knowing where the run writes
    state = git_state(repo, outputs=repo / "results" / "study")
    assert state["dirty"] is False and len(state["commit"]) == 40


@pytest.mark.parametrize("changed", ["src.py", "results/other.csv"])
def test_any_other_change_still_makes_it_dirty(repo: Path, changed: str):
    (repo / "results" / "study" / "runs.csv").unlink()
    (repo / changed).write_text("changed\n")
    assert git_state(repo, outputs=repo / "results" / "study")["dirty"] is True


def test_results_written_outside_the_checkout_change_nothing(repo: Path, tmp_path_factory: pytest.TempPathFactory):
    elsewhere = tmp_path_factory.mktemp("out")
    assert git_state(repo, outputs=elsewhere)["dirty"] is False
    (repo / "src.py").write_text("x = 2\n")
    assert git_state(repo, outputs=elsewhere)["dirty"] is True
