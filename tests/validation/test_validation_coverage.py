"""What the studies' reports say of the validation (balloonsim/validate/coverage.json) is what the recordings,
the known disagreements and the model say now, and every metric's checks find their quantities."""

from __future__ import annotations

import fnmatch
import json

import pytest
from click.testing import CliRunner
from validation_support import KNOWN

from balloonsim.analysis.metrics import TABLE
from balloonsim.cli import cli
from balloonsim.validate.compare import apply_known, compare
from balloonsim.validate.coverage import CHECKS, COVERAGE_FILE, NOTES, coverage, dumps, load_coverage
from balloonsim.validate.known import load_known


@pytest.fixture(scope="module")
def known():
    return load_known(KNOWN)


@pytest.fixture(scope="module")
def rows(recordings, known):
    out = []
    for rec in recordings:
        out += compare(rec)
    apply_known(out, known)
    return out


def test_the_shipped_coverage_is_what_validate_finds_now(recordings, rows, known):
    fresh = dumps(coverage(recordings, rows, known))
    assert COVERAGE_FILE.read_text() == fresh, (
        "balloonsim/validate/coverage.json is stale: run `balloonsim validate --write-coverage` and commit it"
    )
    assert load_coverage() == json.loads(fresh)


def test_every_check_names_a_metric_and_finds_its_quantities(rows):
    assert set(NOTES) <= set(CHECKS)
    for metric, checks in CHECKS.items():
        assert metric in TABLE, metric
        for check in checks:
            for pattern in check.quantities:
                assert any(fnmatch.fnmatchcase(r.quantity, pattern) for r in rows), (metric, pattern)
            for pattern in check.cases:
                assert any(fnmatch.fnmatchcase(r.case, pattern) for r in rows), (metric, pattern)


def test_add_memory_outcomes_lean_the_way_the_recordings_do(recordings, rows, known):
    """The report's "the kernel's add failed where the model's succeeded": counted from the rows themselves."""
    doc = coverage(recordings, rows, known)
    (outcome,) = [c for c in doc["metrics"]["hotadd_ok"]["checks"] if c["outcome"]]
    adds = [r for r in rows if r.quantity.startswith("add_memory dimm")]
    added = {0, "0"}  # add_memory() returned 0; anything else is its failure
    kernel_only = [r for r in adds if r.real not in added and r.model in added]
    model_only = [r for r in adds if r.real in added and r.model not in added]
    assert outcome["rows"] == len(adds) > 100
    assert outcome["model_lower"] == len(kernel_only) > 0  # the per-cpu lists: the kernel fails first
    assert outcome["model_higher"] == len(model_only) == 0
    assert outcome["agree"] + sum(outcome["known"].values()) + outcome["disagree"] == len(adds)
    # -ENOMEM's check takes the adds into a guest short of memory only: every disagreement is among them
    (short,) = [c for c in doc["metrics"]["hotadd_enomem"]["checks"] if c["outcome"]]
    under = [r for r in adds if r.case.startswith(("pressure-", "oom-anon-", "swap-fill-"))]
    assert short["rows"] == len(under) < len(adds) and short["model_lower"] == outcome["model_lower"]


def test_known_disagreements_have_a_summary_that_stands_alone(known):
    """A report lists only the entries its metrics meet, so a summary cannot lean on another entry's number."""
    for k in known:
        assert k.summary and "[" not in k.summary and " above" not in k.summary, k.index


def test_write_coverage_needs_every_case_and_writes_nothing_otherwise():
    before = COVERAGE_FILE.read_bytes()
    result = CliRunner().invoke(cli, ["validate", "--write-coverage", "dimm-128M-kernel"])
    assert result.exit_code == 2
    assert "--write-coverage needs every case and kernel" in result.output
    assert COVERAGE_FILE.read_bytes() == before
