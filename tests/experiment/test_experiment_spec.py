"""Experiment files and --set overrides (run configurations checked with a stand-in validator here)."""

from __future__ import annotations

import textwrap

import pytest

from balloonsim.errors import ConfigError, UserError
from balloonsim.experiment import tomlwrite
from balloonsim.experiment.design import iter_points
from balloonsim.experiment.loader import load_experiment
from balloonsim.experiment.overrides import apply_overrides, parse_value
from balloonsim.experiment.spec import experiment_from_dict
from balloonsim.experiment.validation import validate_runs


def write(tmp_path, text, name="exp.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


EXAMPLE = """
    name = "demo"
    description = "two strategies"
    replications = 2
    seed = 5

    [base]
    duration = "1m"
    [base.guest]
    boot = "4G"

    [factors]
    memmap.strategy = ["kmalloc", "altmap"]
    "onlining.delay_s" = [0, 5]
"""


def test_load_example(tmp_path):
    exp = load_experiment(write(tmp_path, EXAMPLE), check_runs=False)
    assert exp.name == "demo"
    assert exp.factors == {"memmap.strategy": ["kmalloc", "altmap"], "onlining.delay_s": [0, 5]}
    assert exp.base == {"duration": "1m", "guest": {"boot": "4G"}}
    assert exp.source_text.startswith("\nname")
    assert len(exp.source_sha256) == 64


def test_name_defaults_to_file_stem(tmp_path):
    exp = load_experiment(write(tmp_path, "replications = 1\n", "my-sweep.toml"), check_runs=False)
    assert exp.name == "my-sweep"


def test_design_digest_ignores_comments_and_description_but_not_content(tmp_path):
    a = load_experiment(write(tmp_path, EXAMPLE, "a.toml"), check_runs=False)
    b = load_experiment(
        write(tmp_path, "# note\n" + EXAMPLE.replace("two strategies", "x"), "b.toml"), check_runs=False
    )
    c = load_experiment(write(tmp_path, EXAMPLE.replace("seed = 5", "seed = 6"), "c.toml"), check_runs=False)
    assert a.source_sha256 != b.source_sha256
    assert a.design_sha256 == b.design_sha256
    assert a.design_sha256 != c.design_sha256


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2", 2),
        ("2.5", 2.5),
        ("true", True),
        ("8G", "8G"),
        ('"8G"', "8G"),
        ('["a", "b"]', ["a", "b"]),
        ("altmap,kmalloc", "altmap,kmalloc"),
        ("{name = 'xen'}", {"name": "xen"}),
    ],
)
def test_parse_value(text, value):
    assert parse_value(text) == value


def test_overrides(tmp_path):
    exp = load_experiment(
        write(tmp_path, EXAMPLE),
        [
            "base.guest.boot=8G",
            "replications=3",
            'factors.memmap.strategy=["kmalloc"]',
            'factors.driver.name=["xen"]',
            "base.memmap.strategy=altmap",
        ],
        check_runs=False,
    )
    assert exp.base["guest"]["boot"] == "8G"
    assert exp.base["memmap"] == {"strategy": "altmap"}
    assert exp.replications == 3
    assert exp.factors == {"memmap.strategy": ["kmalloc"], "onlining.delay_s": [0, 5], "driver.name": ["xen"]}
    assert exp.overrides[0] == "base.guest.boot=8G"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("bse.guest.boot=8G", "--set bse.guest.boot: unknown experiment key 'bse' (did you mean 'base'?)"),
        ("replications.x=2", "'replications' is a single value"),
        ("replications", "expected KEY=VALUE"),
        (
            "replications=two",
            "replications: expected a whole number (got 'two') (from --set replications=two)",
        ),
        ("base.duration.x=1", "--set base.duration.x: base.duration is a value, not a table"),
    ],
)
def test_bad_overrides(tmp_path, override, fragment):
    with pytest.raises(UserError) as info:
        load_experiment(write(tmp_path, EXAMPLE), [override], check_runs=False)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "line"),
    [('name = "x"\nreplications = [1,\n', 2), ('name = "x"\n\nreplications = = 2\nseed = 1\n', 3)],
)
def test_toml_syntax_error_names_line(tmp_path, text, line):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_experiment(path, check_runs=False)
    assert str(info.value).startswith(f"{path}:{line}: not valid TOML: ")


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such experiment file"):
        load_experiment(tmp_path / "nope.toml")


