"""How a factor's levels become columns of runs.csv: numbers as numbers, tables as one column per key.

A scalar factor is one column holding the level as the model reads it (`guest.block_size = "2G"` is stored as
2147483648). A factor whose levels are tables (`driver = { name = "hyperv", request_offset = "2M" }`) gets a
column with the level's label (`hyperv request_offset=2M`, the spelling every report uses) and one column per
key any level sets (`driver.name`, `driver.request_offset` in bytes), empty where a level does not set it.
Without validated runs (a stand-in run function), values are stored as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from balloonsim.experiment.keypaths import canonical_json
from balloonsim.experiment.spec import Experiment
from balloonsim.level_label import level_label

# Keys that name a table level; the first one present is written bare, in front of the k=v pairs.


def is_table_factor(levels: list[Any]) -> bool:
    return any(isinstance(level, Mapping) for level in levels)


def table_keys(levels: list[Any]) -> list[str]:
    """The keys any table level sets, in order of first appearance."""
    keys: dict[str, None] = {}
    for level in levels:
        if isinstance(level, Mapping):
            keys.update(dict.fromkeys(str(k) for k in level))
    return list(keys)


def factor_columns(exp: Experiment) -> dict[str, list[str]]:
    """Factor -> its columns in runs.csv, the label (or value) column first."""
    return {
        name: [name, *(f"{name}.{key}" for key in table_keys(levels))] if is_table_factor(levels) else [name]
        for name, levels in exp.factors.items()
    }


def factor_cells(exp: Experiment, factors: dict[str, Any], level_index: dict[str, int]) -> dict[str, Any]:
    """The factor cells of one run's row."""
    normalized = exp.normalized_levels
    cells: dict[str, Any] = {}
    for name, levels in exp.factors.items():
        level = factors[name]
        read = normalized[name][level_index[name]] if normalized is not None and name in level_index else None
        if not is_table_factor(levels):
            cells[name] = _scalar(level, read)
            continue
        cells[name] = level_label(name, level)
        for key in table_keys(levels):
            if isinstance(level, Mapping) and key in level:
                value = read.get(key) if isinstance(read, Mapping) and key in read else level[key]
                cells[f"{name}.{key}"] = value if _is_cell(value) else canonical_json(value)
            else:
                cells[f"{name}.{key}"] = None
    return cells


def _scalar(level: Any, read: Any) -> Any:
    """A scalar level as the model reads it when that is one plain value (a size in bytes); as written when the
    model makes more of it (a delay of 5 becomes a whole fixed distribution)."""
    if isinstance(read, list) and len(read) == 1 and not isinstance(level, list):
        read = read[0]
    if read is not None and _is_cell(read) and _is_cell(level):
        return read
    return level


def _is_cell(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)
