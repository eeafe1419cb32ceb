"""What no kernel release does stays labelled from runs.csv to the report: comparisons.csv carries each side's
departures (what_if_a, what_if_b), a finding or a no-survivors sentence naming such a side ends with a What-if
note, and REPORT.md lists the departures with the configurations that carry them. The simulation writes the
departures (balloonsim.sim.world: a strategy never merged, a driver passing MHP_MEMMAP_ON_MEMORY its kernel code
never passes); a report that left them out would present a proposal as what a kernel does."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from analysis_synth import write_results

from balloonsim.analysis import analyze
from balloonsim.analysis.answer import answer, answer_section
from balloonsim.analysis.findings import findings, no_survivors, what_if_numbers
from balloonsim.analysis.report import read_comparisons, write_report

HV = "driver hyperv passes MHP_MEMMAP_ON_MEMORY (no release of its kernel code does)"
HINT = "memmap subrange-hint: the usable-subrange hint to add_memory() (proposed 2018, never merged)"
N = 12


def _study(tmp_path, crash_hyperv_altmap: bool = False, what_if: bool = True):
    """kmalloc, altmap and subrange-hint under a DIMM and hv_balloon: altmap is the kernel's own for the DIMM and a
    what-if for hv_balloon, subrange-hint a what-if everywhere. kmalloc has more OOM kills than both, everywhere;
    with `crash_hyperv_altmap` every hv_balloon guest with altmap dies."""
    rng = np.random.default_rng(3)
    rows = []
    for strategy, driver in itertools.product(["kmalloc", "altmap", "subrange-hint"], ["dimm", "hyperv"]):
        departure = "; ".join(
            d
            for d, on in ((HV, strategy == "altmap" and driver == "hyperv"), (HINT, strategy == "subrange-hint"))
            if on
        )
        dead = crash_hyperv_altmap and strategy == "altmap" and driver == "hyperv"
        for _ in range(N):
            row = {
                "memmap.strategy": strategy,
                "driver.name": driver,
                "guest_crashed": int(dead),
                "oom_kills": np.nan if dead else rng.poisson(9.0 if strategy == "kmalloc" else 1.0),
            }
            if what_if:
                row["what_if"] = departure
            rows.append(row)
    factors = ["memmap.strategy", "driver.name"]
    return write_results(tmp_path / "study", pd.DataFrame(rows), factors, ["guest_crashed", "oom_kills"])


def _reported(root):
    """analyze, then REPORT.md without figures (they say nothing of what-ifs)."""
    write_report(analyze(root))
    return root


def test_comparisons_carry_each_sides_departures_per_regime(tmp_path):
    comp = read_comparisons(_reported(_study(tmp_path)))
    oom = comp[comp["metric"] == "oom_kills"]
    side = {}
    for row in oom.itertuples():
        side[(row.regime, row.a)] = row.what_if_a
        side[(row.regime, row.b)] = row.what_if_b
    hv = next(r for r, _ in side if "hyperv" in r)
    dimm = next(r for r, _ in side if "dimm" in r)
    assert side[(hv, "altmap")] == HV
    assert side[(dimm, "altmap")] == ""  # the same level is a kernel's own under another driver
    assert side[(hv, "subrange-hint")] == side[(dimm, "subrange-hint")] == HINT
    assert side[(hv, "kmalloc")] == side[(dimm, "kmalloc")] == ""


def test_a_finding_about_a_what_if_says_so_and_one_about_kernels_does_not(tmp_path):
    analysis = analyze(_study(tmp_path))
    numbers = what_if_numbers(analysis.comparisons)
    assert set(numbers) == {HV, HINT}
    texts = [f.text for f in findings(analysis) if "OOM kills" in f.text]
    hint = next(t for t in texts if "**subrange-hint**" in t)
    assert f"What-if (*What no kernel does*): **subrange-hint** ({numbers[HINT]})." in hint
    altmap = next(t for t in texts if "**altmap**" in t and "**subrange-hint**" not in t)
    assert f"**altmap** ({numbers[HV]})" in altmap  # its hv_balloon regime is a what-if
    assert "**kmalloc** (" not in " ".join(texts)  # kmalloc is what the kernels do


def test_only_the_regimes_of_the_finding_count(tmp_path):
    """With every hv_balloon guest on altmap dead, altmap's OOM finding rests on the DIMM alone: no What-if for it;
    the sentence saying those guests all died names the departure."""
    analysis = analyze(_study(tmp_path, crash_hyperv_altmap=True))
    numbers = what_if_numbers(analysis.comparisons)
    altmap = [f.text for f in findings(analysis) if "OOM kills" in f.text and "**altmap**" in f.text]
    assert altmap and all("What-if" not in t for t in altmap)
    dead = no_survivors(analysis.comparisons, analysis.by)
    assert len(dead) == 1 and dead[0].startswith("**altmap**: no guest survived")
    assert dead[0].endswith(f"What-if (*What no kernel does*): **altmap** ({numbers[HV]}).")


def test_the_report_lists_each_departure_with_where_it_holds(tmp_path):
    root = _reported(_study(tmp_path))
    report = (root / "REPORT.md").read_text()
    section = report.split("\n## What no kernel does\n", 1)[1].split("\n## ", 1)[0]
    numbers = what_if_numbers(read_comparisons(root))
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(lines) == 2
    hv = next(line for line in lines if HV in line)
    assert hv.startswith(f"- ({numbers[HV]}) {HV} — {N} of {6 * N} runs: ")
    assert "`memmap.strategy` = altmap" in hv and "`driver.name` = hyperv" in hv
    hint = next(line for line in lines if HINT in line)
    assert f"{2 * N} of {6 * N} runs: `memmap.strategy` = subrange-hint." in hint  # under both drivers
    # the answer, read back from comparisons.csv alone, is the report's word for word, What-if notes included
    comp = read_comparisons(root)
    assert answer_section(report) == answer(comp, "memmap.strategy", [])
    assert any("What-if" in s for s in answer_section(report))


def test_results_without_departures_have_no_such_section(tmp_path):
    for what_if in (True, False):  # a column of blanks, or none (results written before the column existed)
        root = _study(tmp_path / str(what_if), what_if=what_if)
        if what_if:
            runs = pd.read_csv(root / "runs.csv")
            runs["what_if"] = ""
            runs.to_csv(root / "runs.csv", index=False)
        report = (_reported(root) / "REPORT.md").read_text()
        assert "## What no kernel does" not in report and "What-if (" not in report


def test_a_departure_that_comes_with_the_regime_is_said_of_the_regime(tmp_path):
    """Compared along onlining.agent, a what-if strategy is a regime, not a level: both sides of each of its
    comparisons carry it, and the note says so instead of calling the agents what-ifs."""
    rng = np.random.default_rng(5)
    rows = []
    for agent, strategy in itertools.product(["offline", "udev"], ["kmalloc", "subrange-hint"]):
        for _ in range(N):
            rows.append(
                {
                    "onlining.agent": agent,
                    "memmap.strategy": strategy,
                    "oom_kills": rng.poisson(9.0 if agent == "offline" else 1.0),
                    "what_if": HINT if strategy == "subrange-hint" else "",
                }
            )
    root = write_results(tmp_path / "agents", pd.DataFrame(rows), ["onlining.agent", "memmap.strategy"], ["oom_kills"])
    analysis = analyze(root, by="onlining.agent")
    (text,) = [f.text for f in findings(analysis) if "OOM kills" in f.text]
    n = what_if_numbers(analysis.comparisons)[HINT]
    assert text.startswith("**onlining.agent = offline**")
    assert text.endswith(f"What-if (*What no kernel does*): every side's runs, in the regimes with departure {n}.")


def test_the_notes_number_departures_over_the_whole_table_as_the_section_does(tmp_path):
    """A departure seen first in a row that can make no finding (a tautology, a pair without survivors) keeps its
    number: the notes and the report's section count over the same comparisons.csv."""
    from balloonsim.analysis.findings import from_comparisons

    comp = analyze(_study(tmp_path)).comparisons.copy()
    comp.loc[0, "tautology"] = True
    comp.loc[0, "what_if_b"] = "memmap x: a departure only this row shows"
    numbers = what_if_numbers(comp)
    assert numbers["memmap x: a departure only this row shows"] == 1
    hint = next(f.text for f in from_comparisons(comp, "memmap.strategy") if "**subrange-hint** (" in f.text)
    assert f"**subrange-hint** ({numbers[HINT]})" in hint and numbers[HINT] != 1
