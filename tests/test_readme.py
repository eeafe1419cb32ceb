"""README.md's examples stay true: its two commands and the hotplug output it shows."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from balloonsim.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(block) == 2
    assert block[0].endswith("balloonsim run experiments/quickstart.toml")
    assert "pytest" in block[1]
    assert (README.parent / "experiments" / "quickstart.toml").is_file()


def test_readme_hotplug_example_matches_the_cli():
    text = README.read_text()
    m = re.search(r"```console\n\$ balloonsim (hotplug [^\n]*)\n(.*?)```", text, re.S)
    command, shown = m.group(1), m.group(2)
    result = CliRunner().invoke(cli, shlex.split(command))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == shown.strip()
