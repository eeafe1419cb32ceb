"""The model against a recording, quantity by quantity.

What the model can claim are the changes hot-plug causes, so every number is a change since the "boot"
snapshot: MemTotal, MemFree, MemAvailable, nr_memmap_pages, and each zone's spanned/present/managed pages.
Absolute values are compared only where the model is configured from the same source as the kernel: the
memory block size the model probes from the boot memory (against block_size_bytes) and nr_memmap_boot_pages
(the boot memory's memmap, from QEMU's -m). States and zones of the hot-added memory blocks, the errno of every
sysfs write, whether a device_del removed the DIMM and the plugged size of virtio-mem are compared as text, and
the 1 GiB pages the kernel gave when asked for them as a count. While a `fill` step's file is there, free memory
is a change since the snapshot after the fill (where both sides start). An `anon` step's OOM kills, and its
victim's anon-rss and page tables from the kernel's "Killed process" line, are compared with the model's task.

Tolerances: exact, except MemFree and MemAvailable, which may differ by the noise measured on the same guest
(max - min over the idle snapshots of its recording). The free memory a `fill` step leaves is the replay's input
(the model is filled to it), so that snapshot only checks the model got there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from balloonsim.units import PAGE_SIZE, MiB
from balloonsim.validate.known import Known
from balloonsim.validate.model import ModelRun, replay
from balloonsim.validate.parse import Recording, free_with_pcp_kb, parse_anon, write_errno

EXACT = "exact"


@dataclass
class Row:
    case: str
    kernel: str
    quantity: str
    real: int | str
    model: int | str
    tolerance: str
    agree: bool
    known: str | None = None  # the reason, when a listed known disagreement covers the row
    known_index: int | None = None

    @property
    def ok(self) -> bool:
        return self.agree or self.known is not None

    def as_dict(self) -> dict:
        return {
            "name": self.case,
            "kernel": self.kernel,
            "quantity": self.quantity,
            "real": self.real,
            "model": self.model,
            "tolerance": self.tolerance,
            "agree": self.agree,
            "known": self.known,
        }


FREE_WITH_PCP = "free+pcp"
AVAILABLE_WITH_PCP = "available+pcp"


def pcp_kb(zones) -> int:
    """Pages on the per-cpu lists, in kB: what NR_FREE_PAGES (so MemFree and MemAvailable) leaves out."""
    return sum(z.pcp for z in zones.values()) * 4


def idle_noise(rec: Recording, key: str) -> int:
    """max - min of a meminfo field (or free+pcp) over the recording's idle snapshots."""
    if key == FREE_WITH_PCP:
        values = [free_with_pcp_kb(zones) for _, zones in rec.idle]
    elif key == AVAILABLE_WITH_PCP:
        values = [m["MemAvailable"] + pcp_kb(zones) for m, zones in rec.idle]
    else:
        values = [m[key] for m, _ in rec.idle if key in m]
    return max(values) - min(values) if values else 0


def runs(ids: dict[int, str]) -> str:
    """{32: "a", 33: "a", 35: "b"} -> "32-33 a, 35 b"."""
    out: list[str] = []
    start = prev = None
    val = None
    for i, v in sorted(ids.items()):
        if start is not None and i == prev + 1 and v == val:
            prev = i
            continue
        if start is not None:
            out.append(f"{start}{'' if start == prev else f'-{prev}'} {val}")
        start = prev = i
        val = v
    if start is not None:
        out.append(f"{start}{'' if start == prev else f'-{prev}'} {val}")
    return ", ".join(out) or "none"


