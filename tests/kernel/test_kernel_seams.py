"""The seam between the kernel model and the memmap strategies: the vmemmap API is all a strategy gets.

A strategy can be written against kernel/vmemmap.py alone, never imports the guest, and the trace of the
RFC's refcounted altmap follows from what the model tracks (the sections sharing the altmap), not from
arithmetic in the strategy.
"""

import ast
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from kmodel_helpers import add_backed, diff, make_guest, offline_all, online_all, populate, state

from balloonsim.kernel import Guest, GuestConfig, GuestCrash
from balloonsim.kernel.errno import EINVAL, ENOMEM
from balloonsim.kernel.extents import Extents
from balloonsim.kernel.vmemmap import BlockView, Vmemmap
from balloonsim.units import PAGE_SHIFT, PAGES_PER_SECTION, GiB, MiB, pfn_to_page_addr

ROOT = Path(__file__).resolve().parents[2] / "balloonsim"
S = 4 * GiB >> PAGE_SHIFT  # first pfn of block 32


# ------------------------------------------------------------------- a strategy from the API alone ---
class TailAltmap:
    """Each block's memmap in its own last pages: written against the vmemmap API and nothing else."""

    name = "tail-altmap"

    def __init__(self, fail_after: int | None = None):
        self.fail_after = fail_after  # place that many blocks, then give up

    def place(self, vm: Vmemmap, nid: int, blocks: Sequence[BlockView], hint: Extents | None, mhp_flag: bool) -> int:
        nr = vm.memmap_pages_per_block
        for k, b in enumerate(blocks):
            if self.fail_after is not None and k == self.fail_after:
                return -ENOMEM
            err = vm.vmemmap_populate(b, vm.vmem_altmap(b.end_pfn - nr, nr))
            if err:
                return err
        return 0


def _guest(strategy, **cfg) -> Guest:
    cfg.setdefault("block_size", 128 * MiB)
    cfg.setdefault("boot", [2 * GiB])  # the RFC's guest: hot-added memory from 4G
    return Guest(GuestConfig(**cfg), strategy, trace=True)


def test_a_strategy_needs_only_the_vmemmap_api():
    g = _guest(TailAltmap())
    populate(g, 4 * GiB, 256 * MiB)
    boot = g.meminfo()
    assert g.add_memory(0, 4 * GiB, 256 * MiB) == 0
    for bid in (32, 33):
        b = g.blocks[bid]
        assert b.memmap.kind == "altmap"
        assert b.memmap.in_range == b.vmemmap_pfns == Extents.span(b.end_pfn - 512, b.end_pfn)
        assert b.memmap.host_blocks == (bid,)
    # the kernel model did the books: vmemmap pages are present, not managed, and nothing was allocated
    assert g.meminfo().memmap_in_range_pages == 1024 and g.meminfo().memmap_kmalloc_pages == 0
    online_all(g, "online_movable")  # ZONE_NORMAL of this 2 GiB guest would keep its first block
    assert g.meminfo().MemTotal_kb - boot.MemTotal_kb == 2 * 129024
    # the trace comes from the model: one vmemmap_populate line per 2 MiB of vmemmap, at the altmap pfn
    assert g.trace[0] == (
        f"vmemmap_populate: start/end: {pfn_to_page_addr(S):x} - {pfn_to_page_addr(S + PAGES_PER_SECTION):x} "
        f"PMD altmap pfn {S + 32768 - 512:#x}"
    )
    offline_all(g)
    assert g.remove_memory(4 * GiB, 256 * MiB) == 0
    assert g.meminfo().MemTotal_kb == boot.MemTotal_kb


def test_a_strategy_that_fails_half_way_leaves_nothing_behind():
    g = _guest(TailAltmap(fail_after=1))
    populate(g, 4 * GiB, 256 * MiB)
    before = state(g)
    assert g.add_memory(0, 4 * GiB, 256 * MiB) == -ENOMEM  # block 32 got its altmap, then the strategy gave up
    assert diff(state(g), before) == {}
    assert g.backing.pending(32) == Extents.span(S, S + 32768)  # the backing stays with the range


