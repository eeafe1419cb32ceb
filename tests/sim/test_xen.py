"""The Xen balloon (drivers/xen/balloon.c): when it hot-adds more address space."""

from __future__ import annotations

from balloonsim.sim.simulation import simulate
from balloonsim.units import GiB, MiB


def _run(steps, onlining: str = "offline", kernel: str = "6.12") -> dict:
    return simulate(
        {
            "duration": "5m",
            "guest": {"boot": "2G", "kernel": kernel},
            "driver": {"name": "xen"},
            "workload": {"name": "idle"},
            "onlining": {"agent": onlining},
            "host": {"controller": "schedule", "steps": [[t, f"{size >> 20}M"] for t, size in steps]},
        },
        1,
    ).metrics


def test_credit_adds_more_while_earlier_sections_are_offline():
    """reserve_additional_memory(): credit = target_pages - total_pages, total_pages counting every hot-added
    section whether onlined or not; BP_WAIT only when that is <= 0. A target raised again while the first
    section is still offline hot-adds what is missing (round_up(credit, PAGES_PER_SECTION))."""
    m = _run([(10, 2 * GiB + 100 * MiB), (60, 2 * GiB + 300 * MiB)])
    assert m["xen_hotplug_segments"] == 2
    assert m["blocks_added_end"] == 3  # 128 MiB, then round_up(300 - 128 = 172 MiB) = 256 MiB
    assert m["blocks_online_end"] == 0


def test_no_more_address_space_while_what_was_added_covers_the_target():
    m = _run([(10, 2 * GiB + 100 * MiB), (60, 2 * GiB + 120 * MiB)])
    assert m["xen_hotplug_segments"] == 1 and m["blocks_added_end"] == 1


def test_the_e820_holes_are_not_a_credit():
    """watch_target() (drivers/xen/xen-balloon.c): an HVM/PVH guest subtracts target_diff = static_max -
    target_pages (its RAM pages at boot, get_num_physpages()) from every target, so a target equal to the
    domain's memory asks for nothing although page 0 and 640 KiB-1 MiB are not RAM (97 pages fewer present)."""
    m = _run([(10, 2 * GiB)])
    assert m["xen_hotplug_segments"] == 0 and m["blocks_added_end"] == 0
    assert m["xen_populate_batches"] == 0 and m["xen_decrease_pages"] == 0
