"""The model against the committed recordings of real kernels: every quantity agrees within its tolerance or
is a listed known disagreement, and every listed disagreement still happens."""

from __future__ import annotations

import itertools
import json

import pytest
from click.testing import CliRunner
from validation_support import KNOWN

from balloonsim.cli import cli
from balloonsim.validate.compare import apply_known, compare, runs, stale_known
from balloonsim.validate.known import load_known

KERNELS = ("6.1", "6.12", "6.18")


@pytest.fixture(scope="module")
def rows(recordings):
    out = []
    for rec in recordings:
        out += compare(rec)
    apply_known(out, load_known(KNOWN))
    return out


def test_recordings_cover_the_cases(recordings):
    cases = {r.case for r in recordings}
    kernels = {r.kernel for r in recordings}
    assert len(cases) >= 16
    assert {"6.1", "6.12"} <= kernels
    for rec in recordings:
        prov = rec.data["provenance"]
        assert prov["recorded_by"] == "balloonsim validate --record"
        assert prov["uname_r"].startswith(rec.kernel + "."), rec.path.name
        assert rec.path.name == f"{rec.case}--{rec.kernel}.json"
        for key in ("kernel_cmdline", "qemu_version", "qemu_argv", "date"):
            assert prov[key], (rec.path.name, key)


def test_every_quantity_agrees_or_is_a_known_disagreement(rows):
    failing = [
        f"{r.case} {r.kernel} {r.quantity}: real {r.real}, model {r.model} ({r.tolerance})" for r in rows if not r.ok
    ]
    assert not failing, "\n".join(failing[:40])


def test_every_known_disagreement_still_happens(rows):
    """When the model gets fixed, its entry in known-disagreements.toml must go (the table would hide nothing,
    but a stale reason misleads)."""
    stale = stale_known(rows, load_known(KNOWN))
    assert not stale, [f"{k.quantity} ({k.case}, {k.kernel}): {k.reason[:60]}" for k in stale]


def test_exact_quantities_that_agree_today(rows):
    """A few facts both sides already share, so that a regression in them fails here by name."""
    by = {(r.case, r.kernel, r.quantity): r for r in rows}
    for kernel in ("6.1", "6.12"):
        r = by[("dimm-1G-movable", kernel, "onlined: ΔMemTotal (kB)")]
        assert r.real == r.model == 1048576
        r = by[("dimm-1G-movable", kernel, "onlined: hot-added blocks")]
        assert r.real == r.model == "32-39 online/Movable"
    r = by[("dimm-128M-movable-mmom", "6.12", "onlined: ΔMemTotal (kB)")]
    assert r.real == r.model == 129024  # memmap_on_memory: 126 MiB of the 128 MiB block are managed


def test_memavailable_and_the_shapes_the_fidelity_work_got_right(rows):
    """What the kernel model now gets from the source, by name: MemAvailable (totalreserve_pages with ZONE_DMA,
    khugepaged's min_free_kbytes and ZONE_MOVABLE's watermark per release), zone spans that shrink on offline,
    a multi-block memmap_on_memory DIMM on 6.1 added with the ordinary memmap, and 6.18's leaked memmap."""
    by = {(r.case, r.kernel, r.quantity): r for r in rows}
    avail = "onlined: ΔMemAvailable incl. per-cpu lists (kB)"
    for kernel in ("6.1", "6.12", "6.18"):
        for case in ("dimm-1G-movable", "dimm-1G-kernel"):  # within the new block devices' slab (known [6])
            r = by[(case, kernel, avail)]
            assert abs(r.real - r.model) <= 2048, r
        # a new kernel zone: khugepaged counts 3 zones, DMA and DMA32 keep reserves against it
        assert by[("dimm-1G-kernel", kernel, avail)].model < by[("dimm-1G-movable", kernel, avail)].model - 20000
        r = by[("dimm-1G-movable", kernel, "onlined: node0 Movable Δspanned")]
        assert r.real == r.model == 262144
        assert ("dimm-1G-movable", kernel, "offlined: node0 Movable Δspanned") not in by  # 0 on both sides
    # 6.1 gives ZONE_MOVABLE a lowmem share of min_free_kbytes: MemAvailable grows 12 MiB more than on 6.12
    real = by[("dimm-1G-movable", "6.1", avail)].real - by[("dimm-1G-movable", "6.12", avail)].real
    model = by[("dimm-1G-movable", "6.1", avail)].model - by[("dimm-1G-movable", "6.12", avail)].model
    assert 12000 < model < 13000 and abs(real - model) < 1024
    r = by[("dimm-1G-movable-mmom", "6.1", "onlined: ΔMemTotal (kB)")]
    assert r.real == r.model == 1048576  # acpi_memory_enable_device() withholds the flag on 6.1: ordinary memmap
    r = by[("dimm-10G-movable", "6.18", "removed: Δfree incl. per-cpu lists (kB)")]
    assert r.known is not None and r.model == -80 * 511 * 4  # the leak, within the small allocations' bound


