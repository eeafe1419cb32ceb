"""Everything the harness needs, from Debian's packages: QEMU, busybox-static and cpio on the host (apt-get
install), and the guest kernels (apt-get download + dpkg-deb -x into a cache, so the host's own kernel and
package state are untouched).

The kernels come from suites the host may not list (bookworm-backports, trixie-backports): they are fetched
through a private apt state directory whose sources are the host's own Debian mirrors (read from its apt
configuration) plus those suites. Nothing under /etc/apt is changed.
"""

from __future__ import annotations

import functools
import lzma
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

HOST_PACKAGES = {"qemu-system-x86_64": "qemu-system-x86", "busybox": "busybox-static", "cpio": "cpio"}
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# suites the private apt state adds on the host's Debian mirror; "-security" ones on its security mirror
EXTRA_SUITES = ("bookworm", "bookworm-updates", "bookworm-backports", "trixie", "trixie-backports")
SECURITY_SUITES = ("bookworm-security", "trixie-security")


@dataclass(frozen=True)
class KernelSource:
    """A kernel release to validate against: the newest Debian package whose name matches `package`."""

    label: str  # the release as the recordings name it ("6.1", "6.12", "6.18")
    package: str  # regex on the binary package name
    where: str  # what the README says about its origin


KERNELS = (
    KernelSource("6.1", r"linux-image-6\.1\.0-\d+-amd64", "Debian 12 (bookworm, bookworm-security)"),
    KernelSource(
        "6.12", r"linux-image-6\.12\.\d+\+deb12(\.\d+)?-amd64", "Debian 12 (bookworm-backports, bookworm-security)"
    ),
    KernelSource("6.18", r"linux-image-6\.18\.\d+\+deb13(\.\d+)?-amd64", "trixie-backports"),
)


@dataclass
class Kernel:
    label: str
    package: str
    version: str
    vmlinuz: Path
    modules: Path  # .../lib/modules/<release>


def cache_dir() -> Path:
    d = Path(os.environ.get("BALLOONSIM_VALIDATION_CACHE", Path.home() / ".cache" / "balloonsim-validation"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _run(argv: list[str], **kw) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, **kw)
    if res.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
    return res.stdout


def ensure_host_tools(log=print) -> None:
    missing = [pkg for tool, pkg in HOST_PACKAGES.items() if shutil.which(tool) is None]
    if not missing:
        return
    log(f"apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-q"], env=env)
    _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)


def _host_mirrors() -> tuple[str, str | None]:
    texts = []
    for p in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if p.is_file() and (p.suffix in (".list", ".sources") or p.name == "sources.list"):
            texts.append(p.read_text(errors="replace"))
    return mirrors_from_sources(texts)


def mirrors_from_sources(texts: list[str]) -> tuple[str, str | None]:
    """(Debian mirror URI, security mirror URI) from apt source files, deb822 or one-line style."""
    pairs: list[tuple[str, str]] = []  # (uri, suite)
    for text in texts:
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.findall(r"^URIs:\s*(.+)$", stanza, re.M)
            suites = re.findall(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites:
                pairs += [(u, s) for u in uris[0].split() for s in suites[0].split()]
        for m in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):
            pairs.append((m.group(1), m.group(2)))
    main = next((u for u, s in pairs if re.fullmatch(r"[a-z]+(-updates)?", s) and "debian" in u), None)
    sec = next((u for u, s in pairs if s.endswith("-security")), None)
    if main is None:
        raise RuntimeError("no Debian mirror in the host's apt sources (/etc/apt/sources.list{,.d})")
    return main.rstrip("/"), sec.rstrip("/") if sec else None


