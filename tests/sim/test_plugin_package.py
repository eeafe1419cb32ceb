"""An out-of-tree driver and memmap strategy, from their own package, work without any edit to balloonsim.

tests/plugin_pkg is such a package: it declares `one-shot` (balloonsim.drivers) and `wholly-backed`
(balloonsim.memmap) as entry points. It is installed with pip (offline: no build isolation, no dependencies)
into a temporary directory that a fresh interpreter gets on its path, as a site-packages would be.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[1] / "plugin_pkg"
SCRIPT = Path(sys.executable).with_name("balloonsim")

RUN = """
import json
import re
from balloonsim import simulate
base = {"duration": "5m", "guest": {"boot": "2G"}, "onlining": {"agent": "auto"}, "workload": {"name": "idle"},
        "host": {"controller": "static", "target": "3G"}}
one_shot, hyperv = {"name": "one-shot", "size": "512M", "at": 30}, {"name": "hyperv", "request_offset": "64M"}
out = {}
for driver, strategy in ((one_shot, "wholly-backed"), (one_shot, "kmalloc"), (hyperv, "wholly-backed"),
                         (hyperv, "altmap")):
    m = simulate({**base, "driver": driver, "memmap": {"strategy": strategy}}, seed=1).metrics
    out[driver["name"] + "/" + strategy] = m
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory, pip_install_target) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("plugin")
    src = tmp / "src"
    shutil.copytree(PLUGIN, src)  # the build writes build/ and *.egg-info next to the sources
    return pip_install_target(src, tmp / "site")


def test_plugins_run_and_change_the_result(site):
    proc = subprocess.run([sys.executable, "-c", RUN], env=site, capture_output=True, text=True, check=True)
    m = json.loads(proc.stdout)
    one_shot = m["one-shot/wholly-backed"]
    assert one_shot["one_shot_added_bytes"] == 512 << 20 and one_shot["hotadd_ok"] == 1
    # a DIMM is wholly backed: its memmap goes in the added range, none from online memory
    assert one_shot["memmap_bytes_in_range"] == 4 * (2 << 20) and one_shot["memmap_bytes_kmalloc"] == 0
    assert m["one-shot/kmalloc"]["memmap_bytes_in_range"] == 0
    assert m["one-shot/kmalloc"]["memmap_bytes_kmalloc"] == 4 * (2 << 20)
    # Hyper-V backs its first chunk from 64M on: altmap puts that chunk's memmap on unbacked memory and the
    # guest crashes; wholly-backed takes the memmap of partly backed chunks from online memory, of whole ones
    # from their own range, and the guest lives
    assert m["hyperv/altmap"]["guest_crashed"]
    hyperv = m["hyperv/wholly-backed"]
    assert not hyperv["guest_crashed"] and hyperv["hotadd_ok"] > 1
    assert hyperv["memmap_bytes_kmalloc"] > 0 and hyperv["memmap_bytes_in_range"] > 0
    assert hyperv["memmap_bytes_kmalloc"] + hyperv["memmap_bytes_in_range"] == hyperv["hotadd_ok"] * (2 << 20)


def test_plugin_names_show_in_help_and_its_checks_come_before_any_run(site, tmp_path):
    helptext = subprocess.run([SCRIPT, "simulate", "--help"], env=site, capture_output=True, text=True).stdout
    assert "one-shot" in " ".join(helptext.split()) and "wholly-backed" in " ".join(helptext.split())
    exp = tmp_path / "bad.toml"
    exp.write_text(
        'name = "bad"\n[base]\nduration = "1m"\nmemmap.strategy = "wholly-backed"\n'
        '[factors]\ndriver = [{ name = "one-shot" }, { name = "one-shot", size = "100M" }]\n'
    )
    proc = subprocess.run(
        [SCRIPT, "run", str(exp), "--out", str(tmp_path / "out")], env=site, capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "balloonsim: error: factors.driver[1].size: must be a multiple of the memory block (128M)"
    )
    assert not (tmp_path / "out").exists()


def test_readme_shows_this_package():
    """README's "Extending" quotes tests/plugin_pkg: its entry points and its strategy, line for line."""
    readme = (PLUGIN.parents[1] / "README.md").read_text()
    section = readme[readme.index("## Extending") : readme.index("## Layout")]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.S)
    toml = next(body for lang, body in blocks if lang == "toml")
    pyproject = (PLUGIN / "pyproject.toml").read_text()
    assert toml.strip() in pyproject
    strategy = (PLUGIN / "balloonsim_example" / "strategy.py").read_text()
    shown = next(body for lang, body in blocks if lang == "python" and "WhollyBacked" in body)
    place = shown[shown.index("    def place") :].strip()
    assert place in strategy
