"""Kernel profiles: what changed between 4.19, 5.12, 6.1, 6.6, 6.8, 6.12 and 6.18 (kernel-facts.md sections 1, 3
and 11; profiles.py cites each commit)."""

import math

import pytest
from click.testing import CliRunner
from kmodel_helpers import DIMM_SIZE, DIMM_START, add_backed, dimm_guest, make_guest, online_all, populate

from balloonsim.cli import cli
from balloonsim.errors import ConfigError
from balloonsim.kernel import EINVAL, PROFILES, ZoneType, get_profile, probe_memory_block_size
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.profiles import describe_profiles
from balloonsim.units import PAGE_SHIFT, GiB, MiB, TiB


def test_profiles_known():
    assert list(PROFILES) == ["4.19", "5.12", "6.1", "6.6", "6.8", "6.12", "6.18"]
    with pytest.raises(ConfigError, match="guest.kernel"):
        get_profile("3.10")


def test_each_profile_is_the_one_before_plus_its_changes():
    names = list(PROFILES)
    for before, after in zip(names, names[1:], strict=False):
        a, b = PROFILES[before], PROFILES[after]
        assert b.changes, after
        changed = {c.field for c in b.changes}
        for f in a.__dataclass_fields__:
            if f in ("name", "changes"):
                continue
            if f in changed:
                assert getattr(b, f) == next(c.value for c in b.changes if c.field == f)
            else:
                assert getattr(b, f) == getattr(a, f), (after, f)
        for c in b.changes:
            assert c.commit and c.release and c.what


def test_release_boundaries_from_the_source():
    p = PROFILES
    # memmap_on_memory reached Linus in 5.13 (a08a2ae34613, merged 2021-05-05 after v5.12): 5.12 has none
    assert p["5.12"].memmap_on_memory == "none" and p["6.1"].memmap_on_memory == "single-block"
    # ACPI passes the flag only for a one-block DIMM 5.13-6.5 (4a3e5de9c4ec), always from 6.6 (e3c2bfdd33a3)
    assert [p[k].acpi_memmap_flag for k in ("5.12", "6.1", "6.6", "6.18")] == [
        "never",
        "if-supported",
        "always",
        "always",
    ]
    # the split per block is 6.8 (6b8f0798b85a); force mode 6.6 (2d1f649c7c08)
    assert p["6.6"].memmap_on_memory == "single-block" and p["6.8"].memmap_on_memory == "per-block"
    assert not p["6.1"].memmap_force and p["6.6"].memmap_force
    # hv_balloon: the chunk is the memory block from 6.10 (8852ebf1948d); pages outside regions from 6.14
    assert not p["6.8"].hv_chunk_is_block and p["6.12"].hv_chunk_is_block
    assert not p["6.12"].hv_online_outside_regions and p["6.18"].hv_online_outside_regions
    assert not p["4.19"].hv_balloon_adjusts_managed and p["5.12"].hv_balloon_adjusts_managed  # d1df458cbfdb, 5.11
    # virtio-mem subblocks of a pageblock since 5.19 (448b8ec3bf11)
    assert p["5.12"].virtio_mem_sb_min == 4 * MiB and p["6.1"].virtio_mem_sb_min == 2 * MiB
    # virtio-mem SBM retries removing fully unplugged blocks: have_unplugged_mb in 6.12.118, not in 6.1.192
    assert not p["6.1"].virtio_mem_retry_unplugged and p["6.6"].virtio_mem_retry_unplugged
    # auto-movable and the Xen kthread are 5.15
    assert not p["5.12"].auto_movable and p["6.1"].auto_movable
    assert not p["5.12"].xen_kthread and p["6.1"].xen_kthread
    assert not p["6.8"].vmstat_nr_memmap and p["6.12"].vmstat_nr_memmap  # 15995a352474, 6.11


def test_list_kernels_prints_the_differences():
    text = describe_profiles()
    for commit in ("a08a2ae34613", "e3c2bfdd33a3", "6b8f0798b85a", "8852ebf1948d", "1da602ec36a3", "448b8ec3bf11"):
        assert commit in text
    res = CliRunner().invoke(cli, ["hotplug", "--list-kernels"])
    assert res.exit_code == 0 and res.output.strip() == text
    assert "6.6: 6.1 plus" in res.output and "UNVERIFIED" in res.output


