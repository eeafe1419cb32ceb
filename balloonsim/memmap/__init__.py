"""Memmap placement strategies: a registry fed by the `balloonsim.memmap` entry-point group.

A third-party package adds a strategy by declaring an entry point in that group that names a
`MemmapStrategy` subclass; nothing in balloonsim needs editing. A spec with commas
(`altmap,kmalloc`) builds a fallback chain.
"""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points

from pydantic import ValidationError

from balloonsim.errors import ConfigError
from balloonsim.memmap.altmap import Altmap
from balloonsim.memmap.altmap_range import AltmapRange
from balloonsim.memmap.base import MemmapStrategy
from balloonsim.memmap.chain import Chain
from balloonsim.memmap.kmalloc import Kmalloc
from balloonsim.memmap.node_pool import NodePool
from balloonsim.memmap.subrange_hint import SubrangeHint

_BUILTIN: dict[str, type[MemmapStrategy]] = {
    cls.name: cls for cls in (Kmalloc, Altmap, AltmapRange, SubrangeHint, NodePool)
}


def registry() -> dict[str, type[MemmapStrategy]]:
    found = dict(_BUILTIN)
    for ep in entry_points(group="balloonsim.memmap"):
        if ep.name not in found:
            found[ep.name] = ep.load()
    return found


def get_strategy(spec: str, params: dict | None = None, key: str = "memmap") -> MemmapStrategy:
    """Build a strategy (or a chain) from `kmalloc`, `altmap`, `altmap,kmalloc`, ... plus params.

    Params are shared by the links: each key must be understood by at least one of them.
    """
    params = dict(params or {})
    known = registry()
    prefix = f"{key}." if key else ""
    names = [n.strip() for n in str(spec).split(",") if n.strip()]
    if not names:
        raise ConfigError(f"{prefix}strategy", "empty memmap strategy")
    links: list[MemmapStrategy] = []
    used: set[str] = set()
    for name in names:
        cls = known.get(name)
        if cls is None:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"
            raise ConfigError(f"{prefix}strategy", f"unknown memmap strategy {name!r}{hint}")
        mine = {k: v for k, v in params.items() if k in cls.Params.model_fields}
        used |= set(mine)
        try:
            links.append(cls(**mine))
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"{prefix}{loc}", err["msg"]) from None
    unknown = sorted(set(params) - used)
    if unknown:
        accepted = sorted({f for n in names for f in known[n].Params.model_fields})
        close = difflib.get_close_matches(unknown[0], accepted, n=1)
        owners = sorted(n for n, cls in known.items() if unknown[0] in cls.Params.model_fields)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
        elif owners:
            hint = f" (it belongs to {', '.join(owners)})"
        else:
            everything = sorted({f for cls in known.values() for f in cls.Params.model_fields})
            near = difflib.get_close_matches(unknown[0], everything, n=1)
            hint = (
                f" (did you mean {near[0]!r}?)"
                if near
                else (f" (its parameters: {', '.join(accepted)})" if accepted else " (it takes no parameters)")
            )
        raise ConfigError(f"{prefix}{unknown[0]}", f"not a parameter of memmap strategy {spec!r}{hint}")
    return links[0] if len(links) == 1 else Chain(links)


__all__ = ["MemmapStrategy", "get_strategy", "registry"]