def test_a_kmalloc_memmap_fits_under_pressure_where_the_real_kernel_finds_it(rows):
    """The pressure study's mechanism on real kernels: a 10 GiB DIMM whose memmap (160 MiB, GFP_KERNEL |
    __GFP_RETRY_MAYFAIL) is kmalloc'd, added when a tmpfs file has left 160-256 MiB free. On every recorded
    kernel the levels bracket the point where the add stops fitting (some adds fail, some succeed), and the
    model adds or fails at each level as the kernel does, but at the threshold itself, where only the kernel's
    per-cpu lists (known disagreement [7]) tell them apart: there the model adds what the kernel cannot."""
    adds = [r for r in rows if r.case.startswith("pressure-10G-") and r.quantity.startswith("add_memory dimm0")]
    kernels = {r.kernel for r in adds}
    assert {"6.1", "6.12", "6.18"} <= kernels
    for kernel in kernels:
        outcomes = {r.case: (r.real, r.model) for r in adds if r.kernel == kernel}
        assert {real for real, _ in outcomes.values()} == {"0", "failed"}, (kernel, outcomes)
        differ = {case: pair for case, pair in outcomes.items() if pair[0] != pair[1]}
        assert all(pair == ("failed", "0") for pair in differ.values()), (kernel, differ)
        assert len(differ) <= 1, (kernel, differ)
    assert sum(r.real == r.model for r in adds) >= len(adds) - 1


def test_where_an_add_under_pressure_runs_out_shows_the_per_cpu_lists_and_zone_dma(rows):
    """Known disagreement [7] as two mechanisms the model leaves out, each shown by its cases: with the per-cpu
    lists kept small the kernel goes further than the model (ZONE_DMA's 6 MiB above its reserve, which the model's
    zonelists leave out); with 6.12's self-tuning lists it stops earlier (the pages on the lists, which a reclaim
    without progress does not drain)."""
    by = {(r.case, r.kernel, r.quantity): r for r in rows}
    memmap = "added: Δnr_memmap_pages"
    for kernel in ("6.12", "6.18"):
        for free in (160, 208):
            small = by[(f"pressure-10G-free-{free}M-small-pcp", kernel, memmap)]
            assert 0 < small.real - small.model <= 1536, small  # DMA: 512-1,536 pages further
    for free in (160, 192, 208):
        default = by[(f"pressure-10G-free-{free}M", "6.12", memmap)]
        assert 1024 <= default.model - default.real <= 4096, default  # the lists: 1,024-3,584 pages short


