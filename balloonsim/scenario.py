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
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from balloonsim import registry
from balloonsim.errors import ConfigError
from balloonsim.kernel.guest import GuestConfig
from balloonsim.kernel.profiles import PROFILES
from balloonsim.memmap import Link, resolve
from balloonsim.registry import Kind
from balloonsim.types import Duration, Size
from balloonsim.units import MAX_MEMORY_BLOCK_SIZE, SECTION_SIZE

_GUEST = GuestConfig()  # the defaults


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GuestSection(_Strict):
    """The [guest] table: what the guest boots with. Its defaults are the kernel model's (GuestConfig)."""

    kernel: str = _GUEST.kernel
    boot: list[Size] = Field(default_factory=lambda: list(_GUEST.boot), description="boot memory per NUMA node")
    extra_nodes: int = Field(_GUEST.extra_nodes, ge=0, le=64, description="possible nodes without boot memory")
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

    @model_validator(mode="after")
    def _sizes(self):
        if not self.boot or sum(self.boot) == 0:
            raise ValueError("boot: the guest needs boot memory")
        if any(b % (2 << 20) for b in self.boot):
            raise ValueError("boot: each node's boot memory must be a multiple of 2M")
        if self.max_addr % SECTION_SIZE:
            raise ValueError("max_addr: must be a multiple of 128M")
        return self


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
        return Component(cls, registry.validate_params(self.kind, cls, self.params))


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
    seed: int | None = None
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
            raise ConfigError.from_validation(exc, "", Scenario) from None
    scenario.components()
    _cross_checks(scenario)
    return scenario


def _cross_checks(s: Scenario) -> None:
    boot_end = sum(s.guest.boot)
    if s.guest.max_addr <= boot_end:
        raise ConfigError("guest.max_addr", f"must exceed the boot memory ({boot_end >> 20}M): nothing to hot-add")
