"""Errors a user can cause: one clear message naming the offending key or line, exit code 2."""

from __future__ import annotations

import difflib
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
        loc = ".".join(str(p) for p in err["loc"])
        path = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            fields = _fields_at(model, err["loc"][:-1])
            close = difflib.get_close_matches(str(err["loc"][-1]), fields, n=1)
            msg = "unknown key" + (
                f" (did you mean {close[0]!r}?)" if close else (f" (known: {', '.join(fields)})" if fields else "")
            )
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        return cls(path, msg)


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
