"""The registry: every kind comes from entry points only, scanned once per process; names cost no imports."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from balloonsim import registry, simulate
from balloonsim.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_every_builtin_is_an_entry_point_of_balloonsim():
    """The built-ins are declared in pyproject.toml like a third party's, and nowhere else."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    for kind in registry.KINDS:
        assert set(declared[kind.group]) <= set(registry.names(kind)), kind.group
        for name in declared[kind.group]:
            assert hasattr(registry.get_class(kind, name), "Params")


def test_entry_points_are_scanned_once_per_process(monkeypatch):
    calls = []
    real = importlib.metadata.entry_points

    def counting(**kw):
        calls.append(kw)
        return real(**kw)

    monkeypatch.setattr(importlib.metadata, "entry_points", counting)
    registry.refresh()
    try:
        config = {"duration": "1m", "guest": {"boot": "2G"}, "workload": {"name": "idle"}}
        simulate(config, seed=0)
        simulate(config, seed=1)
        assert len(calls) == 1
    finally:
        registry.refresh()


@pytest.mark.parametrize(
    ("kind", "name", "fragment"),
    [
        (registry.DRIVERS, "xenn", "unknown driver 'xenn' (did you mean 'xen'?)"),
        (registry.ONLINING, "udevd", "unknown onlining agent 'udevd' (did you mean 'udev'?)"),
        (registry.CONTROLLERS, "zzz", "unknown host controller 'zzz' (known: hyperv-buffer, mom,"),
    ],
)
def test_unknown_name_names_the_key(kind, name, fragment):
    with pytest.raises(ConfigError) as err:
        registry.get_class(kind, name)
    assert err.value.path == kind.path
    assert fragment in err.value.message


def test_listing_names_imports_no_plugin_module():
    code = (
        "import sys; from balloonsim import registry\n"
        "names = [n for k in registry.KINDS for n in registry.names(k)]\n"
        "assert 'virtio-mem' in names and 'altmap' in names\n"
        "loaded = [m for m in sys.modules if m.startswith(('balloonsim.drivers', 'balloonsim.memmap', "
        "'balloonsim.sim', 'pydantic', 'simpy', 'numpy'))]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_package_imports_that_package_s_plugins_only_and_reports_broken_ones(monkeypatch):
    """What the workers' forkserver preloads (`balloonsim.experiment.worker_plugins`): balloonsim's own plugins,
    not another package's; a plugin that fails to import is named, not raised (the run naming it reports it)."""
    eps = importlib.metadata.EntryPoints(
        [
            importlib.metadata.EntryPoint("kmalloc", "balloonsim.memmap.kmalloc:Kmalloc", "balloonsim.memmap"),
            importlib.metadata.EntryPoint("broken", "balloonsim.memmap.no_such_module:X", "balloonsim.memmap"),
            importlib.metadata.EntryPoint("theirs", "balloonsim_elsewhere.memmap:Theirs", "balloonsim.memmap"),
        ]
    )
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: eps)
    registry.refresh()
    loaded: list[str] = []
    monkeypatch.setattr(
        importlib.metadata.EntryPoint, "load", lambda ep: loaded.append(ep.name) or importlib.import_module(ep.module)
    )
    try:
        assert registry.load_package("balloonsim") == ["balloonsim.memmap:broken"]
        assert loaded == ["kmalloc", "broken"]  # never "theirs": balloonsim_elsewhere is not balloonsim
    finally:
        registry.refresh()
