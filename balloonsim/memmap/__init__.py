"""Memmap placement strategies, named in the registry (`balloonsim.memmap` entry points), and fallback chains.

A spec with commas (`altmap,kmalloc`) is a chain: each link is tried in order. A scenario's memmap parameters
are shared by the links: each key must be understood by at least one of them, and goes to those that do.
"""

from __future__ import annotations

import difflib
from typing import Any

from balloonsim import registry as _registry
from balloonsim.errors import ConfigError
from balloonsim.memmap.base import MemmapStrategy
from balloonsim.memmap.chain import Chain
from balloonsim.registry import MEMMAP

Link = tuple[type[MemmapStrategy], dict[str, Any]]


def registry() -> dict[str, type[MemmapStrategy]]:
    """Every registered strategy by name (imports each one's module)."""
    return {name: _registry.get_class(MEMMAP, name) for name in _registry.names(MEMMAP)}


def resolve(spec: str, params: dict[str, Any] | None = None, key: str = "memmap") -> list[Link]:
    """The links of `spec` with the parameters each takes, all checked; errors name `key.strategy` or `key.PARAM`."""
    params = dict(params or {})
    prefix = f"{key}." if key else ""
    names = [n.strip() for n in str(spec).split(",") if n.strip()]
    if not names:
        raise ConfigError(f"{prefix}strategy", "empty memmap strategy")
    links: list[Link] = []
    used: set[str] = set()
    for name in names:
        try:
            cls: type[MemmapStrategy] = _registry.get_class(MEMMAP, name)
        except ConfigError as exc:
            raise ConfigError(f"{prefix}strategy", exc.message) from None
        mine = {k: v for k, v in params.items() if k in cls.Params.model_fields}
        used |= set(mine)
        _check(cls, mine, key)
        links.append((cls, mine))
    unknown = sorted(set(params) - used)
    if unknown:
        raise _not_a_parameter(unknown[0], spec, [cls for cls, _ in links], prefix)
    return links


def build(links: list[Link]) -> MemmapStrategy:
    """A fresh strategy (or chain) from resolved links: strategies keep per-guest state, so one per guest."""
    made = [cls(**mine) for cls, mine in links]
    return made[0] if len(made) == 1 else Chain(made)


def get_strategy(spec: str, params: dict[str, Any] | None = None, key: str = "memmap") -> MemmapStrategy:
    """Build a strategy (or a chain) from `kmalloc`, `altmap`, `altmap,kmalloc`, ... plus params."""
    return build(resolve(spec, params, key))


def _check(cls: type[MemmapStrategy], mine: dict[str, Any], key: str) -> None:
    from pydantic import ValidationError

    try:
        cls.Params(**mine)
    except ValidationError as exc:
        raise ConfigError.from_validation(exc, key, cls.Params) from None


def _not_a_parameter(name: str, spec: str, chosen: list[type[MemmapStrategy]], prefix: str) -> ConfigError:
    accepted = sorted({f for cls in chosen for f in cls.Params.model_fields})
    close = difflib.get_close_matches(name, accepted, n=1)
    if close:
        hint = f" (did you mean {close[0]!r}?)"
    else:
        known = registry()
        owners = sorted(n for n, cls in known.items() if name in cls.Params.model_fields)
        if owners:
            hint = f" (it belongs to {', '.join(owners)})"
        else:
            everything = sorted({f for cls in known.values() for f in cls.Params.model_fields})
            near = difflib.get_close_matches(name, everything, n=1)
            hint = (
                f" (did you mean {near[0]!r}?)"
                if near
                else (f" (its parameters: {', '.join(accepted)})" if accepted else " (it takes no parameters)")
            )
    return ConfigError(f"{prefix}{name}", f"not a parameter of memmap strategy {spec!r}{hint}")


__all__ = ["Chain", "MemmapStrategy", "build", "get_strategy", "registry", "resolve"]
