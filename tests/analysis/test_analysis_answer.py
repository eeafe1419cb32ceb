"""The first section answers the experiment's question, and every sentence in it is regenerable from the CSVs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_synth import planted, write_results

from balloonsim.analysis import analyze, finish
from balloonsim.analysis.answer import answer, answer_section, question_of
from balloonsim.analysis.findings import from_comparisons, read_text_columns
from balloonsim.analysis.load import load
from balloonsim.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.parent for p in (ROOT / "results").glob("*/REPORT.md"))


def regenerated(root: Path) -> list[str]:
    """The answer made from the directory's comparisons.csv and its experiment alone."""
    comp = read_text_columns(pd.read_csv(root / "comparisons.csv"))
    results = load(root)
    return answer(comp, results.resolve_by(None), results.primary)


def test_answer_is_regenerated_from_the_csvs(finished_dir):
    md = (finished_dir / "REPORT.md").read_text()
    shown = answer_section(md)
    assert shown and shown == regenerated(finished_dir)


@pytest.mark.parametrize("study", SHIPPED, ids=lambda p: p.name)
def test_shipped_answers_are_regenerated_from_their_csvs(study):
    md = (study / "REPORT.md").read_text()
    assert answer_section(md) == regenerated(study)
    assert question_of(md) == load(study).question != ""


def _asked(root: Path, question: str, primary: list[str]) -> Path:
    meta = json.loads((root / "metadata.json").read_text())
    meta.setdefault("source", {}).setdefault("resolved", {}).update({"question": question, "primary": primary})
    (root / "metadata.json").write_text(json.dumps(meta))
    return root


def test_the_question_and_primary_metrics_lead(tmp_path):
    root = _asked(planted(tmp_path / "q"), "Does kmalloc kill more tasks?", ["stall_fraction", "oom_kills"])
    md = finish(root)[0].read_text()
    assert "**Question.** Does kmalloc kill more tasks?" in md
    first, second = answer_section(md)[:2]
    assert first.startswith("Stall fraction: no difference between any two levels")  # primary, in its order
    assert second.startswith("**kmalloc**: ") and "more OOM kills than **altmap**" in second
    assert "95% CI" in second and "Holm p" in second and "n = 20 vs 20 runs" in second


def test_an_unknown_primary_metric_is_a_user_error(tmp_path):
    root = _asked(planted(tmp_path / "bad"), "?", ["oom_kill"])
    with pytest.raises(UserError, match=r"metadata.json: primary: 'oom_kill' is not a metric of these runs"):
        analyze(root)
    assert not (root / "summary.csv").exists()  # nothing written


def _placement(tmp_path) -> Path:
    """kmalloc's memmap is all kmalloc'd by definition; altmap,kmalloc falls back sometimes."""
    rng = np.random.default_rng(8)
    rows = []
    for strategy in ("kmalloc", "altmap", "altmap,kmalloc"):
        for _ in range(12):
            fallback = strategy == "altmap,kmalloc" and rng.random() < 0.5
            kmalloc = 64 << 20 if strategy == "kmalloc" else (2 << 20 if fallback else 0)
            rows.append({"memmap.strategy": strategy, "memmap_bytes_kmalloc": kmalloc, "guest_crashed": False})
    return write_results(
        tmp_path / "taut", pd.DataFrame(rows), ["memmap.strategy"], ["memmap_bytes_kmalloc", "guest_crashed"]
    )


def test_a_strategy_s_own_definition_is_no_finding(tmp_path):
    analysis = analyze(_placement(tmp_path))
    comp = analysis.comparisons
    taut = comp[comp["metric"] == "memmap_bytes_kmalloc"].set_index(["a", "b"])["tautology"]
    assert taut[("kmalloc", "altmap")] and taut[("kmalloc", "altmap,kmalloc")] and taut[("altmap", "altmap,kmalloc")]
    texts = [f.text for f in from_comparisons(comp, analysis.by)]
    assert not any("**kmalloc**: " in t and "kmalloc'd memmap" in t for t in texts)
    md = finish(analysis.results.path)[0].read_text()
    assert "Not findings, because a strategy's definition fixes them" in md and "kmalloc'd memmap" in md


