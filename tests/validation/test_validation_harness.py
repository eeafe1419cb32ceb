"""The harness's pure parts (no QEMU): apt sources, module dependencies, QEMU's command line, the cases."""

from __future__ import annotations

import pytest
import validation_support  # noqa: F401  (puts the harness on sys.path)

from validation.harness import record as rec_mod
from validation.harness.cases import all_cases, get_cases
from validation.harness.packages import mirrors_from_sources, module_closure
from validation.harness.qemu import BootFailed, MachineSpec, qemu_argv


def test_mirrors_from_deb822_and_one_line_sources():
    deb822 = (
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n"
    )
    assert mirrors_from_sources([deb822]) == ("http://mirror.example/debian", "http://mirror.example/debian-security")
    one_line = "deb [arch=amd64] http://m.example/debian/ trixie main\n"
    assert mirrors_from_sources([one_line]) == ("http://m.example/debian", None)
    with pytest.raises(RuntimeError, match="no Debian mirror"):
        mirrors_from_sources(["deb https://packages.example/apt cloud-sdk main\n"])


def test_module_closure_loads_dependencies_first(tmp_path):
    mods = tmp_path / "kernel" / "drivers"
    mods.mkdir(parents=True)
    (mods / "virtio_mem.ko").write_bytes(b"\x7fELF...\x00license=GPL\x00depends=virtio,virtio_ring\x00")
    (mods / "virtio.ko").write_bytes(b"\x7fELF\x00depends=virtio_ring\x00")
    (mods / "virtio_ring.ko").write_bytes(b"\x7fELF\x00depends=\x00")
    order = [name for name, _ in module_closure(tmp_path, ["virtio_mem", "virtio_pci"])]
    assert order == ["virtio_ring", "virtio", "virtio_mem"]  # virtio_pci: built in (no .ko)


def test_qemu_argv_numa_and_virtio_mem():
    spec = MachineSpec(numa_mem_mib=[2048, 0], virtio_mem={"id": "vm0", "size_mib": 4096, "node": 1})
    argv = qemu_argv(spec, "vmlinuz", "initrd", "/w")
    joined = " ".join(argv)
    assert "-accel tcg" in joined and "-cpu max,la57=off" in joined
    assert "node,nodeid=0,cpus=0-0,memdev=ram0" in joined and "node,nodeid=1,cpus=1-1" in joined
    assert "virtio-mem-pci,id=vm0,memdev=vm0-mem,node=1,requested-size=0" in joined
    assert "virtio-blk" not in joined


def test_qemu_argv_swap_disk(tmp_path):
    """A case's swap disk: a sparse raw file of its size in the guest's work directory, as /dev/vda."""
    argv = qemu_argv(MachineSpec(swap_mib=1024), "vmlinuz", "initrd", str(tmp_path))
    joined = " ".join(argv)
    assert f"file={tmp_path}/swap.img,if=none,id=swap,format=raw" in joined and "virtio-blk-pci,drive=swap" in joined
    assert (tmp_path / "swap.img").stat().st_size == 1024 << 20


def test_cases():
    cases = all_cases()
    names = [c.name for c in cases]
    assert len(names) == len(set(names)) >= 16
    for c in cases:
        steps = [s for s in c.steps if s["do"] != "sysctl"]  # settings come first, before the idle noise
        assert c.steps[: len(c.steps) - len(steps)] == [s for s in c.steps if s["do"] == "sysctl"]
        assert steps[0]["do"] == "idle" and steps[1] == {"do": "snap", "phase": "boot"}
        assert any(t.startswith("memory_hotplug.memmap_on_memory=") for t in c.machine.cmdline)
        assert any(t.startswith("memhp_default_state=") for t in c.machine.cmdline)
        phases = [s["phase"] for s in c.steps if s["do"] == "snap"]
        assert len(phases) == len(set(phases))
        if any(s["do"] == "fill" and "size_mib" in s for s in c.steps):  # beyond memory: only with swap to go to
            assert c.machine.swap_mib and [s["do"] for s in c.steps].index("swapon") < c.steps.index(
                next(s for s in c.steps if s["do"] == "fill")
            )
        elif any(s["do"] == "anon" for s in c.steps):  # the OOM killer: dd is killed, then the file emptied
            anon = next(i for i, s in enumerate(c.steps) if s["do"] == "anon")
            assert [s["do"] for s in c.steps[anon:]] == ["anon", "release", "snap"]
            assert c.steps.index(next(s for s in c.steps if s["do"] == "fill")) < anon and not c.machine.swap_mib
        elif any(s["do"] == "fill" for s in c.steps):  # under pressure: no process started while the DIMM is added
            fill = c.steps.index(next(s for s in c.steps if s["do"] == "fill"))
            release = c.steps.index({"do": "release"})
            adds = [i for i, s in enumerate(c.steps[:release]) if s["do"] == "dimm_add" and i > fill]
            holds = [s for s in c.steps[fill:release] if s["do"] == "hold"]
            assert holds or adds  # a hot-add under pressure, or a process's page tables
            assert all(c.steps[i]["quiet"] for i in adds) and (not adds or adds[-1] + 1 == release)
    assert sum(c.name.startswith("pressure-") for c in cases) >= 4
    assert sum(c.name.startswith("oom-anon-") for c in cases) == 2
    with pytest.raises(KeyError, match="unknown case 'nope'"):
        get_cases(["nope"])


def test_a_guest_that_does_not_boot_is_booted_once_more_and_a_case_that_fails_is_not(monkeypatch, tmp_path):
    """Under TCG about one boot in 40 of Debian's 6.18 oopses before init: nothing of the case ran, so the harness
    boots again; a failure after the guest is up is the case's own, reported and not retried."""
    kernel = type("K", (), {"label": "6.18"})()
    monkeypatch.setattr(rec_mod, "ensure_host_tools", lambda log: None)
    monkeypatch.setattr(rec_mod, "fetch_kernels", lambda labels, log: {"6.18": kernel})
    boots: dict[str, int] = {}

    def record_case(case, kernel, log):
        boots[case.name] = boots.get(case.name, 0) + 1
        if case.name == "dimm-128M-movable" and boots[case.name] == 1:
            raise BootFailed("QEMU did not start a guest (the guest closed its control port)")
        if case.name == "dimm-128M-kernel":
            raise RuntimeError("a step failed")
        return {"case": case.name, "kernel": kernel.label, "provenance": {"uname_r": "6.18.15+deb13-amd64"}}

    monkeypatch.setattr(rec_mod, "record_case", record_case)
    lines: list[str] = []
    written, failed = rec_mod.record(["dimm-128M-movable", "dimm-128M-kernel"], ["6.18"], tmp_path, lines.append)
    assert [p.name for p in written] == ["dimm-128M-movable--6.18.json"]
    assert boots == {"dimm-128M-movable": 2, "dimm-128M-kernel": 1}
    assert [f[:2] for f in failed] == [("dimm-128M-kernel", "6.18")]
    assert any("did not boot" in line and "booting again" in line for line in lines)