def compare(rec: Recording, run: ModelRun | None = None) -> list[Row]:
    run = run or replay(rec)
    rows: list[Row] = []

    def row(quantity: str, real, model, tol: int | None = None) -> None:
        if tol is None:
            agree, tolerance = real == model, EXACT
        else:
            agree = isinstance(real, int) and isinstance(model, int) and abs(real - model) <= tol
            tolerance = f"±{tol}"
        rows.append(Row(rec.case, rec.kernel, quantity, real, model, tolerance, agree))

    boot = rec.snapshots["boot"]
    mboot = run.snapshots["boot"]
    multi_node = bool(rec.data["machine"].get("numa_mem_mib"))
    row("memory block size (probed) (bytes)", boot.block_size, run.probed_block_size)
    if "nr_memmap_boot_pages" in boot.vmstat:
        row("boot nr_memmap_boot_pages", boot.vmstat["nr_memmap_boot_pages"], mboot.vmstat["nr_memmap_boot_pages"])
    noise = {k: idle_noise(rec, k) for k in ("MemFree", "MemAvailable", FREE_WITH_PCP, AVAILABLE_WITH_PCP)}

    filled = set()  # phases whose free memory is the replay's input: a `fill` step brought the model to it
    outgrown = swapped = False  # a file larger than the free memory is there / was written: kswapd has run
    # While a fill's file is there, free memory is compared as its change since the filled snapshot, where both
    # sides hold the same by construction: since boot, it would carry the boot states' difference (the model's boot
    # leaves more free than Debian's, and the fill takes the difference), which says nothing of the later steps.
    since: str | None = None
    for i, st in enumerate(rec.steps):
        do = st["do"]
        if do == "fill" and "size_mib" not in st:  # a fill of a given size is the model's prediction
            filled.add(rec.next_phase(i))
            since = rec.next_phase(i)
        elif do == "fill":
            outgrown = swapped = True
        elif do == "release":
            outgrown = False
            since = None
        if do == "snap" and st["phase"] in filled:
            p = st["phase"]
            real, model = rec.snapshots[p], run.snapshots[p]
            # the replay filled the model to the recorded free pages: the check that it could
            row(
                f"{p}: free incl. per-cpu lists (kB), the fill's target",
                free_with_pcp_kb(real.zones),
                model.meminfo["MemFree"],
            )
            row(
                f"{p}: ΔMemTotal (kB)",
                real.meminfo["MemTotal"] - boot.meminfo["MemTotal"],
                model.meminfo["MemTotal"] - mboot.meminfo["MemTotal"],
            )
        elif do == "snap" and st["phase"] != "boot":
            p = st["phase"]
            real, model = rec.snapshots[p], run.snapshots[p]
            # with a file larger than the free memory, where kswapd stopped decides free memory: within one pass
            band = model.kswapd_pass_kb
            free_tol = {k: max(v, band) for k, v in noise.items()} if outgrown else noise
            row(
                f"{p}: ΔMemTotal (kB)",
                real.meminfo["MemTotal"] - boot.meminfo["MemTotal"],
                model.meminfo["MemTotal"] - mboot.meminfo["MemTotal"],
            )
            rb, mb, tag = (
                (boot, mboot, "") if since is None else (rec.snapshots[since], run.snapshots[since], " since the fill")
            )
            for key in ("MemFree", "MemAvailable"):
                row(
                    f"{p}: Δ{key}{tag} (kB)",
                    real.meminfo[key] - rb.meminfo[key],
                    model.meminfo[key] - mb.meminfo[key],
                    free_tol.get(key),
                )
            # the model has no per-cpu lists: its free pages are the kernel's free pages wherever they are cached
            row(
                f"{p}: Δfree incl. per-cpu lists{tag} (kB)",
                free_with_pcp_kb(real.zones) - free_with_pcp_kb(rb.zones),
                model.meminfo["MemFree"] - mb.meminfo["MemFree"],
                free_tol[FREE_WITH_PCP],
            )
            # si_mem_available() starts from NR_FREE_PAGES too: the same per-cpu pages put back
            row(
                f"{p}: ΔMemAvailable incl. per-cpu lists{tag} (kB)",
                real.meminfo["MemAvailable"] + pcp_kb(real.zones) - rb.meminfo["MemAvailable"] - pcp_kb(rb.zones),
                model.meminfo["MemAvailable"] - mb.meminfo["MemAvailable"],
                free_tol[AVAILABLE_WITH_PCP],
            )
            if real.meminfo.get("SwapTotal") or model.meminfo["SwapTotal"]:
                row(f"{p}: SwapTotal (kB)", real.meminfo.get("SwapTotal", 0), model.meminfo["SwapTotal"])
                # the file's pages kswapd wrote out, and the guest's own shmem and anon pages (which stay in swap
                # when the file is emptied): within one pass too
                row(
                    f"{p}: swap used (kB)",
                    real.meminfo.get("SwapTotal", 0) - real.meminfo.get("SwapFree", 0),
                    model.meminfo["SwapTotal"] - model.meminfo["SwapFree"],
                    band if swapped else noise[FREE_WITH_PCP],
                )
            if "nr_memmap_pages" in real.vmstat:
                m0, m1 = mboot.vmstat["nr_memmap_pages"], model.vmstat["nr_memmap_pages"]
                row(
                    f"{p}: Δnr_memmap_pages",
                    real.vmstat["nr_memmap_pages"] - boot.vmstat["nr_memmap_pages"],
                    m1 - m0 if m0 is not None and m1 is not None else "n/a",
                )
            for nid, zone in sorted(set(real.zones) | set(boot.zones) | set(model.zones)):
                rz, rb = real.zones.get((nid, zone)), boot.zones.get((nid, zone))
                mz, mb = model.zones.get((nid, zone), (0, 0, 0)), mboot.zones.get((nid, zone), (0, 0, 0))
                for k, name in enumerate(("spanned", "present", "managed")):
                    r = (getattr(rz, name) if rz else 0) - (getattr(rb, name) if rb else 0)
                    m = mz[k] - mb[k]
                    if r or m:
                        row(f"{p}: node{nid} {zone} Δ{name}", r, m)
            added = {b: s for b, s in real.blocks.items() if b not in boot.blocks}
            row(
                f"{p}: hot-added blocks",
                runs({b: _block_text(s.state, s.zone, s.node, multi_node) for b, s in added.items()}),
                runs(
                    {b: _block_text(state, zone, node, multi_node) for b, (state, zone, node) in model.blocks.items()}
                ),
            )
        elif do == "dimm_add":
            size = st["size_mib"] * MiB
            appeared = _blocks_appeared(rec, i, boot)
            # acpi_memory_enable_device() logs "add_memory failed" without the errno: a failed add is "failed"
            real = "0" if appeared * boot.block_size >= size else "failed" if not appeared else f"{appeared} blocks"
            model = run.outcomes.get(i, "not run")
            if real == "failed" and model not in ("0", "not run"):
                model = "failed"  # the model's errno is in the replay (ModelRun.outcomes)
            row(f"add_memory {st['dev']} ({st['size_mib']}M, node {st['node']})", real, model)
        elif do == "write":
            real = {w["block"]: write_errno(w["status"], w["message"]) for w in st["result"]["writes"]}
            row(f"write {st['value']} > {st['file']} (step {i})", runs(real), runs(run.outcomes.get(i, {})))
        elif do == "dimm_del":
            real = "removed" if st["result"]["deleted"] else "refused"
            m = run.outcomes.get(i)
            row(f"device_del {st['dev']} (step {i})", real, "not run" if m is None else "removed" if m else "refused")
        elif do == "hugepages":
            m = run.outcomes.get(i)
            row(
                f"1 GiB pages after asking for {st['value']} (step {i})",
                st["result"]["nr_hugepages"],
                "not run" if m is None else m,
            )
        elif do == "anon":
            kills, rss_kb, tables_kb = parse_anon(st["result"]["output"])
            m = run.outcomes.get(i)
            mkills, mrss, mtables = m if m is not None else ("not run",) * 3
            row(f"anon {st['size_mib']}M (step {i}): OOM kills", kills, mkills)
            # how far below free memory the allocator let the process go before the OOM killer: a free-memory
            # quantity, within the same idle noise; and its page tables as oom_badness() weighs them
            for what, real_kb, pages in (("anon-rss", rss_kb, mrss), ("page tables", tables_kb, mtables)):
                row(
                    f"anon {st['size_mib']}M (step {i}): the victim's {what} (kB)",
                    real_kb,
                    pages * PAGE_SIZE >> 10 if isinstance(pages, int) else pages,
                    noise["MemFree"],
                )
        elif do == "vmem_resize":
            row(
                f"virtio-mem {st['dev']} to {st['size_mib']}M: plugged (MiB)",
                st["result"]["size"] // MiB,
                run.outcomes[i] // MiB if i in run.outcomes else "not run",
            )
    if any("settle_s" in st for st in rec.steps if st["do"] == "dimm_add"):
        # acpi_memory_enable_device() logs "add_memory failed" for each attempt that enabled nothing, -EEXIST counting
        # as enabled; a recording whose adds waited for the console to settle has them all, the retries included
        failed = sum("add_memory failed" in line for line in rec.data.get("kernel_log", []))
        row("add_memory() calls that failed, retries included (console)", failed, run.add_failures)
    if run.crash:
        rows.append(Row(rec.case, rec.kernel, "model crashed", "no", run.crash, EXACT, False))
    return rows


