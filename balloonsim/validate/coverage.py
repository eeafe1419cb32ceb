"""Which metrics the recordings of real kernels check, and how far the model agrees with them there.

A study's report says, for each metric its answer rests on, whether `balloonsim validate` compared the mechanism
behind it with a real kernel and with what outcome, so that a reader knows which numbers rest on a checked model
and which on the model alone. The replay needs the recordings (a source checkout) and a second or two, and a
report is written anywhere, so the figures are kept in `coverage.json` beside this module, written by
`balloonsim validate --write-coverage`; tests/validation fails when the file no longer matches the recordings,
the known disagreements or the model.

`CHECKS` says which of validate's quantities speak to a metric; a metric it does not name is checked by no
recording (PSI, work done, crashes on unbacked memory: QEMU backs every page it offers).
"""

from __future__ import annotations

import fnmatch
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COVERAGE_FILE = Path(__file__).with_name("coverage.json")
FORMAT = 1
# what a recording's steps hot-plug, by step
DEVICES = {"dimm_add": "ACPI DIMMs", "vmem_resize": "virtio-mem"}
# the drivers a study may use that those steps exercise (the rest run in the model only)
RECORDED_DRIVERS = {"ACPI DIMMs": "dimm", "virtio-mem": "virtio-mem"}


@dataclass(frozen=True)
class Check:
    """Quantities of `balloonsim validate` that measure what a metric counts."""

    label: str  # what they measure, as a noun phrase
    quantities: tuple[str, ...]  # glob patterns of validate's quantity names
    outcome: bool = False  # each row is an add_memory() call: compared as failed (1) or not (0)
    cases: tuple[str, ...] = ("*",)  # glob patterns of the cases whose rows count


ADD_OUTCOME = Check("the outcome of each add_memory()", ("add_memory dimm*",), outcome=True)
# the cases whose guest is short of memory when it adds: a file left little free (pressure-*, oom-anon-*) or went to
# swap (swap-fill-*)
SHORT_OF_MEMORY = ("pressure-*", "oom-anon-*", "swap-fill-*")
ADD_UNDER_PRESSURE = Check(
    "the outcome of each add_memory() into a guest short of memory", ("add_memory dimm*",), True, SHORT_OF_MEMORY
)
ADD_CALLS = Check("the add_memory() calls that failed", ("add_memory() calls that failed*",))
BLOCKS = Check("the hot-added memory blocks, their states and zones", ("*: hot-added blocks",))
BLOCKS_UNDER_PRESSURE = Check(
    "the hot-added memory blocks of a guest short of memory", ("*: hot-added blocks",), cases=SHORT_OF_MEMORY
)
MEMMAP = Check("the memmap's pages (nr_memmap_pages)", ("*: Δnr_memmap_pages", "boot nr_memmap_boot_pages"))
MEMTOTAL = Check("MemTotal", ("*: ΔMemTotal (kB)",))
ZONES = Check(
    "each zone's spanned, present and managed pages", ("*: node* Δspanned", "*: node* Δpresent", "*: node* Δmanaged")
)
PLUGGED = Check("virtio-mem's plugged size", ("*: plugged (MiB)",))
FREE = Check(
    "MemFree and MemAvailable",
    (
        "*: ΔMemFree*(kB)",
        "*: ΔMemAvailable*(kB)",
        "*: Δfree incl. per-cpu lists*(kB)",
        "*: free incl. per-cpu lists (kB), the fill's target",
    ),
)
GIGANTIC = Check("the 1 GiB pages the kernel gives when asked", ("1 GiB pages after asking for 8*",))
OFFLINE = Check("offlining and removing blocks", ("write offline > state*", "device_del *"))
ONLINE = Check("onlining blocks", ("write online* > state*",))
SWAP = Check("SwapTotal and the swap in use", ("*: SwapTotal (kB)", "*: swap used (kB)"))
OOM_KILLS = Check("the OOM kills of a process faulting in more than is free", ("anon *: OOM kills",))
OOM_RSS = Check("what it had faulted in when it was killed (anon-rss)", ("anon *: the victim's anon-rss (kB)",))

