"""Shared fixtures: the committed recordings, parsed once per session."""

from __future__ import annotations

import pytest
from validation_support import RECORDED


@pytest.fixture(scope="session")
def recordings():
    from balloonsim.validate.parse import load_recordings

    return load_recordings(RECORDED)