def _blocks_appeared(rec: Recording, i: int, boot) -> int:
    """The memory blocks the `dimm_add` step `i` made: its own count (the blocks the guest had when the wait
    ended, less those before the add), else the next snapshot's new blocks (adds then a snapshot)."""
    result = rec.steps[i].get("result", {})
    counted = re.match(r"blocks (\d+)", str(result.get("wait", "")))
    if counted and "blocks_before" in result:
        return int(counted.group(1)) - int(result["blocks_before"])
    nxt = rec.next_snapshot(i)
    return sum(1 for b in nxt.blocks if b not in boot.blocks) if nxt else 0


def _block_text(state: str, zone: str | None, node: int | None, multi_node: bool) -> str:
    text = f"{state}/{zone}" if state == "online" and zone else state
    return f"{text}@node{node}" if multi_node and node is not None else text


def apply_known(rows: list[Row], known: list[Known]) -> None:
    for r in rows:
        if r.agree:
            continue
        for k in known:
            if k.covers(r.case, r.kernel, r.quantity, r.real, r.model):
                r.known, r.known_index = k.reason, k.index
                break


def stale_known(rows: list[Row], known: list[Known]) -> list[Known]:
    """Entries that cover no disagreeing row any more: the model agrees now, the entry should go."""
    used = {r.known_index for r in rows if r.known is not None}
    return [k for k in known if k.index not in used]
