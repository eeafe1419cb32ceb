"""An experiment names the factor its report compares along (`compare`); the memmap strategy is the default."""

from __future__ import annotations

import pandas as pd
from analysis_synth import write_results

from balloonsim.analysis.load import load


def _results(tmp_path, experiment_toml: str):
    rows = [
        {"memmap.strategy": s, "onlining.agent": a, "oom_kills": float(i % 3 + (a == "auto"))}
        for i, (s, a) in enumerate((s, a) for s in ("kmalloc", "altmap") for a in ("auto", "offline") for _ in range(4))
    ]
    root = write_results(tmp_path / "r", pd.DataFrame(rows), ["memmap.strategy", "onlining.agent"], ["oom_kills"])
    (root / "experiment.toml").write_text(experiment_toml)
    return load(root)


def test_the_stated_axis_is_compared(tmp_path):
    assert _results(tmp_path, 'name = "r"\ncompare = "onlining.agent"\n').resolve_by(None) == "onlining.agent"


def test_without_it_the_strategy_is(tmp_path):
    assert _results(tmp_path, 'name = "r"\n').resolve_by(None) == "memmap.strategy"