def _deaths(tmp_path) -> Path:
    """altmap dies in every xen run and in half the hyperv runs; its OOM kills would look tiny if counted."""
    rows = []
    for strategy in ("kmalloc", "altmap"):
        for driver in ("xen", "hyperv"):
            for i in range(10):
                dead = strategy == "altmap" and (driver == "xen" or i % 2 == 0)
                rows.append(
                    {
                        "memmap.strategy": strategy,
                        "driver.name": driver,
                        "guest_crashed": dead,
                        "crash_time_s": 30.0 if dead else np.nan,
                        "oom_kills": 0 if dead else 5 + i % 3,
                    }
                )
    metrics = ["guest_crashed", "crash_time_s", "oom_kills"]
    return write_results(tmp_path / "dead", pd.DataFrame(rows), ["memmap.strategy", "driver.name"], metrics)


def test_dead_guests_count_only_in_survival(tmp_path):
    analysis = analyze(_deaths(tmp_path))
    comp = analysis.comparisons.set_index(["metric", "regime"])
    xen = comp.loc[("oom_kills", "driver.name=xen")]
    assert xen["test"] == "no survivors" and xen["winner"] == "" and xen["n_b"] == 0 and xen["runs_b"] == 10
    hyperv = comp.loc[("oom_kills", "driver.name=hyperv")]
    assert (hyperv["n_a"], hyperv["runs_a"], hyperv["n_b"], hyperv["runs_b"]) == (10, 10, 5, 10)
    assert hyperv["mean_b"] > 5  # the survivors' kills, not the dead guests' zeros
    crash = comp.loc[("guest_crashed", "driver.name=hyperv")]
    assert (crash["n_a"], crash["n_b"]) == (10, 10)  # survival itself: every run
    sentences = answer(analysis.comparisons, analysis.by, ["guest_crashed", "oom_kills"])
    dead = [s for s in sentences if s.startswith("**altmap**: no guest survived when driver.name = xen")]
    assert dead and "(all 10 runs died)" in dead[0] and "each regime" not in dead[0]  # one regime: no "each"
    assert not any("fewer OOM kills" in s or "more OOM kills than **altmap**" in s for s in sentences)
    summary = analysis.summary.set_index(["memmap.strategy", "driver.name", "metric"])
    assert summary.loc[("altmap", "hyperv", "oom_kills"), ["runs", "n"]].tolist() == [10, 5]


def test_regime_conditions_name_what_the_compared_regimes_share(tmp_path):
    """altmap survives only on hyperv: a finding there says so rather than naming the delay alone."""
    rng = np.random.default_rng(4)
    rows = []
    for strategy in ("kmalloc", "altmap"):
        for driver in ("xen", "hyperv"):
            for delay in (0, 30):
                for _ in range(8):
                    dead = strategy == "altmap" and driver == "xen"
                    lam = 9.0 if strategy == "kmalloc" and delay == 30 else 1.0
                    rows.append(
                        {
                            "memmap.strategy": strategy,
                            "driver.name": driver,
                            "onlining.delay": delay,
                            "guest_crashed": dead,
                            "oom_kills": rng.poisson(lam),
                        }
                    )
    factors = ["memmap.strategy", "driver.name", "onlining.delay"]
    root = write_results(tmp_path / "shared", pd.DataFrame(rows), factors, ["guest_crashed", "oom_kills"])
    analysis = analyze(root)
    oom = [f.text for f in from_comparisons(analysis.comparisons, analysis.by) if f.metric == "oom_kills"]
    assert len(oom) == 1 and "when driver.name = hyperv and onlining.delay = 30" in oom[0]