def test_the_tail_memmap_is_written_where_it_lies():
    """The model writes the memmap where the strategy put it: unbacked there, the guest dies at online."""
    g = _guest(TailAltmap())
    populate(g, 4 * GiB, 64 * MiB)  # the first half only; the memmap is in the last 2 MiB
    assert g.add_memory(0, 4 * GiB, 128 * MiB) == 0
    with pytest.raises(GuestCrash) as exc:
        g.online_memory_block(32)
    assert exc.value.phys_addr == (S + 32768 - 512) << PAGE_SHIFT


def test_the_api_refuses_what_a_kernel_would_not_do():
    class Greedy(TailAltmap):
        def place(self, vm, nid, blocks, hint, mhp_flag):
            vm.vmem_altmap(blocks[-1].end_pfn, 512)  # the block after the range: not being added
            return 0

    g = _guest(Greedy())
    populate(g, 4 * GiB, 128 * MiB)
    with pytest.raises(ValueError, match="beyond the blocks being added"):
        g.add_memory(0, 4 * GiB, 128 * MiB)

    class TooSmall(TailAltmap):
        def place(self, vm, nid, blocks, hint, mhp_flag):
            return vm.vmemmap_populate(blocks[0], vm.vmem_altmap(blocks[0].start_pfn, 100))

    g = _guest(TooSmall())
    assert add_backed(g, 0, 4 * GiB, 128 * MiB) == -ENOMEM  # altmap_alloc_block_buf(): more than `free`
    assert not g.blocks


def test_without_a_strategy_the_kernel_uses_the_ordinary_memmap():
    g = Guest(GuestConfig(boot=[2 * GiB], block_size=128 * MiB))
    assert add_backed(g, 0, 4 * GiB, 1 * GiB) == 0
    assert all(b.memmap.kind == "kmalloc" for b in g.blocks.values())
    assert g.stats.memmap_kmalloc_pages == 4096