@pytest.mark.parametrize("kernel", list(PROFILES))
def test_kernel_accepted_by_hotplug(kernel):
    res = CliRunner().invoke(cli, ["hotplug", "--kernel", kernel, "--size", "128M", "--json"])
    assert res.exit_code == 0, res.output


def test_419_altmap_falls_back_to_ordinary_memmap():
    g = dimm_guest("altmap", kernel="4.19")
    assert add_backed(g, 1, DIMM_START, DIMM_SIZE) == 0
    assert g.stats.memmap_fallbacks == 80
    mi = g.meminfo()
    assert mi.memmap_kmalloc_pages == 40960 and mi.vmemmap_pages == 0
    assert mi.nr_memmap_pages is None
    boot_total = g.meminfo().MemTotal_kb
    online_all(g)
    assert g.meminfo().MemTotal_kb - boot_total == 10_485_760


def test_512_has_no_memmap_on_memory():
    # a08a2ae34613 is in 5.13: on 5.12 even a one-block range gets the ordinary memmap
    g = make_guest("altmap", kernel="5.12")
    assert add_backed(g, 0, 4 * GiB, 128 * MiB) == 0
    assert g.blocks[32].memmap.altmap is None and g.stats.memmap_fallbacks == 1


def test_61_single_block_altmap():
    g = make_guest("altmap", kernel="6.1")
    assert add_backed(g, 0, 4 * GiB, 128 * MiB) == 0
    s = 4 * GiB >> PAGE_SHIFT
    assert g.blocks[32].memmap.in_range == Extents.span(s, s + 512)
    assert g.stats.memmap_fallbacks == 0
    populate(g, 5 * GiB, 256 * MiB)
    assert g.add_memory(0, 5 * GiB, 256 * MiB) == -EINVAL  # a caller forcing the flag
    # the 10 GiB DIMM with the flag forced: -EINVAL on 5.13-6.5
    g = dimm_guest("altmap", kernel="6.1")
    populate(g, DIMM_START, DIMM_SIZE)
    assert g.add_memory(1, DIMM_START, DIMM_SIZE) == -EINVAL


def test_66_single_block_falls_back_silently():
    # e3c2bfdd33a3: the range does not qualify, add_memory() uses the ordinary memmap instead of -EINVAL
    g = dimm_guest("altmap", kernel="6.6")
    assert add_backed(g, 1, DIMM_START, DIMM_SIZE) == 0
    assert g.stats.memmap_kmalloc_pages == 40960 and g.stats.memmap_fallbacks == 80
    g = make_guest("altmap", kernel="6.6")
    assert add_backed(g, 0, 4 * GiB, 128 * MiB) == 0
    assert g.blocks[32].memmap.altmap is not None


def test_61_multi_block_chain_falls_back():
    # altmap,kmalloc: the cover letter's option (c); on 6.1 the DIMM gets the ordinary memmap
    g = dimm_guest("altmap,kmalloc", kernel="6.1")
    assert add_backed(g, 1, DIMM_START, DIMM_SIZE) == 0
    assert g.stats.memmap_kmalloc_pages == 40960
    assert g.stats.memmap_fallbacks == 80


@pytest.mark.parametrize("kernel", ["6.8", "6.12", "6.18"])
def test_68_splits_per_block(kernel):
    g = dimm_guest("altmap", kernel=kernel)
    assert add_backed(g, 1, DIMM_START, DIMM_SIZE) == 0
    starts = sorted(next(iter(b.memmap.in_range))[0] for b in g.blocks.values())
    assert starts == [0x100000 + k * 0x8000 for k in range(80)]
    assert g.stats.memmap_fallbacks == 0
    assert (g.meminfo().nr_memmap_pages is None) == (kernel == "6.8")


def _wmark_min_total(g):
    return sum(z.wmark_min for z in g.alloc.iter_zones() if z.type.is_kernel and z.managed)


def _expected_min_pages(g, cap_kb):
    """calculate_min_free_kbytes() at boot: sqrt(16 * nr_free_buffer_pages() in kB), clamped; the watermarks are
    still 0 then, so nr_free_buffer_pages() is the lowmem zones' managed pages."""
    lowmem = sum(z.managed for z in g.alloc.iter_zones() if z.type.is_kernel)
    return max(128, min(math.isqrt(lowmem * 4 * 16), cap_kb)) // 4