def test_a_memmap_on_the_added_memory_needs_none_of_the_free_memory(rows):
    """The other side of the pressure study's answer, recorded: with memory_hotplug.memmap_on_memory=1 the 10 GiB
    DIMM is added with 96 MiB free on 6.12 and 6.18 (ACPI passes MHP_MEMMAP_ON_MEMORY for any DIMM from 6.6), its
    memmap in the DIMM (nr_memmap_pages counts it, free memory does not move by more than the new block devices'
    slab); 6.1 withholds the flag from a multi-block DIMM, so there it fails as the kmalloc'd one does."""
    by = {(r.case, r.kernel, r.quantity): r for r in rows}
    add = "add_memory dimm0 (10240M, node 0)"
    for kernel, outcome in (("6.1", "failed"), ("6.12", "0"), ("6.18", "0")):
        for case in ("pressure-10G-free-96M-mmom", "pressure-10G-free-160M-mmom"):
            r = by[(case, kernel, add)]
            assert r.real == r.model == outcome, r
            if outcome == "0":
                assert by[("pressure-10G-free-208M", kernel, add)].real == "failed"  # kmalloc'd, more free memory
                memmap = by[(case, kernel, "added: Δnr_memmap_pages")]
                assert memmap.real == memmap.model == 10 * 1024 * 1024 // 4 // 64
                free = by[(case, kernel, "added: Δfree incl. per-cpu lists (kB)")]
                assert -1024 < free.real < 0 and -1024 < free.model < 0, free


def test_a_failed_add_keeps_the_memmap_of_the_sections_before_it(rows):
    """__add_pages() stops at the first section whose memmap it cannot allocate and add_memory_resource()'s error
    path removes nothing arch_add_memory() added (6.12.118 mm/memory_hotplug.c l.418-429, l.1551-1553, l.1597-1603):
    after a failed add the earlier sections' memmap stays, on the real kernel as in the model, and the free
    memory it took stays gone once the pressure is released."""
    by = {(r.case, r.kernel, r.quantity): r for r in rows}
    failed = [
        r
        for r in rows
        if r.case.startswith("pressure-10G-") and r.quantity.startswith("add_memory") and r.real == "failed"
    ]
    assert failed
    for add in failed:
        memmap = by.get((add.case, add.kernel, "added: Δnr_memmap_pages"))
        if memmap is not None:  # 6.11+
            assert memmap.real > 0 and memmap.model > 0 and memmap.ok, memmap
        free = by[(add.case, add.kernel, "added: Δfree incl. per-cpu lists (kB)")]
        assert free.real < -32 * 1024 and free.model < -32 * 1024 and free.ok, free  # 16 sections or more


def test_gigantic_pages_come_only_from_whole_kernel_zone_gibs_free_of_memmap_and_kernel_data(rows):
    """The quickstart's third situation, asked of real kernels (nr_hugepages of the 1 GiB hstate, before and after
    DIMMs are added and onlined): alloc_contig_pages() takes a naturally aligned 1 GiB range only if every page is
    online, in the one zone it walks and not reserved (`pfn_range_valid_contig()`, 6.12.118 mm/page_alloc.c
    l.6831-6852, l.6885-6918), and alloc_contig_range() then fails on a range holding unmovable pages. So:
    - boot memory of a 2 GiB guest gives none;
    - a memmap at the start of every block (memmap_on_memory: `mhp_init_memmap_on_memory()`, the vmemmap pages
      MIGRATE_UNMOVABLE and in use, mm/memory_hotplug.c l.1104-1130) leaves no range whole: none (6.12, 6.18);
    - online_movable gives none: a gigantic hstate is never movable (`hugepage_movable_supported()`,
      include/linux/hugetlb.h l.907-915), so GFP_HIGHUSER never reaches ZONE_MOVABLE;
    - with the memmap kmalloc'd, a 2 GiB DIMM online_kernel gives one, not two: the kernel's own allocations
      (slab, page tables) steal a pageblock of the DIMM's first onlined block, as the model's background does
      (balloonsim.kernel.unmovable), and two 1 GiB DIMMs give one, the second's.
    6.1 passes no MHP_MEMMAP_ON_MEMORY to a multi-block DIMM, so there the memmap_on_memory cases give what the
    kmalloc'd ones do. The model's count is the studies' gigantic_pages_end."""
    asks = {(r.case, r.kernel): r for r in rows if r.quantity.startswith("1 GiB pages after asking")}
    after = {k: r for k, r in asks.items() if not r.quantity.endswith("(step 2)")}
    before = {k: r for k, r in asks.items() if r.quantity.endswith("(step 2)")}
    assert {kernel for _, kernel in after} >= {"6.1", "6.12", "6.18"}
    assert all(r.real == r.model == 0 for r in before.values()), before
    for (case, kernel), r in after.items():
        mmom_applies = case.endswith("-mmom") and kernel != "6.1"
        want = 0 if mmom_applies or "-movable" in case else 1
        assert r.real == r.model == want, r
    assert len(after) == 15


