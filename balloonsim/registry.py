"""The one registry of named plugins, for every kind, fed only by entry points.

Each kind is an entry-point group (`balloonsim.memmap`, `balloonsim.drivers`, `balloonsim.onlining`,
`balloonsim.workloads`, `balloonsim.controllers`). balloonsim declares its own plugins in its pyproject.toml
exactly as another package declares its: nothing here names a built-in. The installed distributions are scanned
once per process; listing names reads only that metadata, so a help text that lists them imports no plugin
module. A class is imported when a scenario first names it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from balloonsim.errors import ConfigError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from pydantic import BaseModel


@dataclass(frozen=True)
class Kind:
    """One kind of plugin: its entry-point group and the scenario key that names a plugin of it."""

    group: str
    section: str  # the scenario table
    key: str  # the key in that table holding the plugin's name
    noun: str  # what an error message calls it

    @property
    def path(self) -> str:
        return f"{self.section}.{self.key}"


MEMMAP = Kind("balloonsim.memmap", "memmap", "strategy", "memmap strategy")
DRIVERS = Kind("balloonsim.drivers", "driver", "name", "driver")
ONLINING = Kind("balloonsim.onlining", "onlining", "agent", "onlining agent")
WORKLOADS = Kind("balloonsim.workloads", "workload", "name", "workload")
CONTROLLERS = Kind("balloonsim.controllers", "host", "controller", "host controller")
KINDS = (MEMMAP, DRIVERS, ONLINING, WORKLOADS, CONTROLLERS)


@cache
def _entry_points() -> dict[str, dict[str, EntryPoint]]:
    """Every kind's entry points by name, from one scan of the installed distributions (the first of a name wins)."""
    from importlib.metadata import entry_points

    found = entry_points()
    out: dict[str, dict[str, EntryPoint]] = {}
    for kind in KINDS:
        mine: dict[str, EntryPoint] = {}
        for ep in found.select(group=kind.group):
            mine.setdefault(ep.name, ep)
        out[kind.group] = mine
    return out


def names(kind: Kind) -> list[str]:
    """The registered names of a kind, sorted; imports nothing."""
    return sorted(_entry_points()[kind.group])


def get_class(kind: Kind, name: str) -> type:
    """The class registered under `name`; an unknown name is a ConfigError at the kind's scenario key."""
    ep = _entry_points()[kind.group].get(str(name))
    if ep is None:
        raise unknown(kind, str(name))
    return _load(ep)


@cache
def _load(ep: EntryPoint) -> type:
    return ep.load()


def load_package(package: str) -> list[str]:
    """Import every plugin of every kind whose module is in `package` (`balloonsim` for its own); returns the
    names of those that could not be imported (left for the scenario that names one to report in its words)."""
    failed = []
    for kind in KINDS:
        for name, ep in _entry_points()[kind.group].items():
            if ep.module == package or ep.module.startswith(package + "."):
                try:
                    _load(ep)
                except Exception:  # noqa: BLE001 - reported where a scenario names it (`get_class`)
                    failed.append(f"{kind.group}:{name}")
    return failed


def unknown(kind: Kind, name: str) -> ConfigError:
    known = names(kind)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
    return ConfigError(kind.path, f"unknown {kind.noun} {name!r}{hint}")


def validate_params(kind: Kind, cls: type, params: dict[str, Any]) -> BaseModel:
    """`cls.Params` built from `params`; an error names the key under the kind's table (`driver.batch_pages`)."""
    from pydantic import ValidationError

    model: type[BaseModel] = cls.Params  # type: ignore[attr-defined]
    try:
        return model(**params)
    except ValidationError as exc:
        raise ConfigError.from_validation(exc, kind.section, model) from None


def refresh() -> None:
    """Forget the scan, so that distributions installed since are seen (for tests that install a plugin)."""
    _entry_points.cache_clear()
    _load.cache_clear()
