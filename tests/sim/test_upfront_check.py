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

BAD_LEVELS = [
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


@pytest.mark.parametrize(("factor", "expected"), BAD_LEVELS, ids=["virtio-mem-region", "auto-online-4.19"])
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
