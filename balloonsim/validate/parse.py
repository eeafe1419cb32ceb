"""Parsers for what a recorded guest printed: /proc/meminfo, /proc/vmstat, /proc/zoneinfo, the memory-block
dump of the guest agent, and the messages of failed sysfs writes.

The recordings keep the kernel's raw text (validation/harness/guest_init.sh prints it); everything here
turns that text into numbers, and raises RecordingError naming the recording and the line it cannot read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from balloonsim.errors import UserError

FORMAT = 1

# strerror() texts as busybox sh reports a failed write ("sh: write error: <text>"), to errno names
ERRNO_BY_MESSAGE = {
    "Device or resource busy": "EBUSY",
    "Invalid argument": "EINVAL",
    "Cannot allocate memory": "ENOMEM",
    "Out of memory": "ENOMEM",
    "Operation not permitted": "EPERM",
    "No such file or directory": "ENOENT",
    "No such device": "ENODEV",
    "Interrupted system call": "EINTR",
    "Resource temporarily unavailable": "EAGAIN",
    "File exists": "EEXIST",
}


class RecordingError(UserError):
    """A recording that is not what `balloonsim validate --record` writes."""


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo: {"MemTotal": kB, ...}; lines without a unit (HugePages_Total) are counts."""
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        m = re.fullmatch(r"([\w()]+):\s+(\d+)(?: kB)?\s*", line)
        if not m:
            raise ValueError(f"meminfo line {n}: {line!r}")
        out[m.group(1)] = int(m.group(2))
    return out


def parse_vmstat(text: str) -> dict[str, int]:
    """name -> value. A counter the kernel keeps in a signed long and prints with %lu (nr_memmap_pages, an
    atomic_long_t read by vmstat_start()) shows a negative value as 2**64 - n: read back as -n."""
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"vmstat line {n}: {line!r}")
        value = int(parts[1])
        out[parts[0]] = value - (1 << 64) if value >= 1 << 63 else value
    return out


@dataclass(frozen=True)
class ZoneCounts:
    spanned: int
    present: int
    managed: int
    free: int  # "pages free": the buddy allocator's free lists (what NR_FREE_PAGES and MemFree count)
    pcp: int  # pages on the per-cpu lists (the "count:" of each cpu's pageset): free, but not in MemFree
    start_pfn: int | None


def parse_zoneinfo(text: str) -> dict[tuple[int, str], ZoneCounts]:
    """/proc/zoneinfo (the lines the guest keeps): {(node, zone name): counts}."""
    zones: dict[tuple[int, str], dict] = {}
    cur: dict | None = None
    for n, line in enumerate(text.splitlines(), 1):
        m = re.fullmatch(r"Node (\d+), zone\s+(\w+)\s*", line)
        if m:
            cur = zones.setdefault((int(m.group(1)), m.group(2)), {"pcp": 0})
            continue
        m = re.fullmatch(r"\s+(pages free|spanned|present|managed|start_pfn:|count:)\s+(\d+)\s*", line)
        if not m or cur is None:
            raise ValueError(f"zoneinfo line {n}: {line!r}")
        key = m.group(1).replace("pages ", "").rstrip(":")
        if key == "count":
            cur["pcp"] += int(m.group(2))
        else:
            cur[key] = int(m.group(2))
    out = {}
    for key, c in zones.items():
        try:
            out[key] = ZoneCounts(c["spanned"], c["present"], c["managed"], c["free"], c["pcp"], c.get("start_pfn"))
        except KeyError as exc:
            raise ValueError(f"zoneinfo: node {key[0]} zone {key[1]} has no {exc.args[0]}") from None
    return out


def free_with_pcp_kb(zones: dict[tuple[int, str], ZoneCounts]) -> int:
    """Free pages in kB counting the per-cpu lists too: the kernel's free memory before the pcp caching that
    MemFree leaves out (order-0..3 pages, and pageblock-order pages since 5.13)."""
    return sum(z.free + z.pcp for z in zones.values()) * 4


@dataclass(frozen=True)
class BlockState:
    state: str  # online | offline | going-offline
    node: int | None
    zones: tuple[str, ...]  # valid_zones: the zone of an online block, the candidates of an offline one

    @property
    def zone(self) -> str | None:
        """The zone an online block is in (valid_zones prints just that zone for an online block)."""
        return self.zones[0] if self.state == "online" and len(self.zones) == 1 else None


def parse_blocks(text: str) -> dict[int, BlockState]:
    """The guest agent's "memoryN <state> nodeM <valid_zones...>" lines."""
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        m = re.fullmatch(r"memory(\d+) (\S+) node(\d+|\?) ?(.*)", line)
        if not m:
            raise ValueError(f"blocks line {n}: {line!r}")
        node = None if m.group(3) == "?" else int(m.group(3))
        out[int(m.group(1))] = BlockState(m.group(2), node, tuple(m.group(4).split()))
    return dict(sorted(out.items()))


