"""Errors a user can cause: one clear message naming the offending key or line, exit code 2."""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError


class UserError(Exception):
    """Bad input. The CLI prints the message and exits with status 2."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration value is wrong; `path` is the dotted key path (e.g. `guest.boot`)."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)

    @classmethod
    def from_validation(
        cls, exc: ValidationError, prefix: str = "", model: type[BaseModel] | None = None
    ) -> ConfigError:
        """The first error of a pydantic validation as one line at `prefix.location`.

        An unknown key gets a suggestion from the fields of the model that refused it, found by following the
        error's location down from `model`; pydantic's "Value error, " prefix is dropped.
        """
        err = exc.errors()[0]
        path = ""
        for part in (prefix, *err["loc"]):
            if isinstance(part, int):
                path += f"[{part}]"
            elif part != "":
                path = f"{path}.{part}" if path else str(part)
        if err["type"] == "extra_forbidden":
            fields = _fields_at(model, err["loc"][:-1])
            close = difflib.get_close_matches(str(err["loc"][-1]), fields, n=1)
            msg = "unknown key" + (
                f" (did you mean {close[0]!r}?)" if close else (f" (known: {', '.join(fields)})" if fields else "")
            )
        else:
            msg = validation_message(err)
        return cls(path, msg)


# What a value should have been, for pydantic's error types, in balloonsim's words.
_EXPECTED = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "finite_number": "a finite number",
}
_BOUND = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}
# Tables that also accept a plain value, and how to write them.
_TABLE_HINTS = {"Dist": 'a number or a table such as { dist = "exponential", mean = 60 }'}


def validation_message(err: dict[str, Any]) -> str:
    """One pydantic error (from `ValidationError.errors()`) as balloonsim says it, with the value given."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = f" (got {show(err['input'])})" if "input" in err and kind != "missing" else ""
    if kind == "missing":
        return "required key is missing"
    if kind in _BOUND:
        key, words = _BOUND[kind]
        return f"must be {words} {_number(ctx.get(key))}{got}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected', 'one of the listed values')}{got}"
    if kind == "model_type" and ctx.get("class_name") in _TABLE_HINTS:
        return f"expected {_TABLE_HINTS[ctx['class_name']]}{got}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}{got}"
    if kind in ("string_too_long", "string_too_short"):
        bound = ctx.get("max_length", ctx.get("min_length"))
        return f"must be at {'most' if kind == 'string_too_long' else 'least'} {bound} characters{got}"
    if kind in ("too_long", "too_short"):
        return f"{err['msg'][len('Input should ') :] if err['msg'].startswith('Input should ') else err['msg']}{got}"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    if msg.startswith("Input should be "):
        return f"must be {msg[len('Input should be ') :]}{got}"
    return msg[:1].lower() + msg[1:] + got


def show(value: Any, limit: int = 60) -> str:
    """A value as a message quotes it: repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def written_path(path: str, config: Any) -> str:
    """A validated key path as the user wrote it: `guest.boot[1]` stays, `guest.boot[0]` becomes `guest.boot` when
    the user gave one value where a list is accepted (the model made it a list of one)."""
    out: list[str] = []
    node: Any = config
    for part in re.sub(r"\[(\d+)\]", r".\1", path).split(".") if path else []:
        if part.isdigit() and not isinstance(node, dict):
            if isinstance(node, list) and int(part) < len(node):
                out[-1] += f"[{part}]"
                node = node[int(part)]
            else:
                node = None
            continue
        out.append(part)
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(out)


def _fields_at(model: Any, loc: tuple) -> list[str]:
    """The field names of the model reached from `model` through the field names in `loc`."""
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        model = getattr(field, "annotation", None)
    return list(getattr(model, "model_fields", {}))


class TraceError(UserError):
    """A trace file is broken; names the file and line."""

    def __init__(self, filename: str, line: int, message: str):
        self.filename = filename
        self.line = line
        super().__init__(f"{filename}:{line}: {message}")
