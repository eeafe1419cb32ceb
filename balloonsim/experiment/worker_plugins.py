"""Imported only as a preload of the workers' forkserver (`forkserver.SIMULATOR_MODULES`): scans the plugin
registry and imports balloonsim's own plugins there, once.

A worker otherwise scans the installed distributions and imports the plugins its runs name at its first runs:
about 40 ms of CPU that every worker pays at the same moment, at the start of a batch, when the cores are all
busy. The forkserver imports them while the runner is still loading the experiment, and each worker is forked
with them loaded. Other packages' plugins are left to the runs that name them.
"""

from __future__ import annotations

from balloonsim import registry

NOT_LOADED = registry.load_package("balloonsim")
