"""Whatever a driver or an onlining agent can refuse, `balloonsim run` refuses before anything runs or is written.

The components make their checks in their constructors (balloonsim.plugin), and the up-front check builds every
run's world without running it (balloonsim.sim.world.check_run), so such an error is one line naming the key
path where the experiment set the value, with exit status 2 and no output directory.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from balloonsim import registry, simulate
from balloonsim.errors import ConfigError
from balloonsim.sim import simulation, world
from balloonsim.sim.world import build_world, check_run

BAD_LEVELS = [
    (
        # memmap_on_memory=force exists from 6.6 (2d1f649c7c08); 4.19 has no memmap_on_memory at all
        'memmap = [{ strategy = "altmap" }, { strategy = "altmap", mode = "force" }]',
        "factors.memmap[1].mode: 'force' needs a kernel of 6.6 or later; in 4.19 there is no "
        "memory_hotplug.memmap_on_memory",
    ),
    (
        # 100M is a multiple of the 2M device block (Params accepts it) but not of the 128M memory block, which
        # only the built guest knows (virtio_mem_init() refuses the device)
        'driver = [{ name = "virtio-mem" }, { name = "virtio-mem", region_size = "100M" }]',
        "factors.driver[1].region_size: must be a multiple of the memory block size (128M)",
    ),
    (
        # 4.19's auto-online knows only "online" (memhp_auto_online is a bool before 5.x's online_movable)
        'onlining.online_type = ["online", "online_movable"]',
        "factors.onlining.online_type[1]: kernel 4.19 auto-onlines only with online",
    ),
]


@pytest.mark.parametrize(
    ("factor", "expected"), BAD_LEVELS, ids=["altmap-force-4.19", "virtio-mem-region", "auto-online-4.19"]
)
def test_bad_level_exits_2_before_anything_is_written(tmp_path, factor, expected):
    exp = tmp_path / "bad.toml"
    exp.write_text(
        'name = "bad"\nreplications = 1\nseed = 1\n'
        '[base]\nduration = "1m"\nguest.kernel = "4.19"\nguest.boot = "2G"\nonlining.agent = "auto"\n'
        'workload.name = "idle"\ndriver.name = "xen"\n'
        "[factors]\n" + factor + "\n"
    )
    if "virtio-mem" in factor:  # virtio-mem needs 5.8+: the region is the only fault of that level
        exp.write_text(exp.read_text().replace('guest.kernel = "4.19"', 'guest.kernel = "6.12"'))
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("balloonsim")), "run", str(exp), "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.strip() == f"balloonsim: error: {expected}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


@pytest.mark.parametrize(
    ("config", "path", "fragment"),
    [
        ({"driver": {"name": "virtio-mem", "region_size": "100M"}}, "driver.region_size", "memory block size"),
        ({"driver": {"name": "virtio-mem", "region_start": "1G"}}, "driver.region_start", "overlaps boot memory"),
        ({"driver": {"name": "virtio-mem"}, "guest": {"kernel": "4.19"}}, "guest.kernel", "5.8 or later"),
        (
            {"driver": {"name": "virtio-mem", "force_bbm": True, "bbm_block_size": "64M"}},
            "driver.bbm_block_size",
            "too small",
        ),
        ({"driver": {"name": "dimm", "dimm_size": "192M"}}, "driver.dimm_size", "memory block size"),
        ({"driver": {"name": "xen", "node": 1}}, "driver.node", "does not exist"),
        # 6.1.192 mm/memory_hotplug.c l.49-50: module_param(memmap_on_memory, bool): kstrtobool("force") is false
        (
            {"driver": {"name": "dimm"}, "memmap": {"strategy": "altmap", "mode": "force"}, "guest": {"kernel": "6.1"}},
            "memmap.mode",
            "in 6.1 memory_hotplug.memmap_on_memory is a bool: 'force' parses as false",
        ),
        (
            {
                "driver": {"name": "dimm"},
                "memmap": {"strategy": "altmap,kmalloc", "mode": "force"},
                "guest": {"kernel": "4.19"},
            },
            "memmap.mode",
            "6.6 or later; in 4.19 there is no memory_hotplug.memmap_on_memory",
        ),
        (
            {"onlining": {"agent": "auto", "online_type": "online_movable"}, "guest": {"kernel": "4.19"}},
            "onlining.online_type",
            "auto-onlines only with online",
        ),
    ],
)
def test_every_component_check_is_made_by_check_run(config, path, fragment):
    guest = {"boot": "2G", **config.pop("guest", {})}
    with pytest.raises(ConfigError) as err:
        check_run({"duration": "1m", "workload": {"name": "idle"}, "guest": guest, **config})
    assert err.value.path == path
    assert fragment in err.value.message


def test_check_run_builds_without_running():
    """The check constructs the world (so the driver's region is placed) but schedules nothing."""
    sc = check_run({"duration": "1m", "guest": {"boot": "2G"}, "driver": {"name": "virtio-mem"}})
    assert sc.driver.name == "virtio-mem"
    sim = build_world(sc, 0)
    assert sim.env.now == 0 and sim.env.peek() == float("inf")


def test_simulate_validates_and_builds_once(monkeypatch):
    guests, params = [], []
    real_guest, real_validate = world.Guest, registry.validate_params
    monkeypatch.setattr(simulation, "_LOADED", {})  # not a configuration an earlier test validated in this process
    monkeypatch.setattr(world, "Guest", lambda *a, **kw: guests.append(a) or real_guest(*a, **kw))
    monkeypatch.setattr(registry, "validate_params", lambda *a: params.append(a[0]) or real_validate(*a))
    simulate({"duration": "1m", "guest": {"boot": "2G"}, "workload": {"name": "idle"}}, seed=0)
    assert len(guests) == 1
    assert sorted(kind.section for kind in params) == ["driver", "host", "onlining", "workload"]