class PrivateApt:
    """apt-get/apt-cache with their own sources and state under the cache directory."""

    def __init__(self, root: Path):
        self.root = root
        (root / "state" / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (root / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        main, sec = _host_mirrors()
        lines = [f"deb [signed-by={KEYRING}] {main} {s} main" for s in EXTRA_SUITES]
        if sec:
            lines += [f"deb [signed-by={KEYRING}] {sec} {s} main" for s in SECURITY_SUITES]
        (root / "sources.list").write_text("\n".join(lines) + "\n")
        self.opts = [
            "-o", f"Dir::Etc::SourceList={root / 'sources.list'}",
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State={root / 'state'}",
            "-o", "Dir::State::status=/dev/null",
            "-o", f"Dir::Cache={root / 'cache'}",
            "-o", "APT::Sandbox::User=root",
        ]  # fmt: skip

    def update(self) -> None:
        _run(["apt-get", *self.opts, "update", "-q"])

    def names(self, prefix: str) -> list[str]:
        return _run(["apt-cache", *self.opts, "pkgnames", prefix]).split()

    def version(self, package: str) -> str:
        out = _run(["apt-cache", *self.opts, "show", "--no-all-versions", package])
        return re.search(r"^Version:\s*(\S+)", out, re.M).group(1)

    def download(self, package: str, dest: Path) -> Path:
        _run(["apt-get", *self.opts, "download", package], cwd=dest)
        return next(dest.glob(f"{package}_*.deb"))


def _natural(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def fetch_kernels(labels: list[str] | None = None, log=print) -> dict[str, Kernel]:
    """Download and unpack each kernel (once; later calls reuse the cache)."""
    root = cache_dir()
    apt = PrivateApt(root / "apt")
    apt.update()
    out = {}
    for src in KERNELS:
        if labels and src.label not in labels:
            continue
        names = [n for n in apt.names("linux-image-") if re.fullmatch(src.package, n)]
        if not names:
            raise RuntimeError(f"no package matching {src.package} in {src.where}")
        pkg = max(names, key=_natural)
        version = apt.version(pkg)
        dest = root / "kernels" / f"{pkg}_{version}"
        if not (dest / ".complete").exists():
            log(f"apt-get download {pkg} ({version})")
            debs = root / "debs"
            debs.mkdir(exist_ok=True)
            deb = apt.download(pkg, debs)
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            _run(["dpkg-deb", "-x", str(deb), str(dest)])
            deb.unlink()
            (dest / ".complete").touch()
        vmlinuz = next((dest / "boot").glob("vmlinuz-*"))
        release = vmlinuz.name.removeprefix("vmlinuz-")
        mods = next(
            p for p in (dest / "lib" / "modules" / release, dest / "usr" / "lib" / "modules" / release) if p.is_dir()
        )
        out[src.label] = Kernel(src.label, pkg, version, vmlinuz, mods)
    return out


@functools.cache
def _module_index(modules: Path) -> dict[str, Path]:
    return {p.name.split(".ko")[0].replace("-", "_"): p for p in modules.rglob("*.ko*")}


def module_file(modules: Path, name: str) -> Path | None:
    """The .ko (possibly compressed) of module `name`; None when it is built in or absent."""
    return _module_index(modules).get(name.replace("-", "_"))


def read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".zst":
        return _zstd_decompress(path)
    if path.suffix == ".gz":
        import gzip

        return gzip.decompress(data)
    return data


def _zstd_decompress(path: Path) -> bytes:
    if shutil.which("zstd") is None:
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "zstd"])
    return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout


def module_closure(modules: Path, names: list[str]) -> list[tuple[str, bytes]]:
    """`names` and their dependencies (.modinfo "depends="), dependencies first; built-in ones left out."""
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        path = module_file(modules, name)
        if path is None:
            return  # built in (modules.builtin) or not needed
        data = read_module(path)
        m = re.search(rb"(?:^|\x00)depends=([^\x00]*)", data)
        for dep in m.group(1).decode().split(",") if m and m.group(1) else []:
            visit(dep)
        order.append((name, data))

    for n in names:
        visit(n)
    return order