def test_one_block_adds_under_pressure_fail_where_the_memmap_runs_out_and_later_notifications_retry_them(rows):
    """The quickstart's first situation on real kernels: 24 pc-dimms of 128 MiB added one after another, none
    onlined, to a guest left with 80 MiB free. Each add kmalloc's a 2 MiB memmap out of the free memory until one
    cannot (`pressure-128M-series-free-80M`): the kernels add 11-12, the model 2-5 more (known [12]: the per-cpu
    lists of [7]). Every failed DIMM stays plugged; 6.12 and 6.18 retry it at each later DIMM's notification (the
    ACPI rescan, 6.9+: k failed DIMMs make k(k+1)/2 failed calls), 6.1 does not (k calls), on both sides."""
    series = [r for r in rows if r.case == "pressure-128M-series-free-80M"]
    kernels = {r.kernel for r in series}
    assert kernels >= {"6.1", "6.12", "6.18"}
    for kernel in kernels:
        adds = [r for r in series if r.kernel == kernel and r.quantity.startswith("add_memory dimm")]
        assert len(adds) == 24
        real_ok = sum(r.real == "0" for r in adds)
        model_ok = sum(r.model == "0" for r in adds)
        # both sides: a run of successes, then only failures (no retry succeeds under the same pressure)
        assert [r.real for r in adds] == ["0"] * real_ok + ["failed"] * (24 - real_ok)
        assert [r.model for r in adds] == ["0"] * model_ok + ["failed"] * (24 - model_ok)
        assert 10 <= real_ok <= 13 and 1 <= model_ok - real_ok <= 5, (kernel, real_ok, model_ok)
        calls = next(r for r in series if r.kernel == kernel and r.quantity.startswith("add_memory() calls"))
        k_real, k_model = 24 - real_ok, 24 - model_ok
        if kernel == "6.1":
            assert (calls.real, calls.model) == (k_real, k_model)
        else:
            assert (calls.real, calls.model) == (k_real * (k_real + 1) // 2, k_model * (k_model + 1) // 2)


def test_a_dimm_retried_over_the_sections_its_failed_add_left_is_bound_and_logs_nothing(rows):
    """The 10 GiB add that fails with 160 MiB free leaves its first sections' memmap; once the pressure is gone a
    128 MiB DIMM is plugged. On 6.12 and 6.18 its notification's rescan retries the 10 GiB DIMM first, add_memory()
    returns -EEXIST, and acpi_memory_enable_device() counts that as enabled and logs nothing (6.12.118
    drivers/acpi/acpi_memhotplug.c l.215-238); on 6.1 there is no retry. Either way the console holds one failed
    call, the new DIMM is added and the 10 GiB one has no block, on both sides."""
    by = {(r.case, r.kernel, r.quantity): r for r in rows}
    case = "pressure-10G-free-160M-then-128M"
    for kernel in ("6.1", "6.12", "6.18"):
        first = by[(case, kernel, "add_memory dimm0 (10240M, node 0)")]
        then = by[(case, kernel, "add_memory dimm1 (128M, node 0)")]
        calls = by[(case, kernel, "add_memory() calls that failed, retries included (console)")]
        blocks = by[(case, kernel, "then-added: hot-added blocks")]
        assert (first.real, first.model, then.real, then.model) == ("failed", "failed", "0", "0"), kernel
        assert calls.real == calls.model == 1 and blocks.real == blocks.model == "112 offline", kernel


def test_a_file_larger_than_memory_goes_to_swap_as_far_as_kswapd_passes_decide(rows):
    """Reclaim to swap on real kernels (`swap-fill-{2048,2560}M-then-128M`): a tmpfs file of 2,048 or 2,560 MiB
    written into a 2 GiB guest with 1 GiB of swap. SwapTotal is the disk less its header page (setup_swap_map(),
    6.12.118 mm/swapfile.c l.3253); kswapd and direct reclaim write out what memory cannot hold of the file, about
    all but 1.8 GiB, and where kswapd stopped decides the rest, on both sides within one pass
    (kswapd_shrink_node(): at most the high watermarks' sum, l.6785-6800). The 128 MiB DIMM's kmalloc'd memmap is
    then found (no -ENOMEM), and emptying the file frees its swap."""
    by = {(r.case, r.kernel, r.quantity): r for r in rows}
    for case, kernel in itertools.product(("swap-fill-2048M-then-128M", "swap-fill-2560M-then-128M"), KERNELS):
        total = by[(case, kernel, "filled: SwapTotal (kB)")]
        assert total.real == total.model == 1024 * 1024 - 4, kernel
        used = by[(case, kernel, "filled: swap used (kB)")]
        band = int(used.tolerance.lstrip("±"))
        # the file less what memory holds of it: about 1.8 GiB, whatever its size
        fill = int(case.split("-")[2].rstrip("M")) * 1024
        assert fill - 1900 * 1024 < used.real < fill - 1700 * 1024 and used.agree, (case, kernel, used)
        assert 60 * 1024 < band < 70 * 1024  # the 2 GiB guest's high watermarks: about 66 MiB
        add = by[(case, kernel, "add_memory dimm0 (128M, node 0)")]
        assert add.real == add.model == "0", (case, kernel)
        left = by[(case, kernel, "released: swap used (kB)")]
        assert left.model == 0 and 0 <= left.real < 1024, (kernel, left)  # the agent's own pages, if any


def test_runs():
    assert runs({32: "0", 33: "0", 34: "EBUSY", 36: "0"}) == "32-33 0, 34 EBUSY, 36 0"
    assert runs({}) == "none"


def test_cli_json_and_exit_status():
    res = CliRunner().invoke(cli, ["validate", "--json", "--kernel", "6.12", "dimm-1G-movable"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["cases"]
    assert set(doc["cases"][0]) >= {"name", "kernel", "quantity", "real", "model", "tolerance", "agree"}
    assert {c["name"] for c in doc["cases"]} == {"dimm-1G-movable"}


def test_cli_table_summary():
    res = CliRunner().invoke(cli, ["validate", "--disagreements"])
    assert res.exit_code == 0, res.output
    assert "known disagreements (validation/known-disagreements.toml):" in res.output
    assert res.output.rstrip().splitlines()[-1].endswith(" 0 disagree")
    one = CliRunner().invoke(cli, ["validate", "gigantic-2G-kernel", "--kernel", "6.12"])
    assert one.output.rstrip().splitlines()[-1].startswith("1 case on 1 kernel (6.12), 1 recording: ")


def test_cli_bad_input(tmp_path):
    res = CliRunner().invoke(cli, ["validate", "--recorded", str(tmp_path)])
    assert res.exit_code == 2
    assert (
        res.output.strip()
        == f"balloonsim: error: no recordings in {tmp_path} (record with: balloonsim validate --record)"
    )
    res = CliRunner().invoke(cli, ["validate", "no-such-case"])
    assert res.exit_code == 2 and "no recording of case 'no-such-case'" in res.output
    (tmp_path / "k.toml").write_text('[[disagreement]]\nquantity = "x"\n')
    res = CliRunner().invoke(cli, ["validate", "--known", str(tmp_path / "k.toml")])
    assert res.exit_code == 2 and "k.toml: disagreement[0]: needs 'quantity' and 'reason'" in res.output


def test_cli_fails_on_an_unlisted_disagreement(tmp_path):
    empty = tmp_path / "none.toml"
    empty.write_text("")
    res = CliRunner().invoke(cli, ["validate", "--known", str(empty), "--disagreements"])
    assert res.exit_code == 1
    assert " NO" in res.output
