"""An experiment file on disk -> a checked `Experiment`: read, apply `--set`, validate the document and every run.

It sits above `spec` (the document's shape), `overrides` and `validation` (each run's configuration) and
composes them, so none of those needs to import another to load a file.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Iterable
from pathlib import Path

from balloonsim.errors import ConfigError, UserError
from balloonsim.experiment.overrides import apply_overrides, parse_override
from balloonsim.experiment.spec import Experiment, experiment_from_dict
from balloonsim.experiment.validation import validate_runs


def load_experiment(path: str | Path, overrides: Iterable[str] = (), *, check_runs: bool = True) -> Experiment:
    """Read, override and validate an experiment file; every run configuration is checked up front.

    Raises `UserError`/`ConfigError` (exit code 2) naming the file line or key path.
    """
    path = Path(path)
    text = read_toml_text(path, "experiment file")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}:{_error_line(str(exc), text)}: not valid TOML: {exc}") from None
    except RecursionError:
        raise UserError(f"{path}: not valid TOML: nested too deeply") from None
    overrides = tuple(overrides)
    doc, set_paths = apply_overrides(doc, overrides)
    try:
        experiment = experiment_from_dict(
            doc, default_name=path.stem, source_text=text, source_path=str(path), overrides=overrides
        )
    except ConfigError as exc:
        raise _blame_override(exc, set_paths) from None
    if check_runs:
        check_experiment_runs(experiment)
    return experiment


def check_experiment_runs(experiment: Experiment) -> None:
    """Validate every run of a loaded experiment (`validate_runs`), blaming a bad value on the `--set` that
    brought it in; apart from `load_experiment` so that a runner can start its workers in between."""
    set_paths = {parse_override(text)[0]: text for text in experiment.overrides}
    try:
        validate_runs(experiment)
    except ConfigError as exc:
        raise _blame_override(exc, set_paths) from None


MAX_FILE_BYTES = 16 << 20


def read_toml_text(path: Path, what: str) -> str:
    """The text of a TOML file the user named: a regular file (a FIFO or device would block or never end),
    readable, UTF-8, of sane size; UserError naming the file otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{path}: not a regular file; the {what} must be one")
        if st.st_size > MAX_FILE_BYTES:
            raise UserError(f"{path}: {st.st_size} bytes is too large for a {what} (at most {MAX_FILE_BYTES})")
        with os.fdopen(fd, "rb") as handle:
            fd = -1
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UserError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); save the {what} as UTF-8") from None


def _error_line(message: str, text: str) -> int:
    """The line tomllib complains about (its message has it, or says the document ended early)."""
    found = re.search(r"at line (\d+)", message)
    return int(found.group(1)) if found else max(1, text.count("\n") + (not text.endswith("\n")))


def _blame_override(exc: ConfigError, set_paths: dict[str, str]) -> ConfigError:
    """Point at the `--set` that introduced a bad value, since it is not in the file."""
    for prefix, text in set_paths.items():
        if exc.path == prefix or exc.path.startswith((prefix + ".", prefix + "[")):
            return ConfigError(exc.path, f"{exc.message} (from --set {text})")
    return exc