CHECKS: dict[str, tuple[Check, ...]] = {
    "hotadd_enomem": (ADD_UNDER_PRESSURE, ADD_CALLS, BLOCKS_UNDER_PRESSURE),
    "hotadd_ok": (ADD_OUTCOME, BLOCKS),
    "blocks_added_end": (BLOCKS,),
    "blocks_online_end": (BLOCKS, ONLINE),
    "blocks_removable_end": (OFFLINE, BLOCKS),
    "blocks_removable_fraction": (OFFLINE, BLOCKS),
    "memmap_bytes_kmalloc": (MEMMAP,),
    "memmap_bytes_in_range": (MEMMAP,),
    "memmap_bytes_remote": (MEMMAP, ZONES),
    "memtotal_start_bytes": (MEMTOTAL,),
    "memtotal_end_bytes": (MEMTOTAL,),
    "usable_bytes_added": (MEMTOTAL, ZONES, PLUGGED),
    "memfree_min_bytes": (FREE,),
    "gigantic_pages_end": (GIGANTIC,),
    "oom_kills": (OOM_KILLS, OOM_RSS),
    "swap_out_pages": (SWAP,),
    "swap_in_pages": (SWAP,),
}
# what a metric's checks leave out
NOTES: dict[str, str] = {
    "memmap_bytes_remote": "the recordings count the memmap of all nodes together, not the node each part is on",
    "oom_kills": "one process in a guest with nothing left to reclaim, not which of many tasks the OOM killer "
    "picks, nor the kills of a whole run",
    "swap_out_pages": "the recordings compare the swap in use once a file is written, not the pages written "
    "and read back over a run",
    "swap_in_pages": "the recordings compare the swap in use once a file is written, not the pages written "
    "and read back over a run",
}


def _matches(row: Any, check: Check) -> bool:
    return any(fnmatch.fnmatchcase(row.quantity, p) for p in check.quantities) and any(
        fnmatch.fnmatchcase(row.case, p) for p in check.cases
    )


def _number(value: Any, check: Check) -> int | None:
    """A row's value as a number to say which side is higher; None for text (block states, errnos)."""
    if check.outcome:
        return 0 if value in (0, "0") else 1
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _kernel_key(release: str) -> tuple[int, ...]:
    return tuple(int(x) for x in release.split("."))


def tally(check: Check, rows: list, number_of: dict[int, int]) -> dict[str, Any]:
    """The rows of `check`: how many agree, which known disagreements cover the others (by their number in
    `balloonsim validate`'s list), how many disagree, and where both are numbers, which side is higher."""
    mine = [r for r in rows if _matches(r, check)]
    known: Counter[int] = Counter()
    higher = lower = disagree = 0
    for r in mine:
        if r.agree:
            continue
        if r.known is not None:
            known[number_of[r.known_index]] += 1
        else:
            disagree += 1
        real, model = _number(r.real, check), _number(r.model, check)
        if real is not None and model is not None:
            higher += model > real
            lower += model < real
    return {
        "label": check.label,
        "outcome": check.outcome,
        "rows": len(mine),
        "cases": len({r.case for r in mine}),
        "kernels": sorted({r.kernel for r in mine}, key=_kernel_key),
        "agree": sum(r.agree for r in mine),
        "known": {str(n): known[n] for n in sorted(known)},
        "disagree": disagree,
        "model_higher": higher,
        "model_lower": lower,
    }


def coverage(recordings: list, rows: list, known: list) -> dict[str, Any]:
    """What `coverage.json` holds: the recordings at a glance, each known disagreement's summary under its
    number, and each metric of CHECKS with its checks' tallies."""
    used = sorted({r.known_index for r in rows if r.known is not None})
    number_of = {index: n for n, index in enumerate(used, 1)}  # as `balloonsim validate` numbers them
    summaries = {k.index: k.summary or k.reason for k in known}
    devices = sorted({DEVICES[st["do"]] for rec in recordings for st in rec.steps if st["do"] in DEVICES})
    metrics = {}
    for metric, checks in CHECKS.items():
        entry: dict[str, Any] = {"checks": [tally(c, rows, number_of) for c in checks]}
        if metric in NOTES:
            entry["note"] = NOTES[metric]
        metrics[metric] = entry
    return {
        "format": FORMAT,
        "written_by": "balloonsim validate --write-coverage",
        "recordings": len(recordings),
        "cases": len({r.case for r in recordings}),
        "kernels": sorted({r.kernel for r in recordings}, key=_kernel_key),
        "devices": devices,
        "known": {str(number_of[i]): summaries[i] for i in used},
        "metrics": metrics,
    }


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=False) + "\n"


def load_coverage(path: Path = COVERAGE_FILE) -> dict[str, Any] | None:
    """The shipped coverage, or None when there is none this balloonsim can read."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None
