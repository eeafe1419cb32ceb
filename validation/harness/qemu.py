"""One guest under QEMU: the command line, the control port the guest agent listens on, and QMP.

The guest's console (kernel messages) goes to a log file on the first serial port; the second serial port is
the control channel: the host writes "<n> <shell command>" and reads the output framed by "@@B <n>" and
"@@E <n> <status>" (see guest_init.sh). TCG, not KVM: the results must not depend on the host's CPU or on
nested virtualisation being available, and a Debian kernel boots in a few seconds under TCG anyway. The CPU is
TCG's "max" without la57: 4-level paging, the vmemmap at 0xffffea0000000000 as on most x86_64 guests and in
balloonsim's model.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from .qmp import QMP


class GuestError(RuntimeError):
    pass


class BootFailed(GuestError):
    """The guest never reached its agent: nothing of a case ran yet, so booting again starts it afresh. Under TCG
    about one boot in 40 of Debian's 6.18 oopses before init (validation/README.md)."""


@dataclass
class MachineSpec:
    boot_mem_mib: int = 2048
    numa_mem_mib: list[int] | None = None  # per node; None: one node. 0: a memoryless node (CPU only)
    cpus: int = 2
    slots: int = 8
    maxmem_gib: int = 32
    virtio_mem: dict | None = None  # {"id", "size_mib" (region), "node"}
    swap_mib: int = 0  # a virtio-blk disk of this size (/dev/vda) for the `swapon` step; 0: none
    cmdline: list[str] = field(default_factory=list)


def qemu_argv(spec: MachineSpec, kernel: str, initrd: str, workdir: str) -> list[str]:
    argv = [
        "qemu-system-x86_64",
        "-machine", "q35",
        "-accel", "tcg",
        "-cpu", "max,la57=off",
        "-smp", str(spec.cpus),
        "-m", f"{spec.boot_mem_mib}M,slots={spec.slots},maxmem={spec.maxmem_gib}G",
        "-nographic", "-no-reboot", "-nodefaults",
        "-kernel", kernel,
        "-initrd", initrd,
        "-append", " ".join(["console=ttyS0", "panic=-1", *spec.cmdline]),
        "-chardev", f"file,id=con,path={workdir}/console.log",
        "-serial", "chardev:con",
        "-chardev", f"socket,id=ctl,path={workdir}/ctl.sock,server=on,wait=off",
        "-serial", "chardev:ctl",
        "-qmp", f"unix:{workdir}/qmp.sock,server=on,wait=off",
    ]  # fmt: skip
    if spec.numa_mem_mib:
        cpus_per_node = max(1, spec.cpus // len(spec.numa_mem_mib))
        for nid, mib in enumerate(spec.numa_mem_mib):
            cpus = f"cpus={nid * cpus_per_node}-{nid * cpus_per_node + cpus_per_node - 1}"
            if mib:
                argv += ["-object", f"memory-backend-ram,id=ram{nid},size={mib}M"]
                argv += ["-numa", f"node,nodeid={nid},{cpus},memdev=ram{nid}"]
            else:
                argv += ["-numa", f"node,nodeid={nid},{cpus}"]
    if spec.virtio_mem:
        vm = spec.virtio_mem
        argv += ["-object", f"memory-backend-ram,id={vm['id']}-mem,size={vm['size_mib']}M"]
        argv += [
            "-device",
            f"virtio-mem-pci,id={vm['id']},memdev={vm['id']}-mem,node={vm.get('node', 0)},requested-size=0",
        ]
    if spec.swap_mib:  # a sparse raw file in the guest's work directory, gone with it
        with open(os.path.join(workdir, "swap.img"), "wb") as fh:
            fh.truncate(spec.swap_mib << 20)
        argv += ["-drive", f"file={workdir}/swap.img,if=none,id=swap,format=raw,cache=unsafe"]
        argv += ["-device", "virtio-blk-pci,drive=swap"]
    return argv


class Guest:
    """A running guest. Use as a context manager; the QEMU process is killed on exit."""

    def __init__(self, spec: MachineSpec, kernel: str, initrd: str, boot_timeout: float = 180.0):
        self.workdir = tempfile.mkdtemp(prefix="balloonsim-validate-")
        self.argv = qemu_argv(spec, kernel, initrd, self.workdir)
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        self._buf = b""
        self._n = 0
        try:
            self.qmp = QMP(os.path.join(self.workdir, "qmp.sock"))
            self.ctl = self._connect(os.path.join(self.workdir, "ctl.sock"))
            ready = self._read_line(boot_timeout, until=b"@@READY")
        except (OSError, RuntimeError) as exc:
            self.proc.kill()
            out = self.proc.communicate()[0].decode(errors="replace").strip()
            raise BootFailed(f"QEMU did not start a guest ({exc}); QEMU said: {out[-2000:]}") from None
        self.uname_r = ready.split()[1]

    @staticmethod
    def _connect(path: str) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + 30
        while True:
            try:
                s.connect(path)
                return s
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _read_line(self, timeout: float, until: bytes | None = None) -> str:
        deadline = time.monotonic() + timeout
        while True:
            if b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                text = line.decode(errors="replace").rstrip("\r")
                if until is None or line.startswith(until):
                    return text
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise GuestError(f"the guest said nothing for {timeout:.0f} s; console: {self.console_tail()}")
            self.ctl.settimeout(left)
            try:
                chunk = self.ctl.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise GuestError(f"the guest closed its control port; console: {self.console_tail()}")
            self._buf += chunk

    def run(self, command: str, timeout: float = 600.0) -> tuple[int, str]:
        """Run one shell command in the guest; (exit status, output)."""
        self._n += 1
        n = self._n
        self.ctl.sendall(f"{n} {command}\n".encode())
        begin = f"@@B {n}"
        while self._read_line(timeout) != begin:
            pass
        out = []
        while True:
            line = self._read_line(timeout)
            if line.startswith(f"@@E {n} "):
                return int(line.split()[2]), "\n".join(out)
            out.append(line)

    def console_tail(self, lines: int = 20) -> str:
        try:
            with open(os.path.join(self.workdir, "console.log"), errors="replace") as f:
                return " | ".join(f.read().splitlines()[-lines:])
        except OSError:
            return "(no console log)"

    def console(self) -> str:
        with open(os.path.join(self.workdir, "console.log"), errors="replace") as f:
            return f.read()

    def close(self) -> None:
        try:
            self.ctl.sendall(b"0 poweroff -f\n")
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.qmp.close()
        self.ctl.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Guest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
