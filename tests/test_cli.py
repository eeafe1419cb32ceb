"""The root command starts fast: it knows its commands without importing them, and each imports only its own.

Import promises are checked in fresh interpreters (this test process has imported everything), by running the
CLI from a small driver that then prints the modules it loaded. Time itself is measured in
benchmarks/startup.py, never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import click
import pytest
from click.testing import CliRunner

from balloonsim.cli import cli
from balloonsim.commands import COMMANDS

HEAVY = ("numpy", "pandas", "scipy", "matplotlib", "pyarrow", "simpy", "dask", "distributed", "pydantic")

DRIVER = textwrap.dedent(
    """
    import json, sys
    from balloonsim.cli import main
    try:
        main({argv!r})
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    print(json.dumps({{"code": code, "modules": sorted(sys.modules)}}), file=sys.stderr)
    """
)


def loaded_by(*argv: str) -> set[str]:
    """The modules a fresh interpreter has loaded after `balloonsim ARGV` (which must succeed)."""
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER.format(argv=list(argv))], capture_output=True, text=True, timeout=120
    )
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report["code"] in (0, None), proc.stdout + proc.stderr
    return set(report["modules"])


def _top_level(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize("argv", [["--version"], ["--help"]])
def test_the_root_command_imports_no_command(argv):
    modules = loaded_by(*argv)
    assert not _top_level(modules) & set(HEAVY), sorted(_top_level(modules) & set(HEAVY))
    ours = {m for m in modules if m.startswith("balloonsim")}
    assert ours == {"balloonsim", "balloonsim.cli", "balloonsim.commands", "balloonsim.environ", "balloonsim.errors"}


def test_hotplug_imports_the_kernel_model_only():
    modules = loaded_by("hotplug", "--boot", "2G", "--size", "1G", "--at", "4G", "--strategy", "altmap")
    assert not _top_level(modules) & (set(HEAVY) - {"pydantic"})  # strategies' parameters are pydantic models
    allowed = (
        "balloonsim.kernel",
        "balloonsim.memmap",
        "balloonsim.hotplug",
        "balloonsim.hotplug_cli",
        "balloonsim.units",
        "balloonsim.types",
        "balloonsim.errors",
        "balloonsim.registry",  # the registry strategies are found in
        "balloonsim.scenario",  # the guest section: one guest configuration for scenarios and hotplug
        "balloonsim.cli_options",
        "balloonsim.cli",
        "balloonsim.commands",
        "balloonsim.environ",  # what every command sets before numpy loads (standard library only)
    )
    ours = {m for m in modules if m.startswith("balloonsim.")}
    assert {m for m in ours if not m.startswith(allowed)} == set()
    assert "balloonsim.kernel.guest" in ours and "balloonsim.memmap.altmap" in ours


def test_bench_help_does_not_import_the_measurements():
    modules = loaded_by("bench", "--help")
    assert not _top_level(modules) & set(HEAVY)
    assert "balloonsim.bench.suite" not in modules


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_commands_help_imports_no_heavy_library(name):
    """`balloonsim CMD --help` costs click and the command's module: the analysis commands load pandas and
    scipy only once they run (their package, balloonsim.analysis, loads its steps on first use), and `hotplug`
    its strategies and the scenario's guest table (pydantic): its help needs the kernel model's defaults only."""
    modules = loaded_by(name, "--help")
    assert not _top_level(modules) & set(HEAVY), sorted(_top_level(modules) & set(HEAVY))
    if name == "hotplug":
        assert "balloonsim.hotplug" not in modules and "balloonsim.kernel.guest" in modules


def test_each_command_is_where_the_table_says_with_its_docstring_sentence():
    for name, ref in COMMANDS.items():
        command = ref.load()
        assert isinstance(command, click.Command) and command.name == name
        assert command.get_short_help_str(limit=10**6) == ref.short_help


def test_help_lists_the_same_as_with_every_command_loaded():
    """The lazy listing matches click's own, which reads each loaded command's docstring."""
    lazy = subprocess.run(
        [sys.executable, "-m", "balloonsim.cli", "--help"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    eager = click.Group(
        cli.name,
        commands=[ref.load() for ref in COMMANDS.values()],
        help=cli.help,
        params=cli.params,
        context_settings=cli.context_settings,
    )
    shown = CliRunner().invoke(eager, ["--help"], prog_name="balloonsim").output
    assert lazy == shown
    assert all(f"\n  {name} " in lazy for name in COMMANDS)


def test_unknown_command_is_refused():
    result = CliRunner().invoke(cli, ["hotplgu"])
    assert result.exit_code == 2
    assert "No such command 'hotplgu'" in result.output


def test_the_last_collection_at_exit_is_skipped():
    import gc

    from balloonsim.cli import skip_final_collection

    before = gc.get_freeze_count()
    try:
        skip_final_collection()
        assert gc.get_freeze_count() > before  # what the exit's collection would have walked is frozen
    finally:
        gc.unfreeze()


def test_every_command_settles_its_environment_first():
    """`balloonsim` sets one BLAS thread and Arrow's system allocator (balloonsim/environ.py) before any command
    runs, for every command (the analysis reads its tables through pyarrow too), unless the user set them."""
    from balloonsim.environ import SETTINGS

    code = (
        "import json, os\nfrom balloonsim.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps({{name: os.environ.get(name) for name in {sorted(SETTINGS)!r}}}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS} | {"OMP_NUM_THREADS": "3"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {**SETTINGS, "OMP_NUM_THREADS": "3"}
