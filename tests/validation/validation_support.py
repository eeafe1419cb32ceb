"""Paths shared by the validation tests; puts the repository on sys.path for the (uninstalled) harness."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RECORDED = REPO / "validation" / "recorded"
KNOWN = REPO / "validation" / "known-disagreements.toml"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