# ----------------------------------------------------------------------------------- the imports ---
ALLOWED_FOR_STRATEGIES = {
    "balloonsim.kernel.vmemmap",
    "balloonsim.kernel.errno",
    "balloonsim.kernel.extents",
    "balloonsim.units",
    "balloonsim.errors",
}


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any level of the file (functions and TYPE_CHECKING blocks too)."""
    pkg = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
    if path.name == "__init__.py":
        pkg = pkg.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = pkg.rsplit(".", node.level - (path.name == "__init__.py"))[0]
                base = f"{parent}.{base}" if base else parent
            modules = {f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}")}
            out |= modules  # `from pkg import module` imports the module; other names come from `base`
            if len(modules) < len(node.names):
                out.add(base)
    out.discard(pkg)
    return out


def _is_module(name: str) -> bool:
    return (ROOT.parent / Path(*name.split("."))).with_suffix(".py").exists()


def _graph(*packages: str) -> dict[str, set[str]]:
    graph = {}
    for package in packages:
        for path in sorted((ROOT / package).glob("*.py")):
            name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
            graph[name] = _imports(path)
    return graph


@pytest.mark.parametrize("path", sorted((ROOT / "memmap").glob("*.py")), ids=lambda p: p.name)
def test_strategies_import_only_the_vmemmap_api_and_leaves(path):
    theirs = {m for m in _imports(path) if m.startswith("balloonsim.") and not m.startswith("balloonsim.memmap")}
    allowed = ALLOWED_FOR_STRATEGIES | ({"balloonsim.registry"} if path.name == "__init__.py" else set())
    assert theirs <= allowed, theirs - allowed  # the package's __init__ finds strategies in the registry


def test_no_strategy_loads_the_guest():
    """Importing every strategy (and the registry) in a fresh interpreter does not load kernel/guest.py."""
    mods = [f"balloonsim.memmap.{p.stem}" for p in sorted((ROOT / "memmap").glob("*.py")) if p.stem != "__init__"]
    code = f"import sys\nfor m in {mods!r}: __import__(m)\nprint('balloonsim.kernel.guest' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_kernel_does_not_import_the_strategies():
    for mod, deps in _graph("kernel").items():
        assert not {d for d in deps if d.startswith("balloonsim.memmap")}, mod


def test_no_import_cycle_in_kernel_and_memmap():
    """No module imports a module that imports it, at any depth, lazily or not. An edge is an import
    statement's module (`from a.b import c` is an edge to a.b, or to a.b.c when c is a module); the parent
    package Python runs first is not one, as in the usual import-graph tools."""
    graph = _graph("kernel", "memmap")
    for start in graph:
        seen, todo = set(), [d for d in graph[start] if d in graph]
        while todo:
            mod = todo.pop()
            assert mod != start, f"{start} imports itself through {sorted(seen)}"
            if mod not in seen:
                seen.add(mod)
                todo.extend(d for d in graph[mod] if d in graph)


# ------------------------------------------------------------------ the RFC trace from tracked state ---
@pytest.mark.parametrize(("size", "block_size"), [(2 * GiB, 128 * MiB), (2 * GiB, 1 * GiB), (3 * GiB, 128 * MiB)])
def test_refcount_is_the_sections_sharing_the_altmap(size, block_size):
    """2 GiB at 4 GiB (not the README's 10 GiB): one altmap, refcount = its sections, freed backwards."""
    g = make_guest("altmap-range", trace=True, block_size=block_size)
    assert add_backed(g, 0, 4 * GiB, size) == 0
    sections = size // (128 * MiB)
    memmap = (size >> PAGE_SHIFT) * 64 // 4096
    altmap = g.blocks[32 if block_size == 128 * MiB else 4].memmap.altmap
    assert altmap.refcount == sections and altmap.alloc == memmap
    assert all(b.memmap.altmap is altmap for b in g.blocks.values())
    va1 = pfn_to_page_addr(S + memmap - 1)
    assert g.trace == [f"This has added: {pfn_to_page_addr(S):x} - {va1:x} (refcount: {sections})"]
    assert g.remove_memory(4 * GiB, size) == 0
    frees = g.trace[1:]
    starts = [pfn_to_page_addr(S + k * PAGES_PER_SECTION) for k in reversed(range(sections))]
    assert frees == [f"vmemmap_free: start/end: {a:x} - {a + 0x200000:x}" for a in starts]


def test_refcount_counts_sections_not_vmemmap_pmds():
    """With an 80-byte struct page a section's memmap is 2.5 MiB: the refcount still counts sections."""
    g = make_guest("altmap-range", trace=True, struct_page_size=80)
    assert add_backed(g, 0, 4 * GiB, 2 * GiB) == 0
    assert g.trace[0].endswith("(refcount: 16)")


def test_two_ranges_removed_together_free_each_altmap_at_its_last_section():
    g = make_guest("altmap-range", trace=True)
    assert add_backed(g, 0, 4 * GiB, 256 * MiB) == 0
    assert add_backed(g, 0, 4 * GiB + 256 * MiB, 256 * MiB) == 0
    n = len(g.trace)
    assert g.remove_memory(4 * GiB, 512 * MiB) == 0
    secs = [int(line.split()[2], 16) for line in g.trace[n:]]
    first = [pfn_to_page_addr(S + k * PAGES_PER_SECTION) for k in range(4)]
    assert secs == [first[1], first[0], first[3], first[2]]  # each range backwards, in removal order


def test_refcounted_altmap_goes_whole():
    g = make_guest("altmap-range")
    assert add_backed(g, 0, 4 * GiB, 512 * MiB) == 0
    assert g.remove_memory(4 * GiB + 256 * MiB, 256 * MiB) == -EINVAL  # holds 2 of its 4 references
    assert g.remove_memory(4 * GiB, 512 * MiB) == 0