def test_watermark_small_guest_same_everywhere():
    """Without transparent hugepages: min_free_kbytes = sqrt(16 * lowmem kB), the same on every release."""
    mins = {k: _wmark_min_total(make_guest(kernel=k, transparent_hugepage="never")) for k in ("4.19", "6.12")}
    assert mins["4.19"] == mins["6.12"]
    g = make_guest(transparent_hugepage="never")
    # min_free_kbytes = sqrt(lowmem_kb * 16): 2 GiB -> ~5.6 MiB
    assert abs(_wmark_min_total(g) - _expected_min_pages(g, 262144)) <= 3


def test_khugepaged_raises_min_free_kbytes():
    """set_recommended_min_free_kbytes() (mm/khugepaged.c, with THP "always" or "madvise"): 2 free pageblocks
    plus MIGRATE_PCPTYPES^2 almost free ones per populated zone up to ZONE_NORMAL, at most 5% of lowmem. A 2 GiB
    guest has ZONE_DMA and ZONE_DMA32: 2 * 11 * 512 pages = 45056 kB (Debian 6.1-6.18 guests:
    validation/recorded/). A ZONE_NORMAL onlined later makes it 3 zones (67584 kB) from 5.10 (bd3400ea173f);
    on 4.19 the hot-plug's init_per_zone_wmark_min() falls back to sqrt(16 * lowmem kB); ZONE_MOVABLE never
    counts."""
    g = make_guest(transparent_hugepage="madvise")
    assert g.alloc.min_free_kbytes == 2 * 11 * 512 * 4
    assert add_backed(g, 0, 4 * GiB, 128 * MiB) == 0
    assert g.online_memory_block(32, "online_movable") == 0
    assert g.alloc.min_free_kbytes == 2 * 11 * 512 * 4
    assert g.offline_memory_block(32) == 0
    assert g.online_memory_block(32, "online_kernel") == 0
    assert g.alloc.min_free_kbytes == 3 * 11 * 512 * 4
    g419 = make_guest(kernel="4.19", transparent_hugepage="madvise")
    assert g419.alloc.min_free_kbytes == 2 * 11 * 512 * 4
    assert add_backed(g419, 0, 4 * GiB, 128 * MiB) == 0
    highs = sum(z.wmark_high for z in g419.alloc.iter_zones() if z.type.is_kernel)  # what the call finds
    assert g419.online_memory_block(32, "online_kernel") == 0
    lowmem = sum(z.managed for z in g419.alloc.iter_zones() if z.type.is_kernel) - highs
    assert g419.alloc.min_free_kbytes == math.isqrt(lowmem * 4 * 16)


