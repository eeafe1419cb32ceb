"""The metrics the simulation produces and the ones the analysis describes are the same set, each described.

A metric missing from analysis/metrics.py reaches the report as its raw name with a guessed unit; a described
metric nothing produces is a stale entry (a renamed metric the report would silently stop discussing).
"""

from __future__ import annotations

import pytest

from balloonsim import simulate
from balloonsim.analysis.metrics import TABLE
from balloonsim.registry import DRIVERS as DRIVER_KIND
from balloonsim.registry import names

DRIVERS = names(DRIVER_KIND)


@pytest.fixture(scope="module")
def produced() -> dict[str, set[str]]:
    """Metric names of a short real run with each registered driver (defaults otherwise)."""
    return {driver: set(simulate({"duration": "5m", "driver": {"name": driver}}, seed=1).metrics) for driver in DRIVERS}


def test_every_driver_was_run(produced):
    assert {"xen", "hyperv", "virtio-mem", "dimm"} <= set(produced)


@pytest.mark.parametrize("driver", DRIVERS)
def test_every_produced_metric_is_described(produced, driver):
    assert sorted(produced[driver] - set(TABLE)) == []


def test_every_described_metric_is_produced(produced):
    """Metrics the analysis derives from others (their formula names the producer) are not the simulation's, and
    retired ones are described only for older results."""
    simulated = {name for name, metric in TABLE.items() if not metric.derived and not metric.retired}
    assert sorted(simulated - set().union(*produced.values())) == []


def test_a_driver_metric_is_described_as_that_driver_s(produced):
    """The simulation's own metrics come with every driver; a driver's own only with that driver."""
    common = set.intersection(*produced.values())
    for name, metric in TABLE.items():
        if metric.derived or metric.retired:
            continue
        expected = {driver for driver, found in produced.items() if name in found}
        if name in common:
            assert metric.driver is None, name
        else:
            assert expected == {metric.driver}, name


def test_every_metric_has_a_definition_unit_and_producer():
    for name, metric in TABLE.items():
        assert metric.definition.endswith(".") and len(metric.definition) > 20, name
        assert metric.unit in ("count", "pages", "fraction", "rate", "bytes", "s", "text"), name
        assert metric.producer, name


def test_derived_metrics_name_their_formula():
    derived = {name: metric for name, metric in TABLE.items() if metric.derived}
    assert "blocks_removable_fraction" in derived
    assert derived["blocks_removable_fraction"].producer == "analysis: blocks_removable_end / blocks_added_end"
