"""The guest's initramfs: busybox-static, the agent (guest_init.sh) as /init, and the kernel modules a case
needs (virtio-mem, virtio-blk for a swap disk, and what they depend on), decompressed, with their load order in
/modules/order."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from .packages import Kernel, cache_dir, module_closure

GUEST_INIT = Path(__file__).with_name("guest_init.sh")
MODULES = ["virtio_pci", "virtio_mem", "virtio_blk"]  # virtio_pci and virtio_mem built in on 6.12+


def build_initramfs(kernel: Kernel) -> Path:
    """A gzip'ed newc cpio for `kernel`, cached by the content of everything in it."""
    busybox = Path(shutil.which("busybox") or "/bin/busybox")
    mods = module_closure(kernel.modules, MODULES)
    h = hashlib.sha256(GUEST_INIT.read_bytes() + busybox.read_bytes())
    for name, data in mods:
        h.update(name.encode() + data)
    out = cache_dir() / "initramfs" / f"{kernel.vmlinuz.name.removeprefix('vmlinuz-')}-{h.hexdigest()[:12]}.cpio.gz"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for d in ("bin", "proc", "sys", "dev", "tmp", "modules"):
            (root / d).mkdir()
        shutil.copy2(busybox, root / "bin" / "busybox")
        shutil.copy2(GUEST_INIT, root / "init")
        (root / "init").chmod(0o755)
        for name, data in mods:
            (root / "modules" / f"{name}.ko").write_bytes(data)
        (root / "modules" / "order").write_text("".join(f"{name}.ko\n" for name, _ in mods))
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        cpio = subprocess.run(
            ["cpio", "-o", "-H", "newc", "--quiet", "--reproducible"],
            input="\n".join(["."] + files).encode(), cwd=root, capture_output=True, check=True,
        ).stdout  # fmt: skip
        import gzip

        tmp_out = out.with_suffix(".part")
        tmp_out.write_bytes(gzip.compress(cpio, compresslevel=1, mtime=0))
        tmp_out.rename(out)
    return out
