"""How a factor level is spelled for readers: `xen`, `hyperv request_offset=2M`, `true`, `128M`, `5`.

One rule for the runner (runs.csv's label columns, `run --dry-run`) and the analysis (reports, figures), so the
two never spell a level differently. Sizes are stored as bytes and read as 128M: a key is a size when the
scenario types it `Size` (guest.swap, driver.request_offset) or, for keys it does not type (memmap.pool_size,
metric columns), when its name says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from balloonsim.units import format_size

HEAD_KEYS = ("name", "agent", "controller", "strategy")  # a table level's key that leads its label, bare
SIZE_WORDS = ("size", "_bytes", "offset", "boot", "addr")  # in the last part of an untyped key: bytes


def is_size(key: str) -> bool:
    """A factor (or a table level's key, `driver.request_offset`) holding bytes.

    The name is read first: the scenario's types are asked only when it does not say, because asking imports the
    scenario and every plugin (~0.2 s), which an analysis of a study without such a key never needs."""
    last = key.rsplit(".", 1)[-1]
    if any(word in last for word in SIZE_WORDS):
        return True
    from balloonsim.scenario import size_keys

    return ".".join(key.split(".")[-2:]) in size_keys()


def level_label(factor: str, value: Any) -> str:
    """The label of one level of `factor` (None and NaN: `n/a`; a table: its head value, then key=value)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | float | np.integer | np.floating):
        if np.isnan(value):
            return "n/a"
        whole = float(value).is_integer()
        if whole and value >= 1 << 20 and is_size(factor):
            return format_size(int(value))
        return str(int(value)) if whole else f"{value:g}"
    if isinstance(value, Mapping):
        items = dict(value)
        head = next((k for k in HEAD_KEYS if k in items), None)
        parts = [level_label(f"{factor}.{head}", items.pop(head))] if head is not None else []
        for key, item in items.items():
            inner = level_label(f"{factor}.{key}", item)
            parts.append(f"{key}={{{inner}}}" if isinstance(item, Mapping) else f"{key}={inner}")
        return " ".join(parts) if parts else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(level_label(factor, v) for v in value) + "]"
    return str(value)
