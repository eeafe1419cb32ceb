"""The maps of the code stay true to it: README.md's Layout and docs/architecture.md name every module there is,
and every module path they name exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from balloonsim.kernel.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
SOURCES = (ROOT / "balloonsim", ROOT / "drivers", ROOT / "validation" / "harness")


def modules() -> list[Path]:
    return sorted(p for folder in SOURCES for p in folder.rglob("*.py") if p.name != "__init__.py")


def layout() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text[text.index("## Layout") :]


def named_files(text: str) -> set[str]:
    """The file names a text mentions (`kernel/guest.py`, `guest.py` and `guest.py (add_memory...)` alike)."""
    return {m.rsplit("/", 1)[-1] for m in re.findall(r"[\w/]+\.py\b", text)}


def test_architecture_names_every_module():
    named = named_files(ARCHITECTURE.read_text(encoding="utf-8"))
    missing = [str(p.relative_to(ROOT)) for p in modules() if p.name not in named]
    assert not missing, f"docs/architecture.md does not name {missing}"


def test_every_module_the_architecture_names_exists():
    existing = {p.name for p in modules()} | {p.name for p in (ROOT / "tests").rglob("*.py")}
    existing |= {p.name for p in (ROOT / "benchmarks").glob("*.py")}
    unknown = sorted(named_files(ARCHITECTURE.read_text(encoding="utf-8")) - existing)
    assert not unknown, unknown


@pytest.mark.parametrize("package", ["kernel", "memmap", "sim"])
def test_readme_layout_names_every_module_of_the_core_packages(package):
    text = layout()
    stems = {p.stem for p in (ROOT / "balloonsim" / package).glob("*.py") if p.name != "__init__.py"}
    missing = sorted(s for s in stems if not re.search(rf"\b{s}\b", text))
    assert not missing, missing


def test_readme_layout_names_every_package_and_top_module():
    text = layout()
    for path in sorted((ROOT / "balloonsim").iterdir()):
        if path.name.startswith("__") or path.suffix not in ("", ".py") or path.name == "__pycache__":
            continue
        name = path.name + ("/" if path.is_dir() else "")
        assert name in text, name


def test_readme_layout_lists_the_kernel_profiles_and_points_to_the_docs():
    text = layout()
    assert all(f"`{name}`" in text for name in PROFILES)
    for doc in ("docs/architecture.md", "CONTRIBUTING.md", "docs/kernel-facts.md"):
        assert f"`{doc}`" in text and (ROOT / doc).is_file()
