"""Pydantic field types for sizes and durations typed the way users write them (`128M`, `10m`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from balloonsim.units import format_size, parse_duration, parse_size


def _size(v: Any) -> int:
    if isinstance(v, str | int | float) and not isinstance(v, bool):
        return parse_size(v)
    raise ValueError(f"not a size: {v!r} (use e.g. 128M, 10G, 0x100000000)")


def _duration(v: Any) -> float:
    if isinstance(v, str | int | float) and not isinstance(v, bool):
        return parse_duration(v)
    raise ValueError(f"not a duration: {v!r} (use e.g. 30s, 10m, 1h)")


Size = Annotated[int, BeforeValidator(_size), PlainSerializer(format_size, return_type=str)]
Duration = Annotated[float, BeforeValidator(_duration)]
