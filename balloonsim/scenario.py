"""One run's configuration: validated before anything runs, with errors that name the key path.

A scenario is a nested table (TOML in files, dicts in Python):

    duration = "1h"
    [guest]    kernel, boot, max_addr, block_size, movable_node, ...
    [memmap]   strategy = "altmap,kmalloc", plus strategy parameters
    [driver]   name = "hyperv", plus driver parameters
    [onlining] agent = "udev", online_type = "online", plus agent parameters
    [workload] name = "bursts", plus workload parameters
    [host]     controller = "hyperv-buffer", memory = "64G", plus controller parameters
"""

from __future__ import annotations

import difflib
import math
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from balloonsim import registry
from balloonsim.errors import ConfigError, written_path
from balloonsim.kernel.guest import GuestConfig
from balloonsim.kernel.profiles import PROFILES
from balloonsim.memmap import Link, resolve
from balloonsim.registry import Kind
from balloonsim.types import Duration, Size
from balloonsim.units import MAX_MEMORY_BLOCK_SIZE, MAX_NUMNODES, SECTION_SIZE, format_size

# The recorder keeps every sample of a run in memory: duration / sample_interval is bounded so a typo
# (`sample_interval = 1e-6`) is refused up front instead of filling the machine.
MAX_SAMPLES_PER_RUN = 1_000_000

_GUEST = GuestConfig()  # the defaults


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GuestSection(_Strict):
    """The [guest] table: what the guest boots with. Its defaults are the kernel model's (GuestConfig)."""

    kernel: str = _GUEST.kernel
    boot: list[Size] = Field(default_factory=lambda: list(_GUEST.boot), description="boot memory per NUMA node")
    extra_nodes: int = Field(
        _GUEST.extra_nodes, ge=0, le=MAX_NUMNODES - 1, description="possible nodes without boot memory"
    )
    max_addr: Size = _GUEST.max_addr
    block_size: Size | None = _GUEST.block_size
    hypervisor: bool = _GUEST.hypervisor
    movable_node: bool = _GUEST.movable_node
    debug_vm: bool = _GUEST.debug_vm
    accounting: Literal["kernel", "allocated"] = _GUEST.accounting  # type: ignore[assignment]
    direct_gbpages: bool = _GUEST.direct_gbpages
    la57: bool = _GUEST.la57
    kernel_reserved: Size = _GUEST.kernel_reserved
    page_cache: Size = _GUEST.page_cache
    online_policy: Literal["contig-zones", "auto-movable"] = _GUEST.online_policy  # type: ignore[assignment]
    auto_movable_ratio: int = Field(_GUEST.auto_movable_ratio, ge=0)
    auto_movable_numa_aware: bool = _GUEST.auto_movable_numa_aware
    swap: Size = Field(_GUEST.swap, description="swap device size (0: no swap)")
    swappiness: int = Field(_GUEST.swappiness, ge=0, le=200, description="vm.swappiness")
    swap_bandwidth: Size = Field(_GUEST.swap_bandwidth, gt=0, description="swap device bytes per second")
    swap_latency: Duration = Field(_GUEST.swap_latency, ge=0, le=1, description="seconds per synchronous read")
    vcpus: int = Field(_GUEST.vcpus, ge=1, le=1024, description="CPUs (PSI's nr_cpus)")
    transparent_hugepage: Literal["always", "madvise", "never"] = Field(
        _GUEST.transparent_hugepage,  # type: ignore[arg-type]
        description="THP at boot; with always or madvise khugepaged raises min_free_kbytes",
    )

    @model_validator(mode="after")
    def _sizes(self):
        """Rules between the guest's keys. Raised as ConfigError (pydantic passes it through unwrapped) so the
        message names the key to change, not the table."""
        g = self
        if len(g.boot) + g.extra_nodes > MAX_NUMNODES:
            raise ConfigError(
                "guest.extra_nodes",
                f"{len(g.boot)} boot nodes + {g.extra_nodes} extra nodes exceed MAX_NUMNODES "
                f"({MAX_NUMNODES}, NODES_SHIFT 10)",
            )
        if not g.boot or sum(g.boot) == 0:
            raise ConfigError("guest.boot", "the guest needs boot memory")
        for i, size in enumerate(g.boot):
            if size % (2 << 20):
                where = f"guest.boot[{i}]" if len(g.boot) > 1 else "guest.boot"
                raise ConfigError(where, f"{format_size(size)}: each node's boot memory must be a multiple of 2M")
        if g.max_addr % SECTION_SIZE:
            raise ConfigError("guest.max_addr", "must be a multiple of 128M")
        return self

    def config(self) -> GuestConfig:
        """The kernel model's configuration of this guest: the one place a scenario becomes a GuestConfig."""
        return GuestConfig(
            boot=list(self.boot),
            extra_nodes=self.extra_nodes,
            max_addr=self.max_addr,
            block_size=self.block_size,
            kernel=self.kernel,
            hypervisor=self.hypervisor,
            movable_node=self.movable_node,
            debug_vm=self.debug_vm,
            accounting=self.accounting,
            direct_gbpages=self.direct_gbpages,
            la57=self.la57,
            kernel_reserved=self.kernel_reserved,
            page_cache=self.page_cache,
            online_policy=self.online_policy,
            auto_movable_ratio=self.auto_movable_ratio,
            swap=self.swap,
            swappiness=self.swappiness,
            swap_bandwidth=self.swap_bandwidth,
            swap_latency=self.swap_latency,
            vcpus=self.vcpus,
            transparent_hugepage=self.transparent_hugepage,
            auto_movable_numa_aware=self.auto_movable_numa_aware,
        )

    @field_validator("boot", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return v if isinstance(v, list) else [v]

    @field_validator("kernel", mode="before")
    @classmethod
    def _kernel(cls, v):
        v = str(v)
        if v not in PROFILES:
            close = difflib.get_close_matches(v, PROFILES, n=1)
            raise ValueError(
                f"unknown kernel profile {v!r}"
                + (f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(PROFILES)})")
            )
        return v

    @field_validator("block_size")
    @classmethod
    def _block(cls, v):
        if v is not None and (v < SECTION_SIZE or v > MAX_MEMORY_BLOCK_SIZE or v & (v - 1)):
            raise ValueError("memory block size must be a power of two from 128M to 2G")
        return v


