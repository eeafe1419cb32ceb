"""What each metric means to a reader: label, unit, direction, exact definition, producer, thread topic.

The one place that says what "best" is, so the policy map, the findings and the tables never disagree.
Every metric the simulator and the built-in drivers produce is listed (a test runs each driver to check);
a plugin's metrics not listed here still work: their unit is guessed from the name and no direction is assumed.
`describe()` is metrics.csv; `defined_by` and `survival` say which comparisons are no findings and which runs a
metric is analysed on.
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
    unit: str  # count | pages | fraction | rate | bytes | s | text (a label: kept in runs.csv, not analysed)
    better: str | None  # "lower", "higher", or None when neither is better
    topic: str | None = None  # key into TOPICS: which of the thread's questions the metric speaks to
    definition: str = ""  # exactly what is measured, for metrics.csv and `analyze --describe`
    internal: bool = False  # bookkeeping of the simulator itself: kept in the CSVs, never a finding
    comparative: str = ""  # word for "larger" in sentences; default by unit (more, longer, higher)
    driver: str | None = None  # the driver whose metrics() reports it; None: the simulation's own
    # Strategies whose own definition fixes this metric (kmalloc puts every memmap byte in online memory,
    # altmap none): comparing them on it restates the definition, so such comparisons are never findings.
    defined_by: tuple[str, ...] = ()
    survival: bool = False  # 1 when the guest died: analysed on every run; a dead guest's other metrics are not
    derived: str = ""  # computed by the analysis from other columns (the formula), not by the simulation
    retired: bool = False  # in results of an older balloonsim only: described for them, no longer produced

    @property
    def producer(self) -> str:
        if self.derived:
            return f"analysis: {self.derived}"
        if self.driver:
            return f"driver {self.driver} (its metrics())"
        return "simulation (Sim.metrics())"


# The questions of the 2018 LKML thread (RFC "allocate memmap from hotadded memory") the metrics speak to;
# the order in which the report's findings visit them.
TOPICS: dict[str, str] = {
    "backing": "Partial backing",
    "pressure": "Pressure before onlining",
    "gigantic": "Gigantic pages",
    "numa": "NUMA placement",
    "accounting": "Accounting",
    "remove": "Hot-remove",
}

# Strategies whose definition says where every memmap byte lives: kmalloc in online memory; altmap (and the
# RFC's per-range altmap, the node pool) in hot-added memory. Fallback chains and subrange-hint decide per
# range, so their placement is a result, not a definition.
_PLACED = ("kmalloc", "altmap", "altmap-range", "node-pool")

_TABLE = (
    Metric(
        "guest_crashed",
        "crash rate",
        "rate",
        "lower",
        "backing",
        "1 when the guest crashed during the run because the kernel wrote to a page the host never backed (a "
        "memmap placed in the added range over an unbacked page, initialised at online; or an unbacked page "
        "handed to the buddy allocator); 0 otherwise. Its mean is the share of runs that crashed.",
        survival=True,
    ),
    Metric(
        "crash_time_s",
        "time of crash",
        "s",
        None,
        "backing",
        "Simulated time of the crash; empty for a guest that survived.",
        survival=True,
    ),
    Metric(
        "memmap_bytes_unbacked",
        "memmap describing never-backed memory",
        "bytes",
        "lower",
        "backing",
        "Bytes of memmap (struct pages) that describe pages of hot-added blocks the host never backed, wherever "
        "that memmap itself lives, at the end of the run: memory spent on pages that can never be used. It is "
        "not memmap placed on unbacked memory (that crashes the guest: guest_crashed).",
    ),
    Metric(
        "hotadd_einval",
        "hot-adds failed with -EINVAL",
        "count",
        "lower",
        "backing",
        "add_memory() calls that returned -EINVAL (e.g. a range the strategy cannot place a memmap in).",
    ),
    Metric(
        "memmap_fallbacks",
        "memmap placement fallbacks",
        "count",
        None,
        "backing",
        "Memory blocks whose memmap was asked for in the added range (altmap) but allocated the ordinary way "
        "(kmalloc) instead, as a fallback chain or the kernel's own check does.",
    ),
    Metric(
        "hotadd_enomem",
        "hot-adds failed with -ENOMEM",
        "count",
        "lower",
        "pressure",
        "add_memory() calls that returned -ENOMEM: the memmap, page tables or per-block metadata could not be "
        "allocated from online memory, so the offered memory was not added; a DIMM retried at later "
        "notifications (6.9+) counts each time, as the kernel's console does. A lower bound: recorded under "
        "pressure (balloonsim validate, pressure-*), a 10 GiB add fails where the model's does on 6.1 but up to "
        "7 sections earlier on 6.12 and 6.18, and one 128 MiB add after another the kernels fit 2 (6.1) to 5 "
        "(6.18) fewer memmaps than the model: their per-cpu lists hold free pages that the allocator does not "
        "drain when reclaim finds nothing.",
    ),
    Metric(
        "oom_kills",
        "OOM kills",
        "count",
        "lower",
        "pressure",
        "Tasks the OOM killer killed during the run.",
    ),
    Metric(
        "oom_lost_work_s",
        "work lost to OOM kills",
        "s",
        "lower",
        "pressure",
        "Sum over OOM-killed tasks of how long each had run when it was killed: work thrown away, in task-seconds "
        "(wall time; unlike work_done_s, not shared out over the vCPUs).",
    ),
    Metric(
        "stall_fraction",
        "stall fraction",
        "fraction",
        "lower",
        "pressure",
        "Results of balloonsim before PSI: share of the simulated time in which the workload stalled on memory "
        "(a one-second tick with direct reclaim or a failed allocation). Newer runs report psi_some_fraction.",
        retired=True,
    ),
    Metric(
        "psi_some_fraction",
        "time with a task stalled on memory (PSI some)",
        "fraction",
        "lower",
        "pressure",
        "PSI memory 'some' (/proc/pressure/memory, kernel/sched/psi.c) over the run: the share of time in which at "
        "least one non-idle task was stalled on memory (direct reclaim, kswapd, swap-in or refault of its working "
        "set, waiting for swap writeback). Empty on kernels without PSI (4.19).",
    ),
    Metric(
        "psi_full_fraction",
        "time with no task productive (PSI full)",
        "fraction",
        "lower",
        "pressure",
        "PSI memory 'full' over the run: the share of time in which every non-idle task was stalled on memory at "
        "once (from 5.17, a task in reclaim counts as stalled while it runs). Empty on 4.19.",
    ),
    Metric(
        "psi_some_avg10_peak",
        "peak PSI some avg10",
        "fraction",
        "lower",
        "pressure",
        "The highest value of PSI memory 'some' avg10 during the run (the kernel's 10 s running average, updated "
        "every 2 s), as a fraction (the kernel prints it in percent).",
    ),
    Metric(
        "swap_out_pages",
        "pages swapped out",
        "count",
        "lower",
        "pressure",
        "/proc/vmstat pswpout over the run: 4 KiB pages written to the swap device by kswapd and direct reclaim.",
    ),
    Metric(
        "swap_in_pages",
        "pages swapped in",
        "count",
        "lower",
        "pressure",
        "/proc/vmstat pswpin over the run: 4 KiB pages read back from swap when tasks touched them (refaults).",
    ),
    Metric(
        "work_done_s",
        "work done",
        "s",
        "higher",
        "pressure",
        "CPU-seconds of productive work: the workload's tasks running and not stalled on memory, at most one per "
        "vCPU (kernel/sched/psi.c: min(nr_productive_tasks, nr_cpus)); lower when tasks thrash in swap, are killed "
        "for good or never start. What a kill throws away is oom_lost_work_s, not subtracted here.",
        comparative="more",
    ),
    Metric(
        "pressure_to_usable_s",
        "time from memory pressure to usable hot-added memory",
        "s",
        "lower",
        "pressure",
        "Seconds from the first time an allocation found no zone above its low watermark and woke kswapd (no "
        "zone of the node above its high watermark) to the first hot-added page handed to the buddy allocator "
        "after it; the rest of the run when none became usable; empty when memory never ran short.",
    ),
    Metric(
        "task_restarts",
        "restarts of OOM-killed tasks",
        "count",
        None,
        None,
        "OOM-killed workload tasks started again by the workload's restart policy (delay or systemd).",
    ),
    Metric(
        "workload_failed",
        "rate of workloads stopped by the restart limit",
        "rate",
        "lower",
        None,
        "1 when the workload's systemd unit hit its start limit (StartLimitBurst starts within "
        "StartLimitIntervalSec) and stopped for good; 0 otherwise.",
    ),
    Metric(
        "memfree_min_bytes",
        "minimum MemFree",
        "bytes",
        "higher",
        "pressure",
        "Lowest MemFree (free pages in the buddy allocator, /proc/meminfo) among the run's samples.",
        comparative="higher",
    ),
    Metric(
        "time_to_usable_p50_s",
        "median time to usable",
        "s",
        "lower",
        "pressure",
        "Median over hot-added blocks of the time from the block's add (its uevent) to its first pages reaching "
        "the buddy allocator; empty when no block became usable.",
    ),
    Metric(
        "time_to_usable_p95_s",
        "95th-percentile time to usable",
        "s",
        "lower",
        "pressure",
        "95th percentile over hot-added blocks of the time from add to first pages usable; empty when none.",
    ),
    Metric(
        "hotadd_ok",
        "successful hot-adds",
        "count",
        "higher",
        "pressure",
        "add_memory() calls that returned 0.",
    ),
    Metric(
        "blocks_online_end",
        "blocks online at end",
        "count",
        "higher",
        "pressure",
        "Hot-added memory blocks online at the end of the run.",
    ),
    Metric(
        "gigantic_pages_end",
        "gigantic pages at end",
        "count",
        "higher",
        "gigantic",
        "Naturally aligned 1 GiB ranges of hot-added memory at the end of the run that could become gigantic "
        "pages: online in a kernel zone, backed, in the buddy allocator, and free of memmap, fake-offline "
        "holes and unmovable kernel data.",
    ),
    Metric(
        "base_page_fallbacks",
        "base-page vmemmap fallbacks",
        "count",
        "lower",
        "gigantic",
        "Sections whose vmemmap had to be mapped with 4 KiB pages instead of 2 MiB PMDs.",
    ),
    Metric(
        "memmap_bytes_remote",
        "remote memmap",
        "bytes",
        "lower",
        "numa",
        "Bytes of memmap of hot-added memory at the end of the run allocated on another NUMA node than the "
        "memory it describes.",
    ),
    Metric(
        "memmap_bytes_kmalloc",
        "kmalloc'd memmap",
        "bytes",
        "lower",
        "accounting",
        "Bytes of memmap (struct pages, not page tables) of hot-added memory at the end of the run allocated "
        "from online memory (the kmalloc path).",
        defined_by=_PLACED,
    ),
    Metric(
        "memmap_bytes_in_range",
        "memmap in the added range",
        "bytes",
        "lower",
        "accounting",
        "Bytes of memmap of hot-added memory at the end of the run carved from hot-added memory itself "
        "(altmap, vmemmap self-hosted).",
        defined_by=_PLACED,
    ),
    Metric(
        "usable_bytes_added",
        "usable memory added",
        "bytes",
        "higher",
        "accounting",
        "Bytes of hot-added memory handed to the buddy allocator at the end of the run (backed, onlined, not "
        "withheld and not holding a memmap).",
    ),
    Metric(
        "memtotal_end_bytes",
        "MemTotal at end",
        "bytes",
        "higher",
        "accounting",
        "MemTotal (/proc/meminfo: managed pages) at the end of the run.",
        comparative="higher",
    ),
    Metric(
        "blocks_removable_end",
        "removable blocks at end",
        "count",
        "higher",
        "remove",
        "Hot-added memory blocks that offline_pages() and remove_memory() could take at the end of the run: "
        "no unmovable data, no fake-offline holes that block offlining, no other block's memmap hosted. Not sysfs' "
        "`removable` (1 for every block in 6.12.118: drivers/base/memory.c removable_show()); a DIMM leaves only "
        "whole, by an ACPI eject, so one block that is not removable keeps all of its blocks.",
    ),
    Metric(
        "blocks_removable_fraction",
        "share of added blocks removable at end",
        "fraction",
        "higher",
        "remove",
        "blocks_removable_end / blocks_added_end: the share of hot-added blocks that could be removed at the "
        "end (comparable across drivers that add different amounts); empty when no block was added.",
        derived="blocks_removable_end / blocks_added_end",
    ),
    Metric(
        "memtotal_start_bytes",
        "MemTotal at start",
        "bytes",
        None,
        definition="MemTotal at the start of the run (boot memory).",
        comparative="higher",
    ),
    Metric("hotadd_requests", "hot-add requests", "count", None, definition="add_memory() calls the driver made."),
    Metric(
        "hotadd_eexist",
        "hot-adds failed with -EEXIST",
        "count",
        "lower",
        definition="add_memory() calls that returned -EEXIST (the range overlaps memory already present).",
    ),
    Metric(
        "hotadd_other_errors",
        "hot-adds failed with other errors",
        "count",
        "lower",
        definition="add_memory() calls that failed with an errno other than -ENOMEM, -EINVAL or -EEXIST.",
    ),
    Metric("blocks_added_end", "blocks added", "count", None, definition="Hot-added memory blocks present at the end."),
    Metric(
        "target_end_bytes",
        "host target at end",
        "bytes",
        None,
        definition="The host's memory target for the guest at the end of the run.",
        comparative="higher",
    ),
    Metric(
        "host_populate_short",
        "short host populations",
        "count",
        None,
        definition="Requests to the host to back guest memory that got less than asked (host out of memory).",
    ),
    Metric(
        "what_if",
        "what departs from the kernel",
        "text",
        None,
        None,
        "Which part of the run no Linux kernel does (a memmap strategy that was never merged, a balloon driver "
        "passing MHP_MEMMAP_ON_MEMORY, which no Xen, Hyper-V or virtio-mem code does); empty when the run is the "
        "kernel's own behaviour.",
    ),
    Metric(
        "sim_time_s",
        "simulated time",
        "s",
        None,
        definition="Simulated seconds the run lasted: its duration, or the time of the crash.",
        internal=True,
    ),
    Metric("events", "events logged", "count", None, definition="Entries in the run's event log.", internal=True),
    Metric(
        "simpy_events",
        "SimPy events",
        "count",
        None,
        definition="Events the SimPy engine scheduled in the run (a cost measure).",
        internal=True,
    ),
    # What each driver did, in its own terms (drivers/*.py metrics()). The metrics above carry the verdicts;
    # these explain them, so none has a direction. Pages are 4 KiB pages.
    *(
        Metric(name, label, unit, None, definition=definition, driver=driver)
        for driver, name, label, unit, definition in (
            (
                "xen",
                "xen_populate_batches",
                "Xen populate batches",
                "count",
                "XENMEM_populate_physmap calls the balloon made to back pages.",
            ),
            (
                "xen",
                "xen_populate_short",
                "Xen populates the host filled short",
                "count",
                "Populate calls that returned fewer pages than asked.",
            ),
            (
                "xen",
                "xen_hotplug_segments",
                "Xen hot-plugged segments",
                "count",
                "Segments the Xen balloon hot-added (add_memory() calls) to grow beyond its ballooned pages.",
            ),
            (
                "xen",
                "xen_cancelled",
                "Xen balloon rounds ended BP_ECANCELED",
                "count",
                "Balloon worker rounds that ended with BP_ECANCELED.",
            ),
            (
                "xen",
                "xen_decrease_pages",
                "pages the Xen balloon took from the guest",
                "pages",
                "4 KiB pages the Xen balloon took from the guest (decrease_reservation).",
            ),
            (
                "xen",
                "xen_balloon_pages_end",
                "pages in the Xen balloon at end",
                "pages",
                "4 KiB pages in the Xen balloon at the end of the run.",
            ),
            (
                "xen",
                "xen_current_pages_end",
                "Xen current_pages at end",
                "pages",
                "The Xen balloon's current_pages at the end of the run.",
            ),
            (
                "hyperv",
                "hv_hotadd_requests",
                "Hyper-V hot-add requests",
                "count",
                "Hot-add requests (DM_MEM_HOT_ADD_REQUEST) for which the host had memory to give.",
            ),
            (
                "hyperv",
                "hv_hotadd_transient",
                "Hyper-V hot-add requests that added nothing",
                "count",
                "Hot-add requests that did not complete (the add failed, e.g. -ENOMEM), so the host asks again.",
            ),
            (
                "hyperv",
                "hv_pages_covered",
                "pages covered by Hyper-V hot-adds",
                "pages",
                "4 KiB pages that hot-add requests added to the guest.",
            ),
            (
                "hyperv",
                "hv_ol_timeouts",
                "Hyper-V waits for onlining that timed out",
                "count",
                "Times hv_balloon's wait for a hot-added block to be onlined (ol_waitevent) timed out.",
            ),
            (
                "hyperv",
                "hv_balloon_up_pages",
                "pages Hyper-V ballooned up",
                "pages",
                "4 KiB pages the host ballooned up (took from the guest).",
            ),
            (
                "hyperv",
                "hv_balloon_down_pages",
                "pages Hyper-V ballooned down",
                "pages",
                "4 KiB pages the host ballooned down (gave back to the guest).",
            ),
            (
                "hyperv",
                "hv_4k_fallbacks",
                "Hyper-V balloon-up fallbacks to 4 KiB pages",
                "count",
                "Balloon-up rounds whose 2 MiB allocations came up short, so it went on with 4 KiB pages.",
            ),
            (
                "hyperv",
                "hv_fake_offline_pages_end",
                "fake-offline Hyper-V pages at end",
                "pages",
                "4 KiB pages of hot-added blocks onlined but withheld (not backed) at the end of the run.",
            ),
            (
                "hyperv",
                "hv_ballooned_pages_end",
                "pages in the Hyper-V balloon at end",
                "pages",
                "4 KiB pages in the Hyper-V balloon at the end of the run.",
            ),
            (
                "virtio-mem",
                "virtio_mem_mode",
                "virtio-mem mode (sbm or bbm)",
                "text",
                "The device's mode: sbm (sub-block) or bbm (big-block).",
            ),
            (
                "virtio-mem",
                "virtio_mem_plugged_bytes",
                "memory virtio-mem plugged",
                "bytes",
                "The device's plugged size at the end of the run.",
            ),
            (
                "virtio-mem",
                "virtio_mem_requested_bytes",
                "memory the host requested of virtio-mem",
                "bytes",
                "The device's requested size at the end of the run.",
            ),
            (
                "virtio-mem",
                "virtio_mem_offline_bytes_end",
                "virtio-mem memory added but offline at end",
                "bytes",
                "Bytes of the device's added memory still offline at the end of the run.",
            ),
            (
                "virtio-mem",
                "virtio_mem_plug_failures",
                "virtio-mem plug requests the host refused",
                "count",
                "Plug requests the device refused.",
            ),
            (
                "virtio-mem",
                "virtio_mem_unplug_failures",
                "virtio-mem unplug passes that ended -EBUSY",
                "count",
                "Unplug passes that ended with -EBUSY.",
            ),
            (
                "virtio-mem",
                "virtio_mem_add_failures",
                "virtio-mem add_memory() failures",
                "count",
                "add_memory() calls of the driver that failed.",
            ),
            (
                "virtio-mem",
                "virtio_mem_retry_timer_fires",
                "virtio-mem retry timer expiries",
                "count",
                "Expiries of the driver's retry timer.",
            ),
            (
                "virtio-mem",
                "virtio_mem_fake_offline_pages",
                "pages virtio-mem withheld at online",
                "pages",
                "4 KiB pages the driver kept fake-offline when their block was onlined (unplugged subblocks).",
            ),
            (
                "virtio-mem",
                "virtio_mem_broken",
                "rate of broken virtio-mem devices",
                "rate",
                "1 when the device ended broken (an unrecoverable error), 0 otherwise.",
            ),
            ("dimm", "dimms_plugged", "DIMMs plugged", "count", "DIMMs the host plugged."),
            (
                "dimm",
                "dimm_unplug_ebusy",
                "DIMM unplugs refused with -EBUSY",
                "count",
                "DIMM eject requests that failed because a block could not be offlined (-EBUSY).",
            ),
            (
                "dimm",
                "dimm_host_refused",
                "DIMM plugs the host refused",
                "count",
                "DIMM plugs the host could not back.",
            ),
        )
    ),
)
TABLE: dict[str, Metric] = {m.name: m for m in _TABLE}

# Metrics tried in order when a single "primary" metric is needed and the experiment names none.
PRIMARY_ORDER = (
    "guest_crashed",
    "hotadd_enomem",
    "oom_kills",
    "psi_some_fraction",
    "work_done_s",
    "memmap_bytes_unbacked",
    "gigantic_pages_end",
    "memmap_bytes_remote",
    "blocks_removable_fraction",
    "usable_bytes_added",
    "memtotal_end_bytes",
    "time_to_usable_p50_s",
)

UNIT_TEXT = {
    "count": "count per run",
    "pages": "4 KiB pages",
    "fraction": "fraction",
    "rate": "0/1 per run (mean: share of runs)",
    "bytes": "bytes",
    "s": "seconds",
    "text": "text",
}
DESCRIBE_COLUMNS = ("name", "unit", "direction", "definition", "producer")


def describe(names: list[str] | None = None) -> pd.DataFrame:
    """metrics.csv: name, unit, direction, definition and producer of each metric (every known one by
    default). A name the table does not know is listed with its guessed unit and says so."""
    rows = []
    for name in names if names is not None else list(TABLE):
        m = info(name)
        known = name in TABLE
        rows.append(
            {
                "name": name,
                "unit": UNIT_TEXT.get(m.unit, m.unit),
                "direction": f"{m.better} is better" if m.better else "none",
                "definition": m.definition if known else "not described (add it to balloonsim/analysis/metrics.py)",
                "producer": m.producer if known else "unknown (a plugin?)",
            }
        )
    return pd.DataFrame(rows, columns=list(DESCRIBE_COLUMNS))


def tautology(name: str, a: str, b: str) -> bool:
    """Comparing levels `a` and `b` of the memmap strategy on `name` only restates a strategy's definition."""
    defined = info(name).defined_by
    return bool(defined) and (str(a) in defined or str(b) in defined)


