"""`--set key=value`: change an experiment from the command line without editing the file.

Keys are dotted paths into the experiment document (`base.guest.boot`, `replications`,
`factors.memmap.strategy`); values are parsed as TOML values when they are one (`2`, `true`, `["a", "b"]`)
and taken as strings otherwise (`8G`, `altmap`).
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterable
from typing import Any

from balloonsim.errors import ConfigError, UserError
from balloonsim.experiment.keypaths import set_path, suggest
from balloonsim.experiment.spec import Experiment, flatten_factors

TABLE_KEYS = ("base", "factors")


def parse_value(text: str) -> Any:
    """A TOML value if `text` is one, else the text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set {text!r}: expected KEY=VALUE, e.g. --set base.guest.boot=8G")
    return key, parse_value(value.strip())


def apply_overrides(doc: dict[str, Any], overrides: Iterable[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """A copy of `doc` with the overrides applied, and {key path set: the --set text} to blame errors on."""
    doc = copy.deepcopy(doc)
    set_paths: dict[str, str] = {}
    for text in overrides:
        key, value = parse_override(text)
        top, _, rest = key.partition(".")
        if top not in Experiment.model_fields:
            fields = Experiment.model_fields
            hint = suggest(top, fields) or f" (expected one of: {', '.join(fields)})"
            raise ConfigError(f"--set {key}", f"unknown experiment key {top!r}{hint}")
        if rest and top not in TABLE_KEYS:
            raise ConfigError(f"--set {key}", f"{top!r} is a single value, not a table")
        if not rest:
            doc[top] = value
        elif top == "factors":
            factors = doc.get("factors", {})
            if not isinstance(factors, dict):
                raise ConfigError(f"--set {key}", "'factors' in the file is not a table")
            factors = flatten_factors(factors)
            factors[rest] = value
            doc["factors"] = factors
        else:
            base = doc.setdefault("base", {})
            if not isinstance(base, dict):
                raise ConfigError(f"--set {key}", "'base' in the file is not a table")
            try:
                set_path(base, rest, value)
            except TypeError as exc:
                raise ConfigError(f"--set {key}", f"base.{exc}") from None
        set_paths[key] = text
    return doc, set_paths
