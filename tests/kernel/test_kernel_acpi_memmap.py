"""ACPI DIMMs and memmap_on_memory per release, and what `balloonsim hotplug` (an ACPI DIMM) says about it.

acpi_memory_enable_device() (drivers/acpi/acpi_memhotplug.c): no flag before 5.13; 5.13-6.5 the flag only
`if (mhp_supports_memmap_on_memory(info->length))`, i.e. a DIMM of exactly one memory block (4a3e5de9c4ec);
from 6.6 always, add_memory_resource() falling back to the ordinary memmap (e3c2bfdd33a3); from 6.8 a DIMM of
several blocks gets one altmap per block (6b8f0798b85a). The -EINVAL of add_memory_resource() is only for a
caller that forces the flag. Recorded on Debian under QEMU (validation/recorded/, memmap_on_memory=1):
6.1, 1 GiB DIMM: MemFree -16384 kB at add, MemTotal +1048576 kB online (the ordinary memmap);
6.1, 128 MiB DIMM: MemTotal +129024 kB (memmap in the block); 6.12, 1 GiB DIMM: MemTotal +1032192 kB.
"""

import pytest
from kmodel_helpers import make_guest

from balloonsim.hotplug import HotplugSpec, format_report, run_hotplug
from balloonsim.kernel import EINVAL, get_profile
from balloonsim.kernel.vmemmap import acpi_memmap_on_memory_flag
from balloonsim.units import GiB, MiB

BLOCK_PAGES = 32768


@pytest.mark.parametrize(
    ("kernel", "pages", "expected"),
    [
        ("4.19", BLOCK_PAGES, False),
        ("5.12", BLOCK_PAGES, False),  # memmap_on_memory is 5.13
        ("6.1", BLOCK_PAGES, True),
        ("6.1", 8 * BLOCK_PAGES, False),  # not one block: no flag, no -EINVAL
        ("6.6", 8 * BLOCK_PAGES, True),
        ("6.12", 80 * BLOCK_PAGES, True),
    ],
)
def test_acpi_flag_per_release(kernel, pages, expected):
    assert acpi_memmap_on_memory_flag(get_profile(kernel), pages, BLOCK_PAGES, 64) is expected


def _hotplug(kernel, size, strategy="altmap"):
    return run_hotplug(HotplugSpec(boot=[2 * GiB], size=size, at=4 * GiB, strategy=strategy, kernel=kernel))


def _delta(report, phase, key):
    first = report.phases[0].meminfo
    return next(p.meminfo for p in report.phases if p.name == phase)[key] - first[key]


def test_61_multi_block_dimm_gets_the_ordinary_memmap_as_recorded():
    r = _hotplug("6.1", 1 * GiB)
    assert [ret for _, ret in r.calls] == [0, 0]  # never -EINVAL on the ACPI path
    added = _delta(r, "added", "MemFree_kb")
    assert -16384 - 64 <= added <= -16384  # 4096 pages of memmap plus a few of metadata
    assert _delta(r, "onlined", "MemTotal_kb") == 1048576
    assert any("only for a DIMM of exactly one memory block" in n for n in r.notes)
    assert "memmap: altmap asked" in format_report(r)


def test_61_one_block_dimm_gets_its_memmap_in_the_block_as_recorded():
    r = _hotplug("6.1", 128 * MiB)
    assert _delta(r, "onlined", "MemTotal_kb") == 129024
    assert not r.notes and not r.what_if


@pytest.mark.parametrize(("kernel", "total"), [("6.6", 1048576), ("6.8", 1032192), ("6.12", 1032192)])
def test_66_falls_back_68_splits(kernel, total):
    r = _hotplug(kernel, 1 * GiB)
    assert _delta(r, "onlined", "MemTotal_kb") == total
    assert bool(r.notes) == (kernel == "6.6")


@pytest.mark.parametrize("kernel", ["4.19", "5.12"])
def test_no_memmap_on_memory_before_5_13(kernel):
    r = _hotplug(kernel, 128 * MiB)
    assert _delta(r, "onlined", "MemTotal_kb") == 131072
    assert any("no memory_hotplug.memmap_on_memory" in n for n in r.notes)


def test_einval_only_for_a_caller_forcing_the_flag():
    g = make_guest("altmap", kernel="6.1")
    g.backing.populate(4 * GiB >> 12, 5 * GiB >> 12)
    assert g.add_memory(0, 4 * GiB, 1 * GiB, memmap_on_memory=True) == -EINVAL
    assert g.add_memory(0, 4 * GiB, 1 * GiB, memmap_on_memory=False) == 0


@pytest.mark.parametrize(
    ("strategy", "needle"),
    [
        ("altmap-range", "the 2018 RFC"),
        ("subrange-hint", "never merged"),
        ("node-pool", "option (b)"),
    ],
)
def test_hotplug_labels_what_no_kernel_does(strategy, needle):
    r = _hotplug("6.12", 1 * GiB, strategy)
    assert needle in "; ".join(r.what_if)
    assert "what-if: memmap " + strategy in format_report(r)
    assert r.as_dict()["what_if"]


@pytest.mark.parametrize("strategy", ["kmalloc", "altmap", "altmap,kmalloc"])
def test_hotplug_the_kernels_own_has_no_what_if(strategy):
    r = _hotplug("6.12", 1 * GiB, strategy)
    assert r.what_if == [] and "what-if" not in format_report(r)


def test_chain_fallback_is_a_what_if_where_the_kernel_has_none():
    # altmap,kmalloc: the kernel falls back itself from 6.6; on 6.1 a caller forcing the flag gets -EINVAL
    assert _hotplug("6.1", 1 * GiB, "altmap,kmalloc").what_if
    assert not _hotplug("6.6", 1 * GiB, "altmap,kmalloc").what_if
