"""Scenarios the simulation tests share."""

from __future__ import annotations


def holding_guest(boot: str) -> dict:
    """A guest that holds on to its memory: no balloon, no hot-add, nothing onlined, a host target of its boot
    memory. Tests add the workload (and swap) they need."""
    return {
        "duration": "10m",
        "guest": {"boot": boot},
        "driver": {"name": "hyperv", "balloon": False},
        "onlining": {"agent": "offline"},
        "host": {"controller": "static", "target": boot},
    }
