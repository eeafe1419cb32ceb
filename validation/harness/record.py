"""Run the cases on real kernels under QEMU and write validation/recorded/<case>--<kernel>.json.

Entry point: `balloonsim validate --record [CASE...]` (or `python -m validation.harness.record`). Needs root
the first time (apt-get installs QEMU, busybox-static and cpio, and downloads the kernels into a cache).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from .cases import Case, get_cases
from .initramfs import build_initramfs
from .packages import Kernel, ensure_host_tools, fetch_kernels
from .qemu import BootFailed, Guest
from .qmp import QMPError

FORMAT = 1
RECORDED = Path(__file__).resolve().parents[1] / "recorded"
MIB = 1 << 20
MEM = "/sys/devices/system/memory"
QUIET_S = 5.0  # how long a `quiet` DIMM add is left alone (an add of 10 GiB takes about 1 s under TCG)


class Runner:
    """Carries one case's steps out on one running guest."""

    def __init__(self, guest: Guest, case: Case):
        self.g = guest
        self.case = case
        self.block_size = int(self.sh("cat /sys/devices/system/memory/block_size_bytes")[1], 16)
        self.devices: dict[str, tuple[int, int]] = {}  # dev -> (addr, size)
        if case.machine.virtio_mem:
            vm = case.machine.virtio_mem
            self.devices[vm["id"]] = (self._vmem_addr(vm["id"]), vm["size_mib"] * MIB)

    def sh(self, command: str, timeout: float = 600.0) -> tuple[int, str]:
        return self.g.run(command, timeout)

    def _vmem_addr(self, dev: str) -> int:
        for d in self.g.qmp.command("query-memory-devices"):
            if d["data"].get("id") == dev:
                return d["data"]["memaddr"]
        raise RuntimeError(f"virtio-mem device {dev} not found by query-memory-devices")

    def nblocks(self) -> int:
        return int(self.sh("nblocks")[1])

    def step(self, st: dict) -> dict:
        return getattr(self, "do_" + st["do"])(st)

    def do_idle(self, st: dict) -> dict:
        """The same full snapshot as a phase's, repeated on the idle guest; its meminfo and zoneinfo are kept."""
        samples = []
        for i in range(st["samples"]):
            if i:
                time.sleep(st["interval_s"])
            raw = self.do_snap(st)["raw"]
            samples.append({"meminfo": raw["meminfo"], "zoneinfo": raw["zoneinfo"]})
        return {"samples": samples}

    def do_snap(self, st: dict) -> dict:
        _, out = self.sh("snap")
        sections: dict[str, list[str]] = {}
        cur = None
        for line in out.splitlines():
            if line.startswith("@@S "):
                cur = line[4:]
                sections[cur] = []
            elif cur is not None:
                sections[cur].append(line)
        return {"raw": {k: "\n".join(v) for k, v in sections.items()}}

    def do_dimm_add(self, st: dict) -> dict:
        dev, size = st["dev"], st["size_mib"] * MIB
        before = self.nblocks()
        t0 = time.monotonic()
        self.g.qmp.command("object-add", **{"qom-type": "memory-backend-ram", "id": f"{dev}-mem", "size": size})
        self.g.qmp.command("device_add", driver="pc-dimm", id=dev, memdev=f"{dev}-mem", node=st["node"])
        qmp_s = time.monotonic() - t0
        addr = next(d["data"]["addr"] for d in self.g.qmp.command("query-memory-devices") if d["data"]["id"] == dev)
        self.devices[dev] = (addr, size)
        want = before + size // self.block_size
        if st.get("quiet"):
            waited, stable = self._wait_quietly(want, st.get("wait_s", 120), st.get("quiet_s", QUIET_S)), ""
            if "settle_s" in st:  # the ACPI rescan this add started may still be retrying earlier failed DIMMs
                stable = self._console_settles(st["settle_s"], st.get("wait_s", 120))
                waited = f"{waited} then blocks {self.nblocks()}"
        else:
            _, waited = self.sh(f"waitblocks {want} {st.get('wait_s', 120)}")
            _, stable = self.sh("waitstable 2 120")
        return {
            "addr": addr,
            "blocks_before": before,
            "wait": waited,
            "stable": stable,
            "host_s": round(time.monotonic() - t0, 3),
            "qmp_s": round(qmp_s, 3),
        }

    def _wait_quietly(self, want: int, limit_s: float, quiet_s: float = QUIET_S) -> str:
        """Wait for the DIMM's blocks without touching the guest while add_memory() may still run: a guest short of
        memory whose add holds its free pages down to the min watermarks OOM-kills whatever faults meanwhile, and
        panics ("System is deadlocked on memory") when only init, the agent, is left to fault. For `quiet_s` the
        host only reads the console, where a failed add says so (acpi_memory_enable_device(): "add_memory
        failed"); then it asks the agent for the block count (`nblocks`: a glob and an echo, no new process)
        until every block is there, or `limit_s` has passed."""
        seen = len(self.g.console())
        t0 = time.monotonic()
        while True:
            time.sleep(0.25)
            waited = time.monotonic() - t0
            if "add_memory failed" in self.g.console()[seen:]:
                return f"blocks {self.nblocks()} add_memory failed after_s {waited:.1f}"
            if waited < quiet_s:
                continue
            have = self.nblocks()
            if have == want:
                return f"blocks {have} waited_s {waited:.1f}"
            if waited > limit_s:
                return f"blocks {have} waited_s {waited:.1f} timeout"
            time.sleep(0.75)

    def _console_settles(self, quiet_s: float, limit_s: float) -> str:
        """Wait until the console has said nothing for `quiet_s`. A DIMM's ACPI notification rescans every memory
        device (acpi_scan_rescan_bus() -> acpi_bus_scan()), so each new add retries the earlier ones whose
        add_memory() failed, each retry printing its own "add_memory failed": the next step must not begin (a
        `release` would let a retry still running succeed) before the rescan is over."""
        t0 = last_change = time.monotonic()
        size = len(self.g.console())
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            cur = len(self.g.console())
            if cur != size:
                size, last_change = cur, now
            if now - last_change >= quiet_s:
                return f"console quiet after_s {now - t0:.1f}"
            if now - t0 > limit_s:
                return f"console still busy after_s {now - t0:.1f} timeout"

    def do_sysctl(self, st: dict) -> dict:
        path = "/proc/sys/" + st["key"].replace(".", "/")
        status, out = self.sh(f"echo {st['value']} > {path} && cat {path}")
        if status:
            raise RuntimeError(f"sysctl {st['key']}={st['value']}: {out}")
        return {"output": out}

    def do_hugepages(self, st: dict) -> dict:
        """Ask the kernel for `value` 1 GiB pages (a write to nr_hugepages: alloc_contig_pages() per page, as many as
        it finds) and read back how many it holds."""
        path = "/sys/kernel/mm/hugepages/hugepages-1048576kB"
        t0 = time.monotonic()
        status, out = self.sh(
            f"echo {st['value']} > {path}/nr_hugepages; cat {path}/nr_hugepages {path}/free_hugepages"
        )
        lines = out.split()
        if status or len(lines) != 2:
            raise RuntimeError(f"hugepages {st['value']}: {out}")
        return {
            "nr_hugepages": int(lines[0]),
            "free_hugepages": int(lines[1]),
            "host_s": round(time.monotonic() - t0, 3),
        }

    def do_release(self, st: dict) -> dict:
        """Empty the `fill` step's file (a redirection of the agent's shell: no process is started)."""
        return {"output": self.sh(": > /pressure/fill; grep -E '^(MemFree|Shmem):' /proc/meminfo")[1]}

    def do_write(self, st: dict) -> dict:
        addr, size = self.devices[st["dev"]]
        first, last = addr // self.block_size, (addr + size) // self.block_size - 1
        _, out = self.sh(f"wrblocks {st['value']} {st['file']} {first} {last}")
        writes = []
        for line in out.splitlines():
            path, status, *msg = line.split(" ", 2)
            bid = int(re.search(r"memory(\d+)/", path).group(1))
            writes.append({"block": bid, "status": int(status), "message": msg[0] if msg else ""})
        # busybox's timeout leaves a watcher per write that polls its command once a second: without this wait
        # the next snapshot would count their stacks, page tables and pages (1-2 MiB for 8-16 writes). Recordings
        # made before 2026-12-03 14:30 UTC did not wait (known disagreement [6] covers that).
        _, watchers = self.sh("waitwatchers")
        return {"writes": writes, "watchers": watchers}

    def do_fill(self, st: dict) -> dict:
        if "size_mib" in st:
            return {"output": self.sh(f"fillsize {st['size_mib']}")[1]}
        return {"output": self.sh(f"fill {st['free_mib']}")[1]}

    def do_anon(self, st: dict) -> dict:
        """A process faults in `size_mib` MiB of anonymous memory (the guest's `anon`); its output: oom_kill before
        and after, and the kernel's "Killed process" line when the OOM killer took it."""
        return {"output": self.sh(f"anon {st['size_mib']}")[1]}

    def do_hold(self, st: dict) -> dict:
        """A process that faults in `size_mib` MiB of anonymous memory and keeps it (the guest's `hold`)."""
        return {"output": self.sh(f"hold {st['size_mib']}")[1]}

    def do_swapon(self, st: dict) -> dict:
        """The machine's swap disk made swap (mkswap, swapon); /proc/swaps after."""
        status, out = self.sh("swapondisk")
        if status:
            raise RuntimeError(f"swapon: {out}")
        return {"output": out}

    def do_activity(self, st: dict) -> dict:
        return {"output": self.sh(f"activity {st['seconds']}")[1]}

    def do_dimm_del(self, st: dict) -> dict:
        """device_del is an ACPI eject request: the guest offlines every block and removes the range, then QEMU
        emits DEVICE_DELETED; or the guest refuses and reports it with _OST (ACPI_DEVICE_OST, source 3 = eject,
        status 0x84 = in progress, anything else but 0 = failed)."""
        dev = st["dev"]
        t0 = time.monotonic()
        self.g.qmp.command("device_del", id=dev)

        def final(e: dict) -> bool:
            data = e.get("data", {})
            if e["event"] == "DEVICE_DELETED":
                return data.get("device") == dev
            info = data.get("info", {})
            return e["event"] == "ACPI_DEVICE_OST" and info.get("source") == 3 and info.get("status") not in (0, 0x84)

        ev = self.g.qmp.wait_event(final, timeout=st.get("timeout_s", 120))
        events = [*self.g.qmp.events, *([ev] if ev else [])]
        self.g.qmp.events.clear()
        deleted = ev is not None and ev["event"] == "DEVICE_DELETED"
        if deleted:
            self.g.qmp.command("object-del", id=f"{dev}-mem")
        _, stable = self.sh("waitstable 2 60")
        return {
            "deleted": deleted,
            "host_s": round(time.monotonic() - t0, 3),
            "ost": [e["data"]["info"] for e in events if e["event"] == "ACPI_DEVICE_OST"],
            "stable": stable,
        }

    def do_vmem_resize(self, st: dict) -> dict:
        dev, want = st["dev"], st["size_mib"] * MIB
        path = f"/machine/peripheral/{dev}"
        t0 = time.monotonic()
        self.g.qmp.command("qom-set", path=path, property="requested-size", value=want)
        size, last_change, history = None, time.monotonic(), []
        while True:
            cur = self.g.qmp.command("qom-get", path=path, property="size")
            now = time.monotonic()
            if cur != size:
                size, last_change = cur, now
                history.append([round(now - t0, 2), cur])
            if size == want or now - last_change > st.get("settle_s", 20) or now - t0 > st.get("timeout_s", 180):
                break
            time.sleep(0.25)
        _, stable = self.sh("waitstable 2 60")
        return {"addr": self.devices[dev][0], "size": size, "requested": want, "history": history, "stable": stable}


