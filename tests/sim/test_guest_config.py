"""One guest configuration: a scenario's [guest] table, `balloonsim hotplug` and the kernel model share one set of
defaults (GuestConfig's) and one conversion (GuestSection.config())."""

from __future__ import annotations

import pytest

from balloonsim.errors import ConfigError
from balloonsim.hotplug import HotplugSpec, run_hotplug
from balloonsim.kernel import GuestConfig
from balloonsim.kernel.profiles import DEFAULT_KERNEL
from balloonsim.scenario import GuestSection, Scenario, load_scenario
from balloonsim.units import GiB


def test_the_defaults_are_the_kernel_models():
    cfg = GuestConfig()
    assert cfg.boot == [4 * GiB] and cfg.max_addr == 64 * GiB and cfg.kernel == DEFAULT_KERNEL
    assert Scenario().guest.config() == cfg
    assert load_scenario({}).guest.config() == cfg
    assert HotplugSpec().guest().config() == cfg


def test_every_guest_key_reaches_the_kernel_config():
    section = GuestSection(
        kernel="5.12",
        boot=["2G", "2G"],
        extra_nodes=1,
        max_addr="128G",
        block_size="256M",
        hypervisor=False,
        movable_node=True,
        debug_vm=True,
        accounting="allocated",
        direct_gbpages=False,
        la57=True,
        kernel_reserved="64M",
        page_cache="1G",
        online_policy="auto-movable",
        auto_movable_ratio=100,
        swap="1G",
        swappiness=100,
        swap_bandwidth="500M",
        swap_latency="1ms",
        vcpus=4,
        auto_movable_numa_aware=False,
        transparent_hugepage="madvise",
    )
    cfg = section.config()
    for name in GuestSection.model_fields:
        assert getattr(cfg, name) == getattr(section, name), name
        assert getattr(cfg, name) != getattr(GuestConfig(), name), f"{name} is not exercised"


def test_hotplug_default_range_is_the_first_free_block_above_boot_memory():
    """4 GiB of boot RAM is 0-3G and 4G-5G (the PCI hole): the default DIMM goes at 5G, where a driver's
    allocate_resource() would put it; 2 GiB of boot RAM leaves it at 4G (the RFC's qemu example)."""
    rep = run_hotplug(HotplugSpec())
    assert rep.calls[0] == ("add_memory(nid=0, start=0x140000000, size=0x40000000)", 0)
    rep = run_hotplug(HotplugSpec(boot=[2 * GiB]))
    assert rep.calls[0] == ("add_memory(nid=0, start=0x100000000, size=0x40000000)", 0)


def test_hotplug_guest_is_validated_like_a_scenario():
    with pytest.raises(ConfigError, match="multiple of 2M"):
        run_hotplug(HotplugSpec(boot=[(2 * GiB) + 4096]))
