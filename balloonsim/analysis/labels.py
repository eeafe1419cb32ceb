"""How a factor level is spelled for readers: the one function every table, sentence, figure and CSV uses.

runs.csv stores a table-valued level (`driver = { name = "hyperv", request_offset = "2M" }`) as canonical JSON
with sorted keys. `level_text` turns it into `hyperv request_offset=2M`: the table's name first, then its other
keys as k=v in the experiment file's key order, with values spelled as in TOML (`populate_memmap_first=true`)
and sizes in bytes as 128M/2G. Booleans are `true`/`false` everywhere, whole floats lose their `.0`.

The experiment's design (metadata's resolved copy, else experiment.toml) gives the order of the levels and the
key order inside tables; a level the design does not list is still labelled, with its keys in JSON order.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from balloonsim.level_label import level_label
from balloonsim.units import parse_size


def level_text(factor: str, value: Any) -> str:
    """The label of one level of `factor` (balloonsim.level_label); a table level read back from runs.csv as JSON
    text is labelled as the table."""
    if isinstance(value, str):
        parsed = parse_json(value)
        return value if parsed is None else level_label(factor, parsed)
    return level_label(factor, value)


def labels_of(col: pd.Series, factor: str) -> pd.Series:
    """level_text of every value of a column (NaN becomes "n/a"), aligned with it."""
    mapping = {v: level_text(factor, v) for v in pd.unique(col.dropna())}
    return col.map(mapping).fillna("n/a").astype(object)


def label_column(factor: str, col: pd.Series, design: list | None = None) -> pd.Series:
    """A factor column of runs.csv with table (JSON) and boolean levels replaced by their labels.

    Numbers stay numbers (axes and "≥" conditions need them); text levels are already their own label. A
    JSON level equal to one the design lists is labelled from the design's table, so keys keep its order.
    """
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return col
    design = list(design or [])
    mapping = {}
    for value in pd.unique(col.dropna()):
        if isinstance(value, bool | np.bool_):
            mapping[value] = level_text(factor, value)
        elif isinstance(value, str) and (parsed := parse_json(value)) is not None:
            same = [d for d in design if _equal(d, parsed)]
            mapping[value] = level_text(factor, same[0] if same else parsed)
    if not mapping:
        return col
    return col.map(lambda v: mapping.get(v, v) if not _isna(v) else v).astype(object)


def design_order(factor: str, design: list | None) -> dict[str, int]:
    """Label -> position of the level in the experiment's design (first occurrence wins)."""
    order: dict[str, int] = {}
    for i, value in enumerate(design or []):
        order.setdefault(level_text(factor, value), i)
    return order


def design_levels(spec: Mapping | None) -> dict[str, list]:
    """Factor name -> its levels as the experiment lists them, from a resolved or as-written experiment.

    TOML turns a dotted factor key (`driver.node = [...]`) into nested tables; a factor is any path that
    ends in a list.
    """
    factors = spec.get("factors") if isinstance(spec, Mapping) else None
    out: dict[str, list] = {}

    def walk(table: Mapping, prefix: str) -> None:
        for key, value in table.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, Mapping):
                walk(value, path)
            elif isinstance(value, list):
                out[path] = value

    if isinstance(factors, Mapping):
        walk(factors, "")
    return out


def wrap(text: str, width: int = 16) -> str:
    """A label broken at spaces onto lines of about `width` characters, for tick labels and heat-map cells."""
    if len(text) <= width or " " not in text:
        return text
    return "\n".join(textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False))


def parse_json(text: str) -> Any:
    """The table or list a JSON cell holds, else None (plain text levels are not JSON)."""
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    return value if isinstance(value, dict | list) else None


def _equal(design_value: Any, parsed: Any) -> bool:
    """A design level and a level read back from JSON are the same (dict order aside; tuples are lists)."""
    try:
        return json.loads(json.dumps(design_value, default=str)) == parsed
    except (TypeError, ValueError):
        return False


def _isna(value: Any) -> bool:
    return value is None or (isinstance(value, float | np.floating) and np.isnan(value))


def same_level(design_value: Any, value: Any) -> bool:
    """A level as the experiment spells it (`"2M"`, `true`) and as runs.csv holds it (2097152, "True")."""
    if isinstance(design_value, bool) or isinstance(value, bool | np.bool_):
        return str(design_value).lower() == str(value).lower()
    if str(design_value) == str(value):
        return True
    try:
        return parse_size(design_value) == parse_size(value)
    except (TypeError, ValueError):
        return False