def _qemu_version() -> str:
    return subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def _portable_argv(argv: list[str], workdir: str, kernel: Kernel, initrd: Path) -> list[str]:
    out = []
    for a in argv:
        a = a.replace(workdir, "$WORKDIR").replace(str(kernel.vmlinuz), kernel.vmlinuz.name)
        out.append(a.replace(str(initrd), "initramfs.cpio.gz"))
    return out


def record_case(case: Case, kernel: Kernel, log=print) -> dict:
    initrd = build_initramfs(kernel)
    t0 = time.monotonic()
    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
    with Guest(case.machine, str(kernel.vmlinuz), str(initrd)) as g:
        boot_s = time.monotonic() - t0
        runner = Runner(g, case)
        steps = []
        for st in case.steps:
            ts = time.monotonic()
            result = runner.step(st)
            steps.append({**st, "result": result, "elapsed_s": round(time.monotonic() - ts, 3)})
        cmdline = g.run("cat /proc/cmdline")[1]
        flags = g.run("grep -m1 '^flags' /proc/cpuinfo")[1]
        console = g.console()
        provenance = {
            "uname_r": g.uname_r,
            "kernel_package": f"{kernel.package} {kernel.version}",
            "kernel_cmdline": cmdline,
            "qemu_version": _qemu_version(),
            "qemu_argv": _portable_argv(g.argv, g.workdir, kernel, initrd),
            "date": started,
            "boot_s": round(boot_s, 2),
            "duration_s": round(time.monotonic() - t0, 2),
            "cpu_flags": flags.split(":", 1)[-1].split(),
            "recorded_by": "balloonsim validate --record",
        }
    after_init = console.split("Run /init as init process", 1)[-1].splitlines()[1:]
    return {
        "format": FORMAT,
        "case": case.name,
        "kernel": kernel.label,
        "what": case.what,
        "machine": asdict(case.machine),
        "provenance": provenance,
        "steps": steps,
        "kernel_log": [ln for ln in after_init if ln.strip()][:400],
    }


