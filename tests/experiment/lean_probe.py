"""A run function for worker-import tests: the real simulator's run, plus which heavy libraries its worker had
loaded by the end. Kept apart from experiment_fakes, which imports pandas itself."""

from __future__ import annotations

import sys
from typing import Any

from balloonsim.experiment.worker import simulate_run

HEAVY = ("pandas", "pyarrow", "scipy", "matplotlib", "distributed")


def probe_run(config: dict[str, Any], seed: int) -> Any:
    result = simulate_run(config, seed)
    for name in HEAVY:
        result.metrics[f"{name}_loaded"] = name in sys.modules
    return result


def loaded_modules() -> list[str]:
    """The modules the calling worker process has loaded (before any run)."""
    return sorted(sys.modules)
