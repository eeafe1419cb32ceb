"""The drivers type-check with mypy and pydantic's plugin (configuration: pyproject.toml [tool.mypy])."""

from __future__ import annotations

from typecheck import run


def test_drivers_are_mypy_clean():
    proc = run(("balloonsim.drivers",))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout
