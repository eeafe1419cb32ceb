"""The `slow` marker of the experiment tests (end-to-end batches; they still run by default)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: end-to-end runs of real batches (seconds each); run by default")