class _Strict:
    """Stand-in for load_scenario: knows two strategies and rejects unknown top-level keys."""

    def __call__(self, config):
        strategy = config.get("memmap", {}).get("strategy", "kmalloc")
        if strategy not in ("kmalloc", "altmap"):
            raise ConfigError("memmap.strategy", f"unknown memmap strategy {strategy!r}")
        for key in config:
            if key not in ("memmap", "duration", "driver"):
                raise ConfigError(key, "unknown key")
        if config.get("driver", {}).get("name") == "xen" and "p" in config.get("driver", {}):
            raise ConfigError("driver.p", "unknown key for xen")


def test_validation_blames_the_factor_level():
    exp = experiment_from_dict({"name": "t", "factors": {"memmap.strategy": ["kmalloc", "altmap", "altmapp"]}})
    with pytest.raises(ConfigError) as info:
        validate_runs(exp, _Strict())
    assert str(info.value) == "factors.memmap.strategy[2]: unknown memmap strategy 'altmapp'"


def test_validation_blames_the_base_with_run_context():
    exp = experiment_from_dict(
        {
            "name": "t",
            "base": {"driver": {"name": "hyperv", "p": 1}},
            "factors": {"driver.name": ["hyperv", "xen"]},
        }
    )
    with pytest.raises(ConfigError) as info:
        validate_runs(exp, _Strict())
    assert str(info.value) == "base.driver.p: unknown key for xen (in the run with driver.name='xen')"


def test_validation_of_a_table_level_keeps_the_inner_path():
    exp = experiment_from_dict({"name": "t", "factors": {"driver": [{"name": "hyperv"}, {"name": "xen", "p": 2}]}})
    with pytest.raises(ConfigError) as info:
        validate_runs(exp, _Strict())
    assert str(info.value) == "factors.driver[1].p: unknown key for xen"


def test_validation_counts_points_and_rejects_all_excluded():
    exp = experiment_from_dict({"name": "t", "factors": {"memmap.strategy": ["kmalloc", "altmap"]}})
    assert validate_runs(exp, _Strict()) == 2
    empty = experiment_from_dict(
        {
            "name": "t",
            "factors": {"memmap.strategy": ["kmalloc"]},
            "exclude": [{"memmap.strategy": "kmalloc"}],
        }
    )
    with pytest.raises(ConfigError, match="exclude: excludes every run; the design is empty"):
        validate_runs(empty, _Strict())


def test_toml_writer_round_trips_an_experiment():
    import tomllib

    exp = experiment_from_dict(
        {
            "name": "t",
            "base": {"duration": "1m", "guest": {"boot": ["2G", "2G"]}, "memmap": {}},
            "factors": {"memmap.strategy": ["kmalloc", "altmap"], "driver": [{"name": "xen", "x": 1.5}]},
            "exclude": [{"memmap.strategy": "altmap"}],
            "zip": [],
        }
    )
    doc = tomllib.loads(tomlwrite.dumps(exp.model_dump(mode="json")))
    again = experiment_from_dict(doc)
    assert again == exp
    assert [p.config for p in iter_points(again)] == [p.config for p in iter_points(exp)]


def test_apply_overrides_does_not_touch_the_input():
    doc = {"base": {"guest": {"boot": "4G"}}, "factors": {"memmap": {"strategy": ["kmalloc"]}}}
    out, paths = apply_overrides(doc, ["base.guest.boot=8G", "factors.memmap.strategy=['altmap']"])
    assert doc["base"]["guest"]["boot"] == "4G"
    assert out["factors"] == {"memmap.strategy": ["altmap"]}
    assert paths == {
        "base.guest.boot": "base.guest.boot=8G",
        "factors.memmap.strategy": "factors.memmap.strategy=['altmap']",
    }