def test_movable_min_watermark_capped_from_6_6():
    """__setup_per_zone_wmarks(): since "mm/page_alloc: fix min_free_kbytes calculation regarding ZONE_MOVABLE"
    (6.6) ZONE_MOVABLE's min is managed/1024 within 32..128 pages and its managed pages are not lowmem; before,
    it takes its share of min_free_kbytes like a lowmem zone (a Debian 6.1 guest's MemAvailable grows 12 MiB less
    than the later releases' when 1 GiB goes online_movable: validation/recorded/dimm-1G-movable--6.*.json)."""
    for kernel, capped in (("6.1", False), ("6.6", True)):
        g = make_guest(kernel=kernel)
        assert add_backed(g, 0, 4 * GiB, 1 * GiB) == 0
        online_all(g, "online_movable")
        movable = g.alloc.zones[(0, ZoneType.MOVABLE)]
        lowmem = sum(z.managed for z in g.alloc.iter_zones() if capped is False or z.type is not ZoneType.MOVABLE)
        share = g.alloc.min_free_kbytes // 4 * movable.managed // lowmem
        assert movable.wmark_min == (128 if capped else share)
        assert movable.wmark_high - movable.wmark_low == max(share >> 2, movable.managed * 10 // 10000)


def test_watermark_clamp_419_at_64m():
    # above 256 GiB of lowmem sqrt(kB*16) exceeds 65536 kB: 4.19 clamps (min_free_kbytes cap before 5.7)
    kw = {"boot": [300 * GiB], "block_size": None, "max_addr": 512 * GiB, "transparent_hugepage": "never"}
    g419 = make_guest(kernel="4.19", **kw)
    g612 = make_guest(kernel="6.12", **kw)
    assert _expected_min_pages(g419, 65536) == 65536 // 4
    assert 65536 // 4 - 3 <= _wmark_min_total(g419) <= 65536 // 4
    exp = _expected_min_pages(g612, 262144)
    assert exp > 65536 // 4
    assert exp - 3 <= _wmark_min_total(g612) <= exp


def test_watermark_clamp_612_at_256m():
    g = make_guest(kernel="6.12", boot=[5 * TiB], block_size=None, max_addr=8 * TiB)
    assert 262144 // 4 - 2 <= _wmark_min_total(g) <= 262144 // 4


@pytest.mark.parametrize(
    ("boot_end", "hypervisor", "kernel", "expected"),
    [
        (2 * GiB, True, "6.12", 128 * MiB),
        (63 * GiB, True, "6.12", 128 * MiB),
        (63 * GiB, False, "6.12", 128 * MiB),  # below 64 GiB even bare metal gets 128 MiB
        (64 * GiB, True, "6.12", 2 * GiB),
        (96 * GiB, True, "6.12", 2 * GiB),
        (97 * GiB, True, "6.12", 1 * GiB),
        (64 * GiB + 128 * MiB, True, "6.12", 128 * MiB),
        (64 * GiB + 512 * MiB, True, "6.12", 512 * MiB),
        (97 * GiB, False, "6.12", 2 * GiB),  # bare metal: max block since 2020
        (97 * GiB, False, "5.12", 2 * GiB),
        (97 * GiB, False, "6.1", 2 * GiB),
        (97 * GiB, False, "4.19", 1 * GiB),  # 4.19 divides boot_mem_end even on bare metal
        (97 * GiB, True, "4.19", 1 * GiB),
    ],
)
def test_probe_memory_block_size(boot_end, hypervisor, kernel, expected):
    assert probe_memory_block_size(boot_end, hypervisor, get_profile(kernel)) == expected


@pytest.mark.parametrize(
    ("boot", "hypervisor", "kernel", "expected"),
    [
        ([2 * GiB], True, "6.12", 128 * MiB),
        ([32 * GiB], True, "6.12", 128 * MiB),
        ([95 * GiB], True, "6.12", 2 * GiB),  # boot memory ends at 96 GiB (3 GiB low + PCI hole + 92 GiB)
        ([96 * GiB], True, "6.12", 1 * GiB),  # ends at 97 GiB
        ([96 * GiB], False, "6.12", 2 * GiB),
        ([96 * GiB], False, "4.19", 1 * GiB),
        ([48 * GiB, 48 * GiB], True, "6.12", 1 * GiB),
    ],
)
def test_guest_block_size_probe(boot, hypervisor, kernel, expected):
    g = make_guest(boot=boot, block_size=None, hypervisor=hypervisor, kernel=kernel, max_addr=256 * GiB)
    hole = 1 * GiB if sum(boot) > 3 * GiB else 0  # boot RAM skips the 3-4 GiB PCI hole
    assert g.boot_end_pfn << PAGE_SHIFT == sum(boot) + hole
    assert g.block_size == expected
    assert g.block_pages == expected >> PAGE_SHIFT


def test_explicit_block_size_wins():
    assert make_guest(boot=[96 * GiB], block_size=512 * MiB, max_addr=256 * GiB).block_size == 512 * MiB


def test_zone_dma_is_the_first_16m_less_the_first_1m():
    """zone_sizes_init(): ZONE_DMA below MAX_DMA_PFN (16 MiB). x86 takes page 0 and 640 KiB-1 MiB out of RAM
    (trim_bios_range()) and reserves the whole first 1 MiB (a1e2c031ec39, 5.13): a Debian 6.1-6.18 guest under
    QEMU shows `spanned 4095`, `managed 3840` for its DMA zone (validation/recorded/*.json; its `present 3998`
    also misses the EBDA page SeaBIOS keeps below 640 KiB). No allocation the model makes uses it: the zonelists
    leave it out (lowmem_reserve)."""
    g = make_guest()
    dma = g.alloc.zones[(0, ZoneType.DMA)]
    assert (dma.span_start, dma.span_end) == (1, 4096)
    assert dma.present == 4095 - 96 and dma.managed == 3840
    assert g.alloc.zones[(0, ZoneType.DMA32)].span_start == 4096
    assert dma not in g.alloc.zonelist(0, kernel_only=True) + g.alloc.zonelist(0, kernel_only=False)
    assert g.meminfo().MemTotal_kb == (2 * GiB - 1 * MiB) // 1024 - (g.boot_memmap_pages + g.kernel_reserved_pages) * 4