def write_recording(rec: dict, out_dir: Path = RECORDED) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{rec['case']}--{rec['kernel']}.json"
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(rec, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def record(names: list[str] | None = None, kernels: list[str] | None = None, out_dir: Path = RECORDED, log=print):
    """Record every (case, kernel) pair; returns the paths written. Failures are reported and skipped; a guest
    that does not boot is booted once more."""
    cases = get_cases(names)
    t0 = time.monotonic()
    ensure_host_tools(log)
    ks = fetch_kernels(kernels, log)
    written, failed = [], []
    for kernel in ks.values():
        for case in cases:
            ts = time.monotonic()
            try:
                try:
                    rec = record_case(case, kernel, log)
                except BootFailed as exc:  # before any step: a second boot is a fresh start
                    log(f"{case.name} on {kernel.label}: the guest did not boot ({str(exc)[:80]}...); booting again")
                    rec = record_case(case, kernel, log)
            except (RuntimeError, QMPError, OSError) as exc:
                failed.append((case.name, kernel.label, str(exc)))
                log(f"{case.name} on {kernel.label}: FAILED: {exc}")
                continue
            written.append(write_recording(rec, out_dir))
            log(f"{case.name} on {kernel.label} ({rec['provenance']['uname_r']}): {time.monotonic() - ts:.0f} s")
    log(f"recorded {len(written)} of {len(cases) * len(ks)} in {time.monotonic() - t0:.0f} s")
    return written, failed


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("cases", nargs="*")
    ap.add_argument("--kernel", action="append")
    args = ap.parse_args()
    _, bad = record(args.cases or None, args.kernel)
    sys.exit(1 if bad else 0)
