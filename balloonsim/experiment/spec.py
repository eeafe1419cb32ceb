"""The experiment document -> a validated `Experiment`, and the rules of its structure.

Everything about the document's shape is checked here (each run's configuration is checked in `validation`,
and `loader` reads the file and does both), before any output directory exists, so a typo costs a second
rather than a night of runs.  Errors are `ConfigError`s whose path names the key as the user wrote it, e.g.
`factors.memmap.strategy[2]` or `zip[0]`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from balloonsim.errors import ConfigError, show, validation_message
from balloonsim.experiment.keypaths import canonical_json, digest, join, suggest

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
METRIC_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Keys that describe the experiment to its reader (the report answers `question`, leading with the `primary`
# metrics) without changing a run: they stay out of the design digest, so adding them to a finished
# experiment neither refuses nor reruns its directory.
DESCRIPTIVE_KEYS = {"description", "question", "primary", "compare"}
# Keys of a run configuration that an experiment must not set per run: the runner owns them.
RESERVED_RUN_KEYS = {"seed": "each run's seed derives from the experiment's master `seed`; use `replications`"}
# runs.csv columns the runner writes before the factor columns.
RESULT_COLUMNS = ("run_id", "replicate", "seed", "status", "error")
# The name becomes a directory: one path component, well below NAME_MAX (255) with room for suffixes.
MAX_NAME_LENGTH = 100


class Experiment(BaseModel):
    """A batch of single-run configurations: a base, the factors varied over it, and how often to repeat."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME_LENGTH)
    description: str = ""
    question: str = ""
    primary: list[Annotated[str, Field(pattern=METRIC_PATTERN)]] = Field(default_factory=list)
    # the factor whose levels the report compares within each combination of the others (default: the memmap
    # strategy when it varies)
    compare: str = ""
    base: dict[str, Any] = Field(default_factory=dict)
    factors: dict[str, list[Any]] = Field(default_factory=dict)
    replications: int = Field(1, ge=1)
    seed: int = Field(0, ge=0)
    design: Literal["full", "zip"] = "full"
    zip: list[list[str]] = Field(default_factory=list)
    exclude: list[dict[str, Any]] = Field(default_factory=list)

    _source_text: str | None = PrivateAttr(None)
    _source_path: str | None = PrivateAttr(None)
    _overrides: tuple[str, ...] = PrivateAttr(())
    _normalized: dict[str, list[Any]] | None = PrivateAttr(None)

    @property
    def source_text(self) -> str | None:
        """The experiment file as written (None when built in code)."""
        return self._source_text

    @property
    def source_path(self) -> str | None:
        return self._source_path

    @property
    def overrides(self) -> tuple[str, ...]:
        """The `--set key=value` texts applied on top of the file."""
        return self._overrides

    @property
    def normalized_levels(self) -> dict[str, list[Any]] | None:
        """Per factor, each level as the model reads it (sizes in bytes...), once the runs were validated."""
        return self._normalized

    @property
    def source_sha256(self) -> str | None:
        return hashlib.sha256(self._source_text.encode()).hexdigest() if self._source_text is not None else None

    @property
    def design_sha256(self) -> str:
        """Identity of what would be run: same digest -> same runs, ids and seeds (descriptive keys aside)."""
        return digest(self.model_dump(mode="json", exclude=DESCRIPTIVE_KEYS))


def experiment_from_dict(
    doc: dict[str, Any],
    *,
    default_name: str | None = None,
    source_text: str | None = None,
    source_path: str | None = None,
    overrides: Sequence[str] = (),
) -> Experiment:
    """Validate the structure of an experiment document (not yet the run configurations)."""
    doc = dict(doc)
    if "name" not in doc and default_name is not None:
        doc["name"] = default_name
    if isinstance(doc.get("factors"), dict):
        doc["factors"] = flatten_factors(doc["factors"])
    if isinstance(doc.get("exclude"), list) and isinstance(doc.get("factors"), dict):
        doc["exclude"] = [
            flatten_exclusion(entry, doc["factors"], join("exclude", i)) if isinstance(entry, dict) else entry
            for i, entry in enumerate(doc["exclude"])
        ]
    try:
        experiment = Experiment.model_validate(doc)
    except ValidationError as exc:
        raise _config_error(exc) from None
    _check_structure(experiment)
    experiment._source_text = source_text
    experiment._source_path = source_path
    experiment._overrides = tuple(overrides)
    return experiment


