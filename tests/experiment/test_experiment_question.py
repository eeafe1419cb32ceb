"""An experiment states its question and primary metrics: descriptive keys, checked, outside the design digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from balloonsim.errors import ConfigError
from balloonsim.experiment.loader import load_experiment
from balloonsim.experiment.spec import experiment_from_dict

ROOT = Path(__file__).resolve().parents[2]
BASE = {"name": "demo", "factors": {"memmap.strategy": ["kmalloc", "altmap"]}}


def test_question_and_primary_are_read():
    exp = experiment_from_dict({**BASE, "question": "Which is safer?", "primary": ["guest_crashed", "oom_kills"]})
    assert exp.question == "Which is safer?"
    assert exp.primary == ["guest_crashed", "oom_kills"]


def test_they_do_not_change_the_design_digest():
    """A finished directory stays the same experiment when its file gains a question: nothing reruns."""
    plain = experiment_from_dict(BASE)
    asked = experiment_from_dict({**BASE, "question": "Which?", "primary": ["oom_kills"], "compare": "memmap.strategy"})
    assert plain.design_sha256 == asked.design_sha256
    assert experiment_from_dict({**BASE, "replications": 2}).design_sha256 != plain.design_sha256


@pytest.mark.parametrize(
    ("doc", "where", "message"),
    [
        ({"primary": "oom_kills"}, "primary", "expected a list"),
        ({"primary": ["oom kills"]}, "primary[0]", "'oom kills' is not a metric name"),
        ({"primary": ["oom_kills", "oom_kills"]}, "primary[1]", "'oom_kills' is already primary[0]"),
        ({"question": 3}, "question", "expected a string"),
        ({"compare": "onlining.agent"}, "compare", "'onlining.agent' is not a factor of this experiment"),
    ],
)
def test_bad_values_name_the_key(doc, where, message):
    with pytest.raises(ConfigError) as err:
        experiment_from_dict({**BASE, **doc})
    assert str(err.value).startswith(f"{where}: ") and message in str(err.value)


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_experiment_asks_its_question(path):
    exp = load_experiment(path, check_runs=False)
    assert exp.question.endswith("?") and "\n" not in exp.question
    assert exp.primary