def survival_metrics(names: list[str]) -> list[str]:
    return [n for n in names if info(n).survival]


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


def value_range(name: str) -> tuple[float, float]:
    """The values the metric can take: a fraction or a rate is a share in [0, 1]; anything else is unbounded
    here (a count or a size below zero is caught from its data)."""
    if info(name).unit in ("fraction", "rate"):
        return 0.0, 1.0
    return -np.inf, np.inf


def is_rate(name: str, values: pd.Series | np.ndarray) -> bool:
    """A 0/1 outcome per run (e.g. guest_crashed): its mean is a proportion with a Wilson interval."""
    # the unit first: the values' check costs more, and most metrics are no rate
    return info(name).unit == "rate" and zero_one(values)


def zero_one(values: pd.Series | np.ndarray) -> bool:
    """Every value 0 or 1, NaN aside: what makes a rate metric's values a proportion."""
    arr = np.asarray(values, dtype=float)
    return bool(np.isin(arr[~np.isnan(arr)], (0.0, 1.0)).all())


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
        of_time = any(word in name for word in ("stall", "psi"))  # shares of the run's time
        return f"{m.label} ({'fraction of time' if of_time else 'fraction'})", 1.0
    if max_abs >= 1e6:  # a whole number on the label, not matplotlib's "1e7" above the axis
        return f"{m.label} (millions per run)", 1e6
    if max_abs >= 1e4:
        return f"{m.label} (thousands per run)", 1e3
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
