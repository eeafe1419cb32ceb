"""What each metric means to a reader: label, unit, which direction is better, the thread question it answers.

The one place that says what "best" is, so the policy map, the findings and the tables never disagree.
Every metric the simulator and the built-in drivers produce is listed (a test runs each driver to check);
a plugin's metrics not listed here still work: their unit is guessed from the name and no direction is assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from balloonsim.units import GiB, KiB, MiB


@dataclass(frozen=True)
class Metric:
    name: str
    label: str  # noun phrase that reads after "more"/"higher": "OOM kills", "crash rate"
    unit: str  # count | fraction | rate | bytes | s | text (a label: kept in runs.csv, not analysed)
    better: str | None  # "lower", "higher", or None when neither is better
    question: str | None = None  # key into QUESTIONS
    internal: bool = False  # bookkeeping of the simulator itself: kept in the CSVs, never a finding
    comparative: str = ""  # word for "larger" in sentences; default by unit (more, longer, higher)
    driver: str | None = None  # the driver whose metrics() reports it; None: the simulation's own


# The questions of the 2018 LKML thread (RFC "allocate memmap from hotadded memory") the metrics answer.
QUESTIONS: dict[str, str] = {
    "pressure": "Memory pressure while hot-added memory waits to be onlined: does a kmalloc'd memmap cause "
    "-ENOMEM and OOM kills, and does a memmap in the added range avoid them?",
    "backing": "Balloon drivers back only part of a hot-added segment: does a memmap placed in the range "
    "touch unbacked memory and crash the guest, and does a usable-subrange hint to add_memory() fix it?",
    "gigantic": "Gigantic (1 GiB) pages: does a memmap inside every memory block leave none?",
    "numa": "NUMA and movable_node: does the memmap end up on a remote node?",
    "accounting": "Accounting: what do MemTotal and the usable memory show under each placement?",
    "remove": "Hot-remove: can the added blocks be removed again?",
}

QUESTION_TITLES: dict[str, str] = {
    "pressure": "Pressure before onlining",
    "backing": "Partial backing",
    "gigantic": "Gigantic pages",
    "numa": "NUMA placement",
    "accounting": "Accounting",
    "remove": "Hot-remove",
}

_TABLE = (
    Metric("oom_kills", "OOM kills", "count", "lower", "pressure"),
    Metric("oom_lost_work_s", "work lost to OOM kills", "s", "lower", "pressure"),
    Metric("stall_fraction", "stall fraction", "fraction", "lower", "pressure"),
    Metric("hotadd_enomem", "hot-adds failed with -ENOMEM", "count", "lower", "pressure"),
    Metric("memfree_min_bytes", "minimum MemFree", "bytes", "higher", "pressure", comparative="higher"),
    Metric("time_to_usable_p50_s", "median time to usable", "s", "lower", "pressure"),
    Metric("time_to_usable_p95_s", "95th-percentile time to usable", "s", "lower", "pressure"),
    Metric("hotadd_ok", "successful hot-adds", "count", "higher", "pressure"),
    Metric("blocks_online_end", "blocks online at end", "count", "higher", "pressure"),
    Metric("guest_crashed", "crash rate", "rate", "lower", "backing"),
    # struct pages that describe never-backed pages (wherever the memmap itself lives): the waste of a range
    # the driver backs only in part, not memmap placed on unbacked memory (that crashes: guest_crashed)
    Metric("memmap_bytes_unbacked", "memmap describing never-backed memory", "bytes", "lower", "backing"),
    Metric("crash_time_s", "time of crash", "s", None, "backing"),
    Metric("hotadd_einval", "hot-adds failed with -EINVAL", "count", "lower", "backing"),
    Metric("memmap_fallbacks", "memmap placement fallbacks", "count", None, "backing"),
    Metric("gigantic_pages_end", "gigantic pages at end", "count", "higher", "gigantic"),
    Metric("base_page_fallbacks", "base-page vmemmap fallbacks", "count", "lower", "gigantic"),
    Metric("memmap_bytes_remote", "remote memmap", "bytes", "lower", "numa"),
    Metric("memmap_bytes_kmalloc", "kmalloc'd memmap", "bytes", "lower", "accounting"),
    Metric("memmap_bytes_in_range", "memmap in the added range", "bytes", "lower", "accounting"),
    Metric("usable_bytes_added", "usable memory added", "bytes", "higher", "accounting"),
    Metric("memtotal_end_bytes", "MemTotal at end", "bytes", "higher", "accounting", comparative="higher"),
    Metric("blocks_removable_end", "removable blocks at end", "count", "higher", "remove"),
    Metric("memtotal_start_bytes", "MemTotal at start", "bytes", None, comparative="higher"),
    Metric("hotadd_requests", "hot-add requests", "count", None),
    Metric("hotadd_eexist", "hot-adds failed with -EEXIST", "count", "lower"),
    Metric("hotadd_other_errors", "hot-adds failed with other errors", "count", "lower"),
    Metric("blocks_added_end", "blocks added", "count", None),
    Metric("target_end_bytes", "host target at end", "bytes", None, comparative="higher"),
    Metric("host_populate_short", "short host populations", "count", None),
    Metric("sim_time_s", "simulated time", "s", None),
    Metric("what_if", "what departs from the kernel (empty: nothing)", "text", None),
    Metric("events", "events logged", "count", None, internal=True),
    Metric("simpy_events", "SimPy events", "count", None, internal=True),
    # What each driver did, in its own terms (drivers/*.py metrics()). The metrics above carry the verdicts;
    # these explain them, so none has a direction. Page counts are 4 KiB pages.
    Metric("xen_populate_batches", "Xen populate batches", "count", None, driver="xen"),
    Metric("xen_populate_short", "Xen populates the host filled short", "count", None, driver="xen"),
    Metric("xen_hotplug_segments", "Xen hot-plugged segments", "count", None, driver="xen"),
    Metric("xen_cancelled", "Xen balloon rounds ended BP_ECANCELED", "count", None, driver="xen"),
    Metric("xen_decrease_pages", "pages the Xen balloon took from the guest", "count", None, driver="xen"),
    Metric("xen_balloon_pages_end", "pages in the Xen balloon at end", "count", None, driver="xen"),
    Metric("xen_current_pages_end", "Xen current_pages at end", "count", None, driver="xen"),
    Metric("hv_hotadd_requests", "Hyper-V hot-add requests", "count", None, driver="hyperv"),
    Metric("hv_hotadd_transient", "Hyper-V hot-add requests that added nothing", "count", None, driver="hyperv"),
    Metric("hv_pages_covered", "pages covered by Hyper-V hot-adds", "count", None, driver="hyperv"),
    Metric("hv_ol_timeouts", "Hyper-V waits for onlining that timed out", "count", None, driver="hyperv"),
    Metric("hv_balloon_up_pages", "pages Hyper-V ballooned up", "count", None, driver="hyperv"),
    Metric("hv_balloon_down_pages", "pages Hyper-V ballooned down", "count", None, driver="hyperv"),
    Metric("hv_4k_fallbacks", "Hyper-V balloon-up fallbacks to 4 KiB pages", "count", None, driver="hyperv"),
    Metric("hv_fake_offline_pages_end", "fake-offline Hyper-V pages at end", "count", None, driver="hyperv"),
    Metric("hv_ballooned_pages_end", "pages in the Hyper-V balloon at end", "count", None, driver="hyperv"),
    Metric("virtio_mem_mode", "virtio-mem mode (sbm or bbm)", "text", None, driver="virtio-mem"),
    Metric("virtio_mem_plugged_bytes", "memory virtio-mem plugged", "bytes", None, driver="virtio-mem"),
    Metric("virtio_mem_requested_bytes", "memory the host requested of virtio-mem", "bytes", None, driver="virtio-mem"),
    Metric(
        "virtio_mem_offline_bytes_end", "virtio-mem memory added but offline at end", "bytes", None, driver="virtio-mem"
    ),
    Metric("virtio_mem_plug_failures", "virtio-mem plug requests the host refused", "count", None, driver="virtio-mem"),
    Metric(
        "virtio_mem_unplug_failures", "virtio-mem unplug passes that ended -EBUSY", "count", None, driver="virtio-mem"
    ),
    Metric("virtio_mem_add_failures", "virtio-mem add_memory() failures", "count", None, driver="virtio-mem"),
    Metric("virtio_mem_retry_timer_fires", "virtio-mem retry timer expiries", "count", None, driver="virtio-mem"),
    Metric("virtio_mem_fake_offline_pages", "pages virtio-mem withheld at online", "count", None, driver="virtio-mem"),
    Metric("virtio_mem_broken", "rate of broken virtio-mem devices", "rate", None, driver="virtio-mem"),
    Metric("dimms_plugged", "DIMMs plugged", "count", None, driver="dimm"),
    Metric("dimm_unplug_ebusy", "DIMM unplugs refused with -EBUSY", "count", None, driver="dimm"),
    Metric("dimm_host_refused", "DIMM plugs the host refused", "count", None, driver="dimm"),
)
TABLE: dict[str, Metric] = {m.name: m for m in _TABLE}

# Metrics tried in order when a single "primary" metric is needed (representative runs, policy map).
PRIMARY_ORDER = (
    "oom_kills",
    "guest_crashed",
    "stall_fraction",
    "hotadd_enomem",
    "memmap_bytes_unbacked",
    "gigantic_pages_end",
    "memmap_bytes_remote",
    "blocks_removable_end",
    "usable_bytes_added",
    "memtotal_end_bytes",
    "time_to_usable_p50_s",
)


def info(name: str) -> Metric:
    """The table entry, or a neutral one with a unit guessed from the name's suffix."""
    if name in TABLE:
        return TABLE[name]
    if name.endswith("_bytes") or "_bytes_" in name:
        unit = "bytes"
    elif name.endswith("_s"):
        unit = "s"
    elif name.endswith("_fraction"):
        unit = "fraction"
    elif name.endswith("_rate"):
        unit = "rate"
    else:
        unit = "count"
    return Metric(name, name.replace("_", " "), unit, None)


