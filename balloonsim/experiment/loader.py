"""An experiment file on disk -> a checked `Experiment`: read, apply `--set`, validate the document and every run.

It sits above `spec` (the document's shape), `overrides` and `validation` (each run's configuration) and
composes them, so none of those needs to import another to load a file.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path

from balloonsim.errors import ConfigError, UserError
from balloonsim.experiment.overrides import apply_overrides
from balloonsim.experiment.spec import Experiment, experiment_from_dict
from balloonsim.experiment.validation import validate_runs


def load_experiment(path: str | Path, overrides: Iterable[str] = (), *, check_runs: bool = True) -> Experiment:
    """Read, override and validate an experiment file; every run configuration is checked up front.

    Raises `UserError`/`ConfigError` (exit code 2) naming the file line or key path.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such experiment file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}:{_error_line(str(exc), text)}: not valid TOML: {exc}") from None
    overrides = tuple(overrides)
    doc, set_paths = apply_overrides(doc, overrides)
    try:
        experiment = experiment_from_dict(
            doc, default_name=path.stem, source_text=text, source_path=str(path), overrides=overrides
        )
        if check_runs:
            validate_runs(experiment)
    except ConfigError as exc:
        raise _blame_override(exc, set_paths) from None
    return experiment


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
