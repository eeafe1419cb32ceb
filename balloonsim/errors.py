"""Errors a user can cause: one clear message naming the offending key or line, exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input. The CLI prints the message and exits with status 2."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration value is wrong; `path` is the dotted key path (e.g. `guest.boot`)."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class TraceError(UserError):
    """A trace file is broken; names the file and line."""

    def __init__(self, filename: str, line: int, message: str):
        self.filename = filename
        self.line = line
        super().__init__(f"{filename}:{line}: {message}")
