"""The `what_if` metric: which part of a run no kernel does, empty when the run is the kernel's own behaviour.

No Xen, Hyper-V or virtio-mem code in any release passes MHP_MEMMAP_ON_MEMORY (drivers/xen/balloon.c
add_memory_resource(nid, res, MHP_MERGE_RESOURCE); drivers/hv/hv_balloon.c add_memory(..., MHP_MERGE_RESOURCE);
virtio_mem: MHP_MERGE_RESOURCE | MHP_NID_IS_MGID); ACPI DIMMs do, per release (acpi_memory_enable_device()).
"""

from __future__ import annotations

import pytest

from balloonsim.sim.simulation import simulate


def _run(driver: dict, strategy: str = "kmalloc", kernel: str = "6.12", **guest) -> dict:
    sc = {
        "duration": "3m",
        "guest": {"boot": "2G", "kernel": kernel, **guest},
        "memmap": {"strategy": strategy},
        "driver": driver,
        "workload": {"name": "idle"},
        "onlining": {"agent": "auto"},
        "host": {"controller": "schedule", "steps": [[10, "3G"]]},
    }
    return simulate(sc, 1).metrics


@pytest.mark.parametrize("driver", ["xen", "hyperv", "virtio-mem", "dimm"])
def test_the_kernels_own_behaviour_has_no_what_if(driver):
    assert _run({"name": driver})["what_if"] == ""


@pytest.mark.parametrize("driver", ["xen", "hyperv", "virtio-mem"])
def test_a_balloon_driver_with_memmap_on_memory_is_a_what_if(driver):
    m = _run({"name": driver}, "altmap")
    assert f"driver {driver} passes MHP_MEMMAP_ON_MEMORY" in m["what_if"]
    # the kernel's behaviour: the driver passes no flag, memmap_on_memory=Y changes nothing
    m = _run({"name": driver, "memmap_on_memory": False}, "altmap")
    assert m["what_if"] == "" and m["memmap_bytes_in_range"] == 0


def test_dimm_follows_acpi_per_release():
    # 6.1: a 1 GiB DIMM is not one memory block, so ACPI passes no flag: the ordinary memmap, no -EINVAL
    m = _run({"name": "dimm", "dimm_size": "1G"}, "altmap", kernel="6.1")
    assert m["what_if"] == "" and m["hotadd_einval"] == 0 and m["memmap_bytes_in_range"] == 0
    assert m["hotadd_ok"] == 1 and m["memmap_fallbacks"] == 8
    # forcing the flag is a what-if, and 5.13-6.5's add_memory_resource() refuses it
    m = _run({"name": "dimm", "dimm_size": "1G", "memmap_on_memory": True}, "altmap", kernel="6.1")
    assert "dimm forces MHP_MEMMAP_ON_MEMORY" in m["what_if"] and m["hotadd_einval"] >= 1
    # 6.12: ACPI always passes it and 6.8+ split it per block
    m = _run({"name": "dimm", "dimm_size": "1G"}, "altmap")
    assert m["what_if"] == "" and m["memmap_bytes_in_range"] == 1 << 24


@pytest.mark.parametrize("strategy", ["altmap-range", "subrange-hint", "node-pool"])
def test_strategies_never_merged_are_what_ifs(strategy):
    assert f"memmap {strategy}:" in _run({"name": "dimm"}, strategy)["what_if"]


def test_design_and_accounting_what_ifs():
    m = _run({"name": "xen", "populate_memmap_first": True}, accounting="allocated")
    assert "populates the memmap's share" in m["what_if"] and "guest.accounting allocated" in m["what_if"]


def test_hot_add_metadata_reaches_the_sims_oom_killer():
    """The world wires the guest's GFP_KERNEL OOM path to the simulation's OOM killer (UserMemory)."""
    from balloonsim.scenario import load_scenario
    from balloonsim.sim.simulation import Sim

    sim = Sim(load_scenario({"duration": "1m", "driver": {"name": "dimm"}, "workload": {"name": "idle"}}), 1)
    task = sim.memory.spawn("victim", 1000)
    assert sim.memory.allocate(task, 1000) == 1000
    assert sim.guest.out_of_memory() is True and sim.memory.oom_kills == 1
    assert sim.guest.out_of_memory() is False  # nothing left to kill