class MemmapSection(BaseModel):
    model_config = ConfigDict(extra="allow")
    strategy: str = "kmalloc"

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class _PluginSection(BaseModel):
    """A table naming a plugin (by `kind.key`); every other key is that plugin's parameter."""

    model_config = ConfigDict(extra="allow")
    kind: ClassVar[Kind]

    @property
    def plugin(self) -> str:
        return getattr(self, self.kind.key)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def resolve(self) -> Component:
        cls = registry.get_class(self.kind, self.plugin)
        params = registry.validate_params(self.kind, cls, self.params)
        _check_finite(params, self.kind.section)
        return Component(cls, params)


def _check_finite(value: Any, path: str) -> None:
    """Every number a component was given is finite: an `inf` rate or `nan` delay would hang a run or make it
    meaningless, and pydantic accepts both for a float field."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _check_finite(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(path, f"{value} is not a finite number")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_finite(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{path}.{key}")


class DriverSection(_PluginSection):
    kind = registry.DRIVERS
    name: str = "hyperv"


class OnliningSection(_PluginSection):
    kind = registry.ONLINING
    agent: str = "udev"


class WorkloadSection(_PluginSection):
    kind = registry.WORKLOADS
    name: str = "bursts"


class HostSection(_PluginSection):
    kind = registry.CONTROLLERS
    controller: str = "hyperv-buffer"


@dataclass(frozen=True)
class Component:
    """A plugin class and its validated parameters: what the world constructs the component from."""

    cls: type  # a balloonsim.plugin.Plugin subclass, constructed as cls(world, params)
    params: BaseModel


@dataclass(frozen=True)
class Components:
    """Everything a scenario names from the registry, resolved and validated."""

    memmap: list[Link]
    onlining: Component
    workload: Component
    host: Component
    driver: Component


class Scenario(_Strict):
    seed: int | None = Field(None, ge=0, lt=1 << 64)
    duration: Duration = 3600.0
    sample_interval: Duration = 5.0
    record_events: bool = True
    guest: GuestSection = Field(default_factory=GuestSection)
    memmap: MemmapSection = Field(default_factory=MemmapSection)
    driver: DriverSection = Field(default_factory=DriverSection)
    onlining: OnliningSection = Field(default_factory=OnliningSection)
    workload: WorkloadSection = Field(default_factory=WorkloadSection)
    host: HostSection = Field(default_factory=HostSection)
    _components: Components | None = PrivateAttr(default=None)

    @field_validator("duration", "sample_interval")
    @classmethod
    def _positive(cls, v):
        if v <= 0:
            raise ValueError("must be positive")
        return v

    def components(self) -> Components:
        """The strategy links and the components' classes with their validated parameters. Resolved once per
        Scenario object and kept: a Scenario is not meant to be edited after loading."""
        if self._components is None:
            self._components = Components(
                memmap=resolve(self.memmap.strategy, self.memmap.params),
                onlining=self.onlining.resolve(),
                workload=self.workload.resolve(),
                host=self.host.resolve(),
                driver=self.driver.resolve(),
            )
        return self._components


def plain(value: Any) -> Any:
    """A validated value as plain data: sizes in bytes, durations in seconds, models as tables (their fields read
    directly, because a Size field serialises back to text)."""
    if isinstance(value, BaseModel):
        out = {name: plain(getattr(value, name)) for name in type(value).model_fields}
        out.update({k: plain(v) for k, v in (value.model_extra or {}).items()})
        return out
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def normalized(scenario: Scenario) -> dict[str, Any]:
    """The scenario as the model reads it: every key, with one spelling per value (`2G` and `2GiB` are both
    2147483648, `altmap,,kmalloc` is `altmap,kmalloc`). Two configurations that normalise alike run alike."""
    parts = scenario.components()
    out = {name: plain(getattr(scenario, name)) for name in ("seed", "duration", "sample_interval", "record_events")}
    out["guest"] = plain(scenario.guest)
    strategy: dict[str, Any] = {"strategy": ",".join(cls.name for cls, _ in parts.memmap)}
    for cls, params in parts.memmap:
        strategy.update(plain(cls.Params.model_validate(params)))
    out["memmap"] = strategy
    for section, component in (
        ("driver", parts.driver),
        ("onlining", parts.onlining),
        ("workload", parts.workload),
        ("host", parts.host),
    ):
        table = getattr(scenario, section)
        out[section] = {table.kind.key: table.plugin, **plain(component.params)}
    return out


@cache
def size_keys() -> frozenset[str]:
    """Every scenario key typed as a size (`guest.swap`, `driver.request_offset`, `workload.task_size`, ...).

    Read from the types of the [guest] table and of every registered plugin's parameters, so a reader can spell a
    size level as 2G without a list of words to keep in step with the model.
    """
    keys = {f"guest.{name}" for name, field in GuestSection.model_fields.items() if _sized(field)}
    for kind in registry.KINDS:
        for name in registry.names(kind):
            params = getattr(registry.get_class(kind, name), "Params", None)
            if isinstance(params, type) and issubclass(params, BaseModel):
                keys.update(f"{kind.section}.{key}" for key, field in params.model_fields.items() if _sized(field))
    return frozenset(keys)


def _sized(field: Any) -> bool:
    """A field typed Size, `Size | None` or `list[Size]` (a per-node list such as guest.boot)."""

    def is_size(annotation: Any, metadata: list) -> bool:
        if any(isinstance(m, PlainSerializer) and m.func is format_size for m in metadata):
            return True
        args = typing.get_args(annotation)
        if typing.get_origin(annotation) is typing.Annotated:
            return is_size(args[0], list(args[1:]))
        if typing.get_origin(annotation) in (list, typing.Union, type(None | int)):
            return any(is_size(a, []) for a in args if a is not type(None))
        return False

    return is_size(field.annotation, list(field.metadata))


def load_scenario(config: dict[str, Any] | Scenario) -> Scenario:
    """Validate a run's tables: keys, types, sizes, plugin names and their parameters (ConfigError otherwise).

    What needs the built guest (a driver's region against the memory block size, say) is checked when the
    world is built: balloonsim.sim.world.check_run does both.
    """
    if isinstance(config, Scenario):
        scenario = config
    else:
        if not isinstance(config, dict):
            raise ConfigError("", f"a scenario is a table of keys, not {type(config).__name__}")
        try:
            scenario = Scenario.model_validate(config)
        except ValidationError as exc:
            error = ConfigError.from_validation(exc, "", Scenario)
            raise ConfigError(written_path(error.path, config), error.message) from None
    _cross_checks(scenario)
    scenario.components()
    return scenario


def _cross_checks(s: Scenario) -> None:
    """Rules between keys, each reported at the key to change."""
    samples = s.duration / s.sample_interval
    if samples > MAX_SAMPLES_PER_RUN:
        raise ConfigError(
            "sample_interval",
            f"{s.sample_interval:g} s over a duration of {s.duration:g} s is {samples:.3g} samples; "
            f"at most {MAX_SAMPLES_PER_RUN:,} per run",
        )
    boot_end = sum(s.guest.boot)
    if s.guest.max_addr <= boot_end:
        raise ConfigError("guest.max_addr", f"must exceed the boot memory ({boot_end >> 20}M): nothing to hot-add")
