"""Named plugins (drivers, workloads, onlining agents, host controllers) with their own parameters.

Each kind has an entry-point group (`balloonsim.drivers`, `balloonsim.workloads`,
`balloonsim.onlining`, `balloonsim.controllers`); a class registers under a name and declares a
pydantic `Params` model, so a scenario's `driver = {name = "xen", batch_pages = 512}` is validated
with errors that name the key (`driver.batch_pages`).
"""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from balloonsim.errors import ConfigError

_BUILTINS: dict[str, dict[str, str]] = {
    "balloonsim.drivers": {
        "xen": "drivers.xen:XenBalloon",
        "hyperv": "drivers.hyperv:HvBalloon",
        "virtio-mem": "drivers.virtio_mem:VirtioMem",
        "dimm": "drivers.dimm:AcpiDimm",
    },
    "balloonsim.workloads": {
        "constant": "balloonsim.sim.workloads:Constant",
        "ramp": "balloonsim.sim.workloads:Ramp",
        "bursts": "balloonsim.sim.workloads:Bursts",
        "tasks": "balloonsim.sim.workloads:RandomTasks",
        "trace": "balloonsim.sim.workloads:TraceReplay",
        "idle": "balloonsim.sim.workloads:Idle",
    },
    "balloonsim.onlining": {
        "auto": "balloonsim.sim.onlining:AutoOnline",
        "udev": "balloonsim.sim.onlining:Udev",
        "starving-agent": "balloonsim.sim.onlining:StarvingAgent",
        "offline": "balloonsim.sim.onlining:NoOnline",
    },
    "balloonsim.controllers": {
        "static": "balloonsim.sim.controllers:Static",
        "schedule": "balloonsim.sim.controllers:Schedule",
        "hyperv-buffer": "balloonsim.sim.controllers:HyperVBuffer",
        "mom": "balloonsim.sim.controllers:MomRules",
        "pi-psi": "balloonsim.sim.controllers:PiPsi",
    },
}

KIND_KEY = {
    "balloonsim.drivers": ("driver", "name"),
    "balloonsim.workloads": ("workload", "name"),
    "balloonsim.onlining": ("onlining", "agent"),
    "balloonsim.controllers": ("host", "controller"),
}


def _load(target: str) -> type:
    import importlib

    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def names(group: str) -> list[str]:
    found = set(_BUILTINS[group])
    found |= {ep.name for ep in entry_points(group=group)}
    return sorted(found)


def get_class(group: str, name: str) -> type:
    section, key = KIND_KEY[group]
    if name in _BUILTINS[group]:
        return _load(_BUILTINS[group][name])
    for ep in entry_points(group=group):
        if ep.name == name:
            return ep.load()
    known = names(group)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
    raise ConfigError(f"{section}.{key}", f"unknown {section} {name!r}{hint}")


def validate_params(group: str, name: str, params: dict[str, Any]) -> BaseModel:
    """The plugin's Params model built from `params`; errors name `section.key`."""
    section, _ = KIND_KEY[group]
    cls = get_class(group, name)
    model: type[BaseModel] = cls.Params
    try:
        return model(**params)
    except ValidationError as exc:
        raise pydantic_error(exc, section, model) from None


def pydantic_error(exc: ValidationError, prefix: str, model: type[BaseModel] | None = None) -> ConfigError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    path = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        fields = list(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(str(err["loc"][-1]), fields, n=1)
        msg = "unknown key" + (
            f" (did you mean {close[0]!r}?)" if close else (f" (known: {', '.join(fields)})" if fields else "")
        )
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return ConfigError(path, msg)