def flatten_factors(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{memmap: {strategy: [...]}}` and `{"memmap.strategy": [...]}` both mean factor `memmap.strategy`.

    TOML turns an unquoted dotted key into nested tables, so a factor is any path that ends in a non-table.
    """
    out: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            if not value:
                raise ConfigError(join("factors", path), "empty table; a factor needs a list of levels")
            items = flatten_factors(value, path).items()
        else:
            items = [(path, value)]
        for name, levels in items:
            if name in out:
                raise ConfigError(join("factors", name), "factor given twice (once as a dotted key, once nested)")
            out[name] = levels
    return out


def flatten_exclusion(entry: dict[str, Any], factors: dict[str, Any], where: str) -> dict[str, Any]:
    """An exclusion table keyed by factor names, however TOML nested the dotted keys."""
    out: dict[str, Any] = {}

    def walk(table: dict[str, Any], prefix: str) -> None:
        for key, value in table.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if path in factors:
                out[path] = value
            elif isinstance(value, dict) and any(name.startswith(path + ".") for name in factors):
                walk(value, path)
            else:
                raise ConfigError(join(where, path), f"not a factor of this experiment{suggest(path, factors)}")

    walk(entry, "")
    return out


def _config_error(exc: ValidationError) -> ConfigError:
    """The first pydantic error as one line naming its key path."""
    errors = exc.errors()
    first = errors[0]
    loc = tuple(first["loc"])
    path = join(*loc)
    kind = first["type"]
    value = first.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        fields = list(Experiment.model_fields)
        hint = suggest(key, fields) or f" (expected one of: {', '.join(fields)})"
        message = f"unknown key {key!r}{hint}"
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "string_pattern_mismatch" and loc == ("name",):
        message = f"{value!r} is not a usable name: use letters, digits, '.', '_' and '-' (it names a directory)"
    elif kind == "string_pattern_mismatch" and loc[0] == "primary":
        message = f"{value!r} is not a metric name (a column of runs.csv, e.g. 'oom_kills')"
    else:
        message = validation_message(first)
    if len(errors) > 1:
        message += f" [and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''}]"
    return ConfigError(path, message)


def _show(value: Any) -> str:
    return show(value)


def _check_structure(exp: Experiment) -> None:
    """Cross-key rules pydantic types cannot say: overlaps, zip lengths, exclusions that name real levels."""
    for key, reason in RESERVED_RUN_KEYS.items():
        if key in exp.base:
            raise ConfigError(join("base", key), f"not allowed in an experiment: {reason}")
    names = list(exp.factors)
    for name, levels in exp.factors.items():
        where = join("factors", name)
        if any(part == "" for part in name.split(".")):
            raise ConfigError(where, "empty part in the factor's key path")
        if name.split(".")[0] in RESERVED_RUN_KEYS:
            raise ConfigError(where, f"cannot be a factor: {RESERVED_RUN_KEYS[name.split('.')[0]]}")
        if name in RESULT_COLUMNS:
            raise ConfigError(where, f"cannot be a factor: {name!r} is a column of runs.csv")
        if not levels:
            raise ConfigError(where, "empty list of levels (a factor needs at least one)")
        for other in names:
            if other != name and name.startswith(other + "."):
                raise ConfigError(where, f"overlaps factor {other!r}, which already sets the whole table")
        _check_settable(exp.base, name)
    _check_primary(exp)
    if exp.compare and exp.compare not in exp.factors:
        known = ", ".join(exp.factors) or "none"
        raise ConfigError("compare", f"{exp.compare!r} is not a factor of this experiment (factors: {known})")
    _check_zip(exp)
    for i, axis in enumerate(design_axes(exp)):
        _check_distinct(exp, axis, i)
    _check_exclusions(exp)


def _check_settable(base: dict[str, Any], name: str) -> None:
    node: Any = base
    parts = name.split(".")
    for depth, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node:
            return
        node = node[part]
        if not isinstance(node, dict):
            where = join("base", ".".join(parts[: depth + 1]))
            raise ConfigError(where, f"is a value, but factor {name!r} sets a key inside it")


def _check_primary(exp: Experiment) -> None:
    """Primary metrics are named once each; whether runs produce them is known only once they ran."""
    seen: dict[str, int] = {}
    for i, name in enumerate(exp.primary):
        if name in seen:
            raise ConfigError(join("primary", i), f"{name!r} is already primary[{seen[name]}]")
        seen[name] = i


def _check_zip(exp: Experiment) -> None:
    if exp.design == "zip":
        if exp.zip:
            raise ConfigError(
                "zip",
                'zip groups are for design = "full"; design = "zip" already varies all factors together',
            )
        _check_equal_lengths(exp, list(exp.factors), "factors", 'design = "zip" varies all factors together, so')
        return
    seen: dict[str, int] = {}
    for g, group in enumerate(exp.zip):
        if not group:
            raise ConfigError(join("zip", g), "empty group; list the factors that vary together")
        for j, name in enumerate(group):
            if name not in exp.factors:
                raise ConfigError(join("zip", g, j), f"{name!r} is not a factor{suggest(name, exp.factors)}")
            if name in seen:
                raise ConfigError(join("zip", g, j), f"factor {name!r} is already in zip[{seen[name]}]")
            seen[name] = g
        _check_equal_lengths(exp, group, join("zip", g), "factors that vary together")


def _check_equal_lengths(exp: Experiment, names: list[str], where: str, why: str) -> None:
    lengths = {name: len(exp.factors[name]) for name in names}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ConfigError(where, f"{why} need the same number of levels: {detail}")


def design_axes(exp: Experiment) -> list[list[str]]:
    """Groups of factors that vary together, in the order their first factor was declared.

    Full factorial crosses the axes; a factor outside any zip group is an axis of its own.
    """
    if exp.design == "zip":
        return [list(exp.factors)] if exp.factors else []
    group_of = {name: tuple(group) for group in exp.zip for name in group}
    axes: list[list[str]] = []
    placed: set[str] = set()
    for name in exp.factors:
        if name in placed:
            continue
        axis = list(group_of.get(name, (name,)))
        placed.update(axis)
        axes.append(axis)
    return axes


def _check_distinct(exp: Experiment, axis: list[str], axis_index: int) -> None:
    """Two equal levels would give two runs with one configuration (and one run id)."""
    seen: dict[str, int] = {}
    for i in range(len(exp.factors[axis[0]])):
        key = canonical_json([exp.factors[name][i] for name in axis])
        if key in seen:
            if len(axis) == 1:
                where = join("factors", axis[0], i)
                raise ConfigError(where, f"duplicate level {_show(exp.factors[axis[0]][i])} (same as [{seen[key]}])")
            raise ConfigError("zip", f"levels [{seen[key]}] and [{i}] of {', '.join(axis)} are the same combination")
        seen[key] = i


def _check_exclusions(exp: Experiment) -> None:
    for i, entry in enumerate(exp.exclude):
        where = join("exclude", i)
        if not entry:
            raise ConfigError(where, "empty table would exclude every run")
        for name, level in entry.items():
            if name not in exp.factors:
                raise ConfigError(join(where, name), f"not a factor of this experiment{suggest(name, exp.factors)}")
            levels = exp.factors[name]
            if canonical_json(level) not in {canonical_json(x) for x in levels}:
                shown = [str(x) for x in levels]
                hint = suggest(str(level), shown) if isinstance(level, str) else ""
                raise ConfigError(
                    join(where, name),
                    f"{_show(level)} is not a level of this factor (levels: {', '.join(map(_show, levels))}){hint}",
                )
