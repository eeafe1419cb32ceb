"""Dotted key paths (`guest.boot`, `factors.memmap.strategy[2]`) and did-you-mean hints.

Every error a user sees names the key path where the bad value sits, so the helpers that walk nested tables
live in one place and speak the same notation.
"""

from __future__ import annotations

import copy
import datetime
import difflib
import hashlib
import json
from collections.abc import Iterable
from typing import Any


def suggest(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when a close match exists, else an empty string."""
    matches = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def join(*parts: str | int) -> str:
    """`join("factors", "memmap.strategy", 2)` -> `factors.memmap.strategy[2]`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "":
            out = f"{out}.{part}" if out else str(part)
    return out


def set_path(table: dict[str, Any], path: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts, creating the tables on the way; a scalar on the way is a TypeError."""
    keys = path.split(".")
    node = table
    for i, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise TypeError(f"{'.'.join(keys[: i + 1])} is a value, not a table")
        node = child
    node[keys[-1]] = value


_IMMUTABLE = (str, int, float, bool, type(None), datetime.date, datetime.time)  # datetime is a date


def copy_tree(value: Any) -> Any:
    """A deep copy of a table as TOML and JSON give them (dicts, lists and immutable values), without
    copy.deepcopy's memo: each run's configuration is one, made per run (12 -> 3 us for the quickstart's). Any
    other kind of value is deep-copied as copy.deepcopy would."""
    if type(value) is dict:
        return {key: copy_tree(item) for key, item in value.items()}
    if type(value) is list:
        return [copy_tree(item) for item in value]
    if isinstance(value, _IMMUTABLE):
        return value
    return copy.deepcopy(value)


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no spaces, so equal configurations hash alike."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(value: Any) -> str:
    """sha256 hex of the canonical JSON of `value`."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