def is_rate(name: str, values: pd.Series | np.ndarray) -> bool:
    """A 0/1 outcome per run (e.g. guest_crashed): its mean is a proportion with a Wilson interval."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    zero_one = bool(np.isin(arr, (0.0, 1.0)).all())
    return zero_one and info(name).unit == "rate"


def better_of(name: str, mean_a: float, mean_b: float) -> int:
    """-1 when a is better, +1 when b is better, 0 when tied or the metric has no direction."""
    direction = info(name).better
    if direction is None or mean_a == mean_b or np.isnan(mean_a) or np.isnan(mean_b):
        return 0
    a_lower = mean_a < mean_b
    return -1 if a_lower == (direction == "lower") else 1


def byte_scale(max_abs: float) -> tuple[float, str]:
    """Divisor and unit name for byte values of this magnitude (GiB for large, MiB, else KiB)."""
    if max_abs >= GiB:
        return float(GiB), "GiB"
    if max_abs >= MiB:
        return float(MiB), "MiB"
    return float(KiB), "KiB"


def axis_label(name: str, max_abs: float = 0.0) -> tuple[str, float]:
    """Axis label with unit, and the divisor to apply to the values."""
    m = info(name)
    if m.unit == "bytes":
        scale, unit = byte_scale(max_abs)
        return f"{m.label} ({unit})", scale
    if m.unit == "s":
        return f"{m.label} (s)", 1.0
    if m.unit == "rate":
        return f"{m.label} (%)", 0.01
    if m.unit == "fraction":
        return f"{m.label} (fraction of time)", 1.0
    return f"{m.label} (per run)", 1.0


def fmt(name: str, value: float, digits: int = 0) -> str:
    """A value in the metric's unit, for tables and sentences; `digits` forces that many significant
    digits."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    m = info(name)
    num = (lambda x: f"{x:.{digits}g}") if digits else _num
    if m.unit == "bytes":
        scale, unit = byte_scale(abs(value))
        return f"{num(value / scale)} {unit}" if value else "0"
    if m.unit == "rate":
        return f"{num(value * 100)}%" if digits else f"{value * 100:.0f}%"
    if m.unit == "s":
        return f"{num(value)} s"
    return num(value)


def fmt_pair(name: str, a: float, b: float) -> tuple[str, str]:
    """Both values formatted with enough digits that different numbers never print the same."""
    first, second = fmt(name, a), fmt(name, b)
    digits = 4
    while first == second and a != b and digits <= 8:
        first, second = fmt(name, a, digits), fmt(name, b, digits)
        digits += 1
    return first, second


def _num(x: float) -> str:
    """Three significant digits without scientific notation for everyday magnitudes."""
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}".rstrip("0").rstrip(".")
    if abs(x) >= 0.01:
        return f"{x:.2f}".rstrip("0").rstrip(".")
    return f"{x:.2g}"
