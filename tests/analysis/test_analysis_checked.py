"""The report's "Checked against real kernels": each metric of the answer with what the recordings of real kernels
say of it (balloonsim/validate/coverage.json), the metrics no recording measures, and the drivers none runs."""

from __future__ import annotations

from balloonsim.analysis.checked import SECTION, checked_section
from balloonsim.analysis.document import Document, to_markdown
from balloonsim.validate.coverage import load_coverage


def _coverage() -> dict:
    def check(label, rows, agree, known, higher, lower, outcome=False):
        return {
            "label": label,
            "outcome": outcome,
            "rows": rows,
            "cases": 3,
            "kernels": ["6.1", "6.12"],
            "agree": agree,
            "known": known,
            "disagree": rows - agree - sum(known.values()),
            "model_higher": higher,
            "model_lower": lower,
        }

    return {
        "format": 1,
        "recordings": 6,
        "cases": 3,
        "kernels": ["6.1", "6.12"],
        "devices": ["ACPI DIMMs", "virtio-mem"],
        "known": {"2": "the per-cpu lists", "5": "the recording's own slab"},
        "metrics": {
            "hotadd_enomem": {
                "checks": [check("the outcome of each add_memory()", 40, 37, {"5": 1, "2": 2}, 0, 3, True)]
            },
            "memtotal_end_bytes": {"checks": [check("MemTotal", 20, 20, {}, 0, 0)]},
            "memfree_min_bytes": {"checks": [check("MemFree", 10, 4, {"2": 5}, 4, 2)], "note": "the lowest value"},
        },
    }


def _markdown(blocks) -> str:
    return to_markdown(Document("t", blocks))


def test_each_metric_says_how_many_recorded_quantities_agree_and_which_way_the_rest_lean():
    md = _markdown(
        checked_section(["hotadd_enomem", "oom_kills", "memtotal_end_bytes", "memfree_min_bytes"], [], _coverage())
    )
    assert f"## {SECTION}" in md
    assert "6 recordings of Linux 6.1 and 6.12 guests under QEMU (3 cases hot-plugging ACPI DIMMs and virtio-mem)" in md
    assert (
        "- **hot-adds failed with -ENOMEM**: The outcome of each add_memory(): 37 of 40 agree (3 cases); in the "
        "other 3 the kernel's add failed where the model's succeeded (known disagreements [5], [2])." in md
    )
    assert "- **MemTotal at end**: MemTotal: 20 of 20 agree (3 cases)." in md
    # numbers that differ both ways, one row no known disagreement explains, and what the checks leave out
    assert (
        "MemFree: 4 of 10 agree (3 cases); in the other 6 the model's value is higher 4 times and lower 2 times "
        "(known disagreement [2]; 1 not explained). Not checked: the lowest value." in md
    )
    assert "- **OOM kills**: no recording measures it; its findings rest on the model alone." in md
    # the known disagreements met, once each, in their numbering's order
    assert md.index("- [2] the per-cpu lists.") < md.index("- [5] the recording's own slab.")
    assert md.count("- [2] ") == 1


def test_drivers_no_recording_runs_are_named_and_recorded_ones_are_not():
    blocks = checked_section(["oom_kills", "work_done_s"], ["dimm", "hyperv", "xen"], _coverage())
    md = _markdown(blocks)
    assert "**OOM kills** and **work done**: no recording measures them; their findings rest on the model alone." in md
    assert (
        "No recording runs the `hyperv` and `xen` drivers (the recordings hot-plug ACPI DIMMs and virtio-mem only; "
        "validation/README.md says why)" in md
    )
    assert "`dimm`" not in md
    assert "known disagreements named above" not in md
    assert not [b for b in checked_section(["oom_kills"], ["virtio-mem", "dimm"], _coverage()) if "driver" in str(b)]


def test_no_section_without_metrics_or_a_readable_coverage(tmp_path):
    assert checked_section([], ["xen"], _coverage()) == []
    assert checked_section(["oom_kills"], ["xen"], None) == []
    bad = tmp_path / "coverage.json"
    bad.write_text('{"format": 99}')
    assert load_coverage(bad) is None
    bad.write_text("not json")
    assert load_coverage(bad) is None
    assert load_coverage(tmp_path / "missing.json") is None


def test_the_shipped_coverage_reaches_the_report(finished_dir):
    """A study's report carries the section, after the answer, with the shipped figures."""
    md = (finished_dir / "REPORT.md").read_text()
    section = md.split(f"## {SECTION}")[1].split("\n## ")[0]
    assert md.index("## Answer") < md.index(f"## {SECTION}") < md.index("## The experiment")
    shipped = load_coverage()
    assert shipped is not None
    assert f"replays {shipped['recordings']} recordings" in section
    hotadd = shipped["metrics"]["hotadd_enomem"]["checks"][0]
    assert f"{hotadd['agree']} of {hotadd['rows']} agree" in section
    assert "**crash rate**" in section and "rest on the model alone" in section
    assert "No recording runs the `hyperv` and `xen` drivers" in section
