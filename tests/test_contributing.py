"""CONTRIBUTING.md's snippets stay true: its example plugin package installs and runs as the recipes say, its
example study validates, and every excerpt it quotes from the code is still in the file it names.

A snippet is a ```python or ```toml block whose first line is `# PATH`: a file of the example package when PATH
starts with `my-plugins/`, the example study when it is a new `experiments/*.toml`, else an excerpt of that file
of the repository.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from balloonsim.experiment.design import count_points
from balloonsim.experiment.loader import load_experiment

ROOT = Path(__file__).resolve().parents[1]
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
SNIPPET = re.compile(r"^```(?:python|toml)\n# (\S+)\n(.*?)^```", re.S | re.M)
PACKAGE = "my-plugins/"


def snippets() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in SNIPPET.finditer(CONTRIBUTING.read_text(encoding="utf-8"))]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _package_files() -> dict[str, str]:
    return {path.removeprefix(PACKAGE): body for path, body in snippets() if path.startswith(PACKAGE)}


def _studies() -> list[tuple[str, str]]:
    return [(p, b) for p, b in snippets() if p.startswith("experiments/") and not (ROOT / p).exists()]


def _excerpts() -> list[tuple[str, str]]:
    return [(p, b) for p, b in snippets() if not p.startswith(PACKAGE) and (ROOT / p).exists()]


def test_every_snippet_is_checked():
    found = snippets()
    assert len(found) >= 10
    checked = len(_package_files()) + len(_studies()) + len(_excerpts())
    assert checked == len(found), [p for p, _ in found]
    assert "pyproject.toml" in _package_files() and len(_studies()) == 1


@pytest.mark.parametrize(("path", "body"), _excerpts(), ids=lambda x: x if "\n" not in x else "")
def test_excerpts_are_in_the_files_they_name(path, body):
    """The quoted lines, in order and together, ignoring indentation and blank lines."""
    want = _lines(body)
    have = _lines((ROOT / path).read_text(encoding="utf-8"))
    assert any(have[i : i + len(want)] == want for i in range(len(have) - len(want) + 1)), path


def test_the_example_study_validates(tmp_path):
    (path, body), *_ = _studies()
    file = tmp_path / Path(path).name
    file.write_text(body)
    exp = load_experiment(file)  # every run checked, as `balloonsim run` does
    assert exp.name == file.stem
    assert exp.question.endswith("?") and "\n" not in exp.question and exp.primary
    assert count_points(exp) == 9


@pytest.fixture(scope="module")
def site(tmp_path_factory, pip_install_target) -> dict[str, str]:
    """The example package built from the snippets and installed with pip (offline) into a directory that a fresh
    interpreter gets on its path, as a site-packages would be."""
    tmp = tmp_path_factory.mktemp("contributing")
    src = tmp / "my-plugins"
    for name, body in _package_files().items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(body)
    (src / "my_plugins" / "__init__.py").write_text("")  # "an empty my_plugins/__init__.py"
    return pip_install_target(src, tmp / "site")


RUN = textwrap.dedent(
    """
    import json
    from balloonsim import simulate
    from balloonsim.kernel import Guest, GuestConfig
    from balloonsim.memmap import get_strategy

    out = {}
    # tail-altmap on the kernel model alone: each block's memmap in its last pages
    g = Guest(GuestConfig(boot=[2 << 30], block_size=128 << 20), get_strategy("tail-altmap"))
    g.backing.populate(0x100000, 0x100000 + 0x10000)
    assert g.add_memory(0, 4 << 30, 256 << 20) == 0
    out["in_range"] = [list(b.memmap.in_range) for b in g.blocks.values()]
    out["ends"] = [b.end_pfn for b in g.blocks.values()]
    out["tail"] = simulate(
        {"duration": "10m", "guest": {"boot": "2G"}, "driver": {"name": "dimm"}, "memmap": {"strategy": "tail-altmap"},
         "workload": {"name": "idle"}, "host": {"controller": "static", "target": "4G"}}, seed=1).metrics
    r = simulate(
        {"duration": "30m", "guest": {"boot": "2G"}, "driver": {"name": "xen"},
         "workload": {"name": "staircase"}, "onlining": {"agent": "periodic", "period": 120},
         "host": {"controller": "growth", "maximum": "6G"}}, seed=1)
    out["metrics"] = r.metrics
    ts = r.timeseries.set_index("t")
    out["demand"] = {str(t): int(ts.demand_bytes[t]) for t in (30.0, 630.0, 1500.0)}
    out["target"] = {str(t): int(ts.target_bytes[t]) for t in (30.0, 150.0, 1500.0)}
    ev = r.events
    out["onlined_at"] = sorted(set(ev[ev.kind == "online"].t))
    print(json.dumps(out))
    """
)


def test_the_example_plugins_run_as_the_recipes_say(site):
    proc = subprocess.run([sys.executable, "-c", RUN], env=site, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    # tail-altmap: the memmap (512 pages of a 128 MiB block) is the last 512 pages of each block
    assert out["in_range"] == [[[end - 512, end]] for end in out["ends"]]
    tail = out["tail"]  # two 1 GiB DIMMs, wholly backed: 16 blocks' memmaps in the added range, none kmalloc'd
    assert not tail["guest_crashed"] and tail["hotadd_ok"] == 2
    assert tail["memmap_bytes_in_range"] == 16 * (2 << 20) and tail["memmap_bytes_kmalloc"] == 0
    assert tail["what_if"] == "memmap tail-altmap: the memmap at the end of each hot-added block (no kernel does this)"
    # staircase: 1G + 256M per minute up to 4G; growth: boot 2G + 512M per minute up to the maximum
    assert out["demand"] == {"30.0": 1 << 30, "630.0": (1 << 30) + 10 * (256 << 20), "1500.0": 4 << 30}
    assert out["target"] == {"30.0": 2 << 30, "150.0": 3 << 30, "1500.0": 6 << 30}
    m = out["metrics"]
    assert m["target_end_bytes"] == 6 << 30 and m["blocks_online_end"] > 0 and not m["guest_crashed"]
    # periodic: blocks are onlined only at whole periods of 120 s
    assert out["onlined_at"] and all(t > 0 and t % 120 == 0 for t in out["onlined_at"])


def test_the_command_that_runs_the_example_strategy(site):
    text = " ".join(CONTRIBUTING.read_text(encoding="utf-8").split())
    command = next(c for c in re.findall(r"`(balloonsim simulate [^`]*)`", text) if "tail-altmap" in c)
    script = Path(sys.executable).with_name("balloonsim")
    proc = subprocess.run(
        [str(script), *command.split()[1:], "--json"], env=site, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads(proc.stdout)
    assert m["hotadd_ok"] == 2 and m["memmap_bytes_in_range"] == 32 << 20 and m["memmap_bytes_kmalloc"] == 0
