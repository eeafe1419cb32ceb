"""Table-valued and boolean factor levels are spelled one readable way everywhere, in design order."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from analysis_synth import table_factor

from balloonsim.analysis import analyze, finish
from balloonsim.analysis.labels import design_levels, label_column, level_text
from balloonsim.analysis.load import load
from balloonsim.analysis.plot_factor import x_positions
from balloonsim.experiment.levels import level_label
from balloonsim.scenario import size_keys

XEN_FIRST = "xen populate_memmap_first=true"
HYPERV = "hyperv request_offset=2M"


@pytest.mark.parametrize(
    ("factor", "value", "text"),
    [
        ("driver", {"name": "hyperv", "request_offset": "2M"}, HYPERV),
        ("driver", '{"name":"xen","populate_memmap_first":true}', XEN_FIRST),
        ("driver", '{"populate_memmap_first":false,"name":"xen"}', "xen populate_memmap_first=false"),
        ("driver", {"name": "dimm", "dimm_size": 1 << 30}, "dimm dimm_size=1G"),
        ("driver", {"node": 1, "opts": {"a": 1, "b": True}}, "node=1 opts={a=1 b=true}"),
        ("host.steps", '[[30,"3G"],[300,"5G"]]', "[[30, 3G], [300, 5G]]"),
        ("guest.movable_node", True, "true"),
        ("guest.block_size", 128 << 20, "128M"),
        ("onlining.delay", 5.0, "5"),
        ("onlining.delay", 0.25, "0.25"),
        ("onlining.delay", float("nan"), "n/a"),
        ("memmap.strategy", "altmap,kmalloc", "altmap,kmalloc"),
        ("memmap.strategy", "{not json", "{not json"),
    ],
)
def test_level_text(factor, value, text):
    assert level_text(factor, value) == text


@pytest.mark.parametrize(
    "key", ["guest.swap", "guest.boot", "host.maximum", "driver.request_offset", "workload.task_size"]
)
def test_the_scenarios_size_keys_are_known_from_its_types(key):
    assert key in size_keys()


@pytest.mark.parametrize("key", sorted(size_keys()))
def test_every_size_key_of_the_scenario_is_spelled_as_a_size(key):
    # guest.swap = [0, "2G"] once came out as "2147483648" in titles, ticks and table columns
    section, name = key.split(".")
    assert level_text(key, 2 << 30) == "2G"
    assert level_label(key, 2 << 30) == "2G"  # the runner's label agrees with the reports'
    assert level_text(section, {"name": "x", name: 2 << 30}) == f"x {name}=2G"


def test_a_count_is_not_a_size():
    assert level_text("driver.batch_pages", 2 << 30) == str(2 << 30)


SIMULATOR = ("balloonsim.scenario", "balloonsim.registry", "balloonsim.kernel", "balloonsim.sim", "balloonsim.drivers")


def test_an_analysis_whose_sizes_are_named_so_never_loads_the_simulator(realistic_dir):
    """is_size reads a key's name before the scenario's types: asking the types imports the scenario, pydantic and
    every plugin, the simulator with them (0.2 s of the quickstart's 2 s analysis), and a study whose sizes all say
    so in their names (block_size, request_offset, *_bytes) never needs them."""
    code = (
        "import json, sys\n"
        "from balloonsim.analysis import finish\n"
        "from balloonsim.analysis.pipeline import quiet\n"
        f"finish({str(realistic_dir)!r}, progress=quiet)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    modules = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert (realistic_dir / "REPORT.md").is_file()
    assert {m for m in modules if m.startswith(SIMULATOR)} == set()
    assert not {"pydantic", "simpy"} & modules


def test_design_key_order_wins_over_json_order():
    design = [{"request_offset": "2M", "name": "hyperv", "agent": "udev"}]
    col = pd.Series(['{"agent":"udev","name":"hyperv","request_offset":"2M"}'])
    # the name heads the label; the other keys follow the experiment file, not JSON's sorted order
    assert label_column("driver", col, design).tolist() == ["hyperv request_offset=2M agent=udev"]


def test_design_levels_from_a_file_as_written():
    """experiment.toml as TOML parses it: `driver.node = [...]` is nested, a table level stays a table."""
    spec = {"factors": {"driver": {"node": [0, 1]}, "memmap.strategy": ["kmalloc"], "host": [{"name": "mom"}]}}
    assert design_levels(spec) == {"driver.node": [0, 1], "memmap.strategy": ["kmalloc"], "host": [{"name": "mom"}]}
    assert design_levels({}) == {} and design_levels({"factors": 3}) == {}


def test_loaded_levels_are_labels_in_design_order(tmp_path):
    results = load(table_factor(tmp_path / "tables"))
    assert results.levels("driver") == [XEN_FIRST, HYPERV, "xen"]
    assert results.levels("memmap.strategy") == ["kmalloc", "altmap"]
    assert results.levels("guest.movable_node") == ["false", "true"]
    _, ticks, numeric = x_positions(results, "driver")
    assert not numeric and [t.replace("\n", " ") for t in ticks] == [XEN_FIRST, HYPERV, "xen"]


def test_no_json_anywhere_in_the_outputs(tmp_path):
    root = table_factor(tmp_path / "tables")
    finish(root)
    summary = (root / "summary.csv").read_text()
    comparisons = (root / "comparisons.csv").read_text()
    md = (root / "REPORT.md").read_text()
    page = (root / "report.html").read_text()
    index = (root / "plots" / "index.json").read_text()
    for text in (summary, comparisons, md, page, index):
        assert '{"' not in text and "&quot;name" not in text
    assert XEN_FIRST in summary and XEN_FIRST in comparisons
    assert "True" not in md and "False" not in md  # booleans in TOML spelling
    assert f"| factor `driver` | {XEN_FIRST}, {HYPERV}, xen |" in md
    assert "| factor `guest.movable_node` | false, true |" in md
    assert "`guest.hugepages` = true" in md
    # the conditions of findings name levels by their label, in design order
    assert f"when driver ∈ {{{HYPERV}, xen}}" in md or f"except when driver = {XEN_FIRST}" in md
    comp = pd.read_csv(root / "comparisons.csv")
    assert set(comp["driver"]) == {XEN_FIRST, HYPERV, "xen"}
    assert set(comp["regime"].str.split(", ").str[0]) == {f"driver={d}" for d in (XEN_FIRST, HYPERV, "xen")}
    titles = " ".join(e["title"] + e["caption"] for e in json.loads(index)["figures"])
    assert "populate_memmap_first=True" not in titles


def test_by_a_table_valued_factor(tmp_path):
    root = table_factor(tmp_path / "tables")
    comp = analyze(root, by="driver").comparisons
    assert set(comp["a"]) | set(comp["b"]) == {XEN_FIRST, HYPERV, "xen"}
    assert {(a, b) for a, b in zip(comp["a"], comp["b"], strict=True)} == {
        (XEN_FIRST, HYPERV),
        (XEN_FIRST, "xen"),
        (HYPERV, "xen"),
    }
