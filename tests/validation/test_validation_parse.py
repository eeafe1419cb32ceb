"""The parsers, on what real kernels printed (the committed recordings) and on broken input."""

from __future__ import annotations

import json

import pytest

from balloonsim.validate.parse import (
    RecordingError,
    load_recording,
    parse_anon,
    parse_blocks,
    parse_meminfo,
    parse_vmstat,
    parse_zoneinfo,
    write_errno,
)


def test_memtotal_is_the_sum_of_managed_pages(recordings):
    """si_meminfo(): MemTotal is totalram_pages(), the sum of every zone's managed pages. Holds in every
    snapshot of every recording, so meminfo and zoneinfo are read consistently."""
    checked = 0
    for rec in recordings:
        for phase, snap in rec.snapshots.items():
            managed = sum(z.managed for z in snap.zones.values())
            assert snap.meminfo["MemTotal"] == managed * 4, (rec.path.name, phase)
            checked += 1
    assert checked >= 100


def test_zone_counters_are_ordered(recordings):
    """spanned >= present >= managed for every zone (holes and reserved pages only ever subtract)."""
    for rec in recordings:
        for snap in rec.snapshots.values():
            for key, z in snap.zones.items():
                assert z.spanned >= z.present >= z.managed >= 0, (rec.path.name, key)


def test_boot_blocks_cover_boot_memory(recordings):
    """A 2 GiB guest with 128 MiB blocks has memory0..memory15 online at boot, on the nodes QEMU gave them."""
    for rec in recordings:
        boot = rec.snapshots["boot"]
        assert boot.block_size == 128 << 20
        assert list(boot.blocks) == list(range(16)), rec.path.name
        assert all(b.state == "online" for b in boot.blocks.values())


def test_written_blocks_are_the_hot_added_ones(recordings):
    for rec in recordings:
        boot = set(rec.snapshots["boot"].blocks)
        for st in rec.steps:
            if st["do"] == "write":
                assert st["result"]["writes"], rec.path.name
                assert not {w["block"] for w in st["result"]["writes"]} & boot


def test_recorded_ebusy_parses_as_ebusy(recordings):
    busy = [
        (w["status"], w["message"])
        for rec in recordings
        for st in rec.steps
        if st["do"] == "write"
        for w in st["result"]["writes"]
        if w["status"]
    ]
    assert busy, "some recording has a refused offline"
    assert {write_errno(s, m) for s, m in busy} <= {"EBUSY", "EINVAL"}


def test_the_anon_steps_kill_and_victim_are_read_from_what_the_guest_printed(recordings):
    """Each recorded `anon` step: oom_kill went up by one and the kernel named dd with its anon-rss."""
    steps = [st for rec in recordings for st in rec.steps if st["do"] == "anon"]
    assert len(steps) >= 6
    for st in steps:
        kills, rss, tables = parse_anon(st["result"]["output"])
        assert kills == 1 and 150 * 1024 < rss < st["size_mib"] * 1024
        assert rss // 512 < tables < rss // 256  # a 4 kB page table per 2 MiB mapped, and the binary's own
    assert parse_anon("oom_kill 4\n1+0 records out\noom_kill 4\n") == (0, 0, 0)
    with pytest.raises(ValueError, match="oom_kill before and after"):
        parse_anon("dd: out of memory\n")


def test_write_errno():
    assert write_errno(0, "") == "0"
    assert write_errno(1, "Device or resource busy") == "EBUSY"
    assert write_errno(1, "Invalid argument") == "EINVAL"
    assert write_errno(137, "") == "KILLED"
    assert write_errno(1, "Something new") == "Something new"


def test_parsers_on_small_inputs():
    assert parse_meminfo("MemTotal:        1952844 kB\nHugePages_Total:       0") == {
        "MemTotal": 1952844,
        "HugePages_Total": 0,
    }
    assert parse_vmstat("nr_memmap_pages 4096\nnr_free_pages 12") == {"nr_memmap_pages": 4096, "nr_free_pages": 12}
    # 6.18.15 after 78 failed one-section adds (pressure-128M-series-free-80M): the long went negative
    assert parse_vmstat("nr_memmap_pages 18446744073709517824") == {"nr_memmap_pages": -33792}
    zi = parse_zoneinfo(
        "Node 1, zone   Normal\n  pages free     5\n              count: 3\n              count: 4\n"
        "        spanned  10\n        present  9\n        managed  8\n  start_pfn:           1048576"
    )
    z = zi[(1, "Normal")]
    assert (z.free, z.pcp, z.spanned, z.present, z.managed, z.start_pfn) == (5, 7, 10, 9, 8, 1048576)
    b = parse_blocks("memory32 online node1 Movable\nmemory33 offline node1 Normal Movable")
    assert b[32].zone == "Movable" and b[32].node == 1
    assert b[33].zone is None and b[33].zones == ("Normal", "Movable")


@pytest.mark.parametrize(
    "parser,text,where",
    [
        (parse_meminfo, "MemTotal: lots", "meminfo line 1"),
        (parse_vmstat, "nr_free_pages\n", "vmstat line 1"),
        (parse_zoneinfo, "  pages free 3", "zoneinfo line 1"),
        (parse_zoneinfo, "Node 0, zone DMA\n  pages free 3", "has no spanned"),
        (parse_blocks, "memory32 online", "blocks line 1"),
    ],
)
def test_parsers_name_the_line_they_cannot_read(parser, text, where):
    with pytest.raises(ValueError, match=where):
        parser(text)


def test_broken_recordings_are_named(tmp_path, recordings):
    bad = tmp_path / "x--6.1.json"
    bad.write_text("{not json")
    with pytest.raises(RecordingError, match="x--6.1.json: not readable JSON"):
        load_recording(bad)
    doc = json.loads(recordings[0].path.read_text())
    del doc["steps"][1]["result"]["raw"]["zoneinfo"]
    bad.write_text(json.dumps(doc))
    with pytest.raises(RecordingError, match=r"x--6.1.json: steps\[1\] has no 'zoneinfo'"):
        load_recording(bad)
    doc["format"] = 99
    bad.write_text(json.dumps(doc))
    with pytest.raises(RecordingError, match="format 99"):
        load_recording(bad)