def write_errno(status: int, message: str) -> str:
    """A guest write's outcome as the kernel's errno name: "0", "EBUSY", ... ("KILLED" after the 120 s cap)."""
    if status == 0:
        return "0"
    if status == 137:
        return "KILLED"
    return ERRNO_BY_MESSAGE.get(message.strip(), message.strip() or f"status {status}")


def parse_anon(output: str) -> tuple[int, int, int]:
    """The `anon` step's output: the OOM kills it caused (vmstat oom_kill after less before), and the victim's
    anon-rss and page tables in kB from the kernel's "Killed process" line (0 when nothing was killed)."""
    counts = [int(m) for m in re.findall(r"^oom_kill (\d+)$", output, re.M)]
    if len(counts) != 2:
        raise ValueError(f"anon step: expected oom_kill before and after, got {output[:120]!r}")
    line = re.search(r"Killed process \d+ \(\S+\) .*?anon-rss:(\d+)kB.*?pgtables:(\d+)kB", output)
    if line is None or counts[1] == counts[0]:
        return counts[1] - counts[0], 0, 0
    return counts[1] - counts[0], int(line.group(1)), int(line.group(2))


@dataclass
class Snapshot:
    """One phase of a recording, parsed."""

    meminfo: dict[str, int]
    vmstat: dict[str, int]
    zones: dict[tuple[int, str], ZoneCounts]
    blocks: dict[int, BlockState]
    block_size: int
    auto_online_blocks: str


def parse_snapshot(raw: dict[str, str]) -> Snapshot:
    return Snapshot(
        meminfo=parse_meminfo(raw["meminfo"]),
        vmstat=parse_vmstat(raw["vmstat"]),
        zones=parse_zoneinfo(raw["zoneinfo"]),
        blocks=parse_blocks(raw["blocks"]),
        block_size=int(raw["block_size_bytes"].strip(), 16),
        auto_online_blocks=raw["auto_online_blocks"].strip(),
    )


@dataclass
class Recording:
    path: Path
    case: str
    kernel: str
    data: dict  # the whole JSON document
    snapshots: dict[str, Snapshot]  # phase -> parsed snapshot, in step order
    idle: list[tuple[dict[str, int], dict[tuple[int, str], ZoneCounts]]]  # (meminfo, zones) per idle snapshot

    @property
    def steps(self) -> list[dict]:
        return self.data["steps"]

    def next_phase(self, i: int) -> str | None:
        """The phase of the first snapshot after step `i`: the one that shows what that step left."""
        return next((st["phase"] for st in self.steps[i + 1 :] if st["do"] == "snap"), None)

    def next_snapshot(self, i: int) -> Snapshot | None:
        phase = self.next_phase(i)
        return None if phase is None else self.snapshots[phase]

    @property
    def cmdline(self) -> dict[str, str | None]:
        """Kernel command line as {param: value or None}."""
        out: dict[str, str | None] = {}
        for tok in self.data["provenance"]["kernel_cmdline"].split():
            k, _, v = tok.partition("=")
            out[k] = v if _ else None
        return out


def load_recording(path: Path) -> Recording:
    where = path.name
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RecordingError(f"{where}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RecordingError(f"{where}: not a recording (a JSON object is expected)")
    for key in ("format", "case", "kernel", "machine", "provenance", "steps"):
        if key not in data:
            raise RecordingError(f"{where}: missing key {key!r}")
    if data["format"] != FORMAT:
        raise RecordingError(f"{where}: format {data['format']!r}, this balloonsim reads format {FORMAT}")
    snaps: dict[str, Snapshot] = {}
    idle = []
    for i, st in enumerate(data["steps"]):
        try:
            if st["do"] == "snap":
                snaps[st["phase"]] = parse_snapshot(st["result"]["raw"])
            elif st["do"] == "idle":
                idle = [(parse_meminfo(s["meminfo"]), parse_zoneinfo(s["zoneinfo"])) for s in st["result"]["samples"]]
        except (KeyError, TypeError) as exc:
            raise RecordingError(f"{where}: steps[{i}] has no {exc}") from None
        except ValueError as exc:
            raise RecordingError(f"{where}: steps[{i}]: {exc}") from None
    if "boot" not in snaps:
        raise RecordingError(f"{where}: no 'boot' snapshot")
    return Recording(path, data["case"], data["kernel"], data, snaps, idle)


def load_recordings(directory: Path) -> list[Recording]:
    if not directory.is_dir():
        raise RecordingError(f"no recordings directory {directory} (record with: balloonsim validate --record)")
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise RecordingError(f"no recordings in {directory} (record with: balloonsim validate --record)")
    return [load_recording(p) for p in paths]
