"""The kernel model, the memmap strategies and the drivers type-check with mypy and pydantic's plugin
(configuration: pyproject.toml [tool.mypy])."""

from __future__ import annotations

import pytest
from typecheck import run


@pytest.mark.parametrize("package", ["balloonsim.kernel", "balloonsim.memmap", "balloonsim.drivers"])
def test_package_is_mypy_clean(package):
    proc = run((package,))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout
