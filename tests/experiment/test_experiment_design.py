"""Design expansion: counts, zip groups, exclusions, stable run ids, seeds independent of order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from balloonsim.errors import ConfigError
from balloonsim.experiment.design import count_points, iter_points, iter_runs, run_id, run_seed
from balloonsim.experiment.spec import experiment_from_dict


def make(**doc):
    doc.setdefault("name", "t")
    return experiment_from_dict(doc)


def test_full_factorial_count_and_order():
    exp = make(factors={"a": [1, 2, 3], "b": ["x", "y"]}, replications=2)
    points = list(iter_points(exp))
    assert len(points) == 6
    assert [(p.factors["a"], p.factors["b"]) for p in points] == [
        (1, "x"),
        (1, "y"),
        (2, "x"),
        (2, "y"),
        (3, "x"),
        (3, "y"),
    ]
    runs = list(iter_runs(exp))
    assert len(runs) == 12
    assert [r.replicate for r in runs] == [0] * 6 + [1] * 6
    assert len({r.run_id for r in runs}) == 12


def test_no_factors_is_one_point_per_replicate():
    exp = make(base={"duration": "1m"}, replications=3)
    assert [r.config for r in iter_runs(exp)] == [{"duration": "1m"}] * 3


def test_nested_and_dotted_factor_keys_are_the_same_factor():
    nested = make(factors={"memmap": {"strategy": ["kmalloc", "altmap"]}})
    dotted = make(factors={"memmap.strategy": ["kmalloc", "altmap"]})
    assert nested.factors == dotted.factors == {"memmap.strategy": ["kmalloc", "altmap"]}
    assert [r.run_id for r in iter_runs(nested)] == [r.run_id for r in iter_runs(dotted)]


def test_factor_levels_are_set_into_the_base():
    exp = make(base={"memmap": {"strategy": "kmalloc", "x": 1}}, factors={"memmap.strategy": ["altmap"]})
    (run,) = iter_runs(exp)
    assert run.config == {"memmap": {"strategy": "altmap", "x": 1}}
    assert exp.base == {"memmap": {"strategy": "kmalloc", "x": 1}}


def test_table_levels_replace_the_table():
    exp = make(base={"driver": {"name": "hyperv", "p": 1}}, factors={"driver": [{"name": "xen"}]})
    (run,) = iter_runs(exp)
    assert run.config == {"driver": {"name": "xen"}}


def test_zip_group_varies_together_and_is_crossed_with_the_rest():
    exp = make(factors={"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [True, False]}, zip=[["a", "b"]])
    combos = [(p.factors["a"], p.factors["b"], p.factors["c"]) for p in iter_points(exp)]
    assert combos == [
        (1, "x", True),
        (1, "x", False),
        (2, "y", True),
        (2, "y", False),
        (3, "z", True),
        (3, "z", False),
    ]


def test_design_zip_zips_everything():
    exp = make(factors={"a": [1, 2], "b": ["x", "y"]}, design="zip")
    assert [(p.factors["a"], p.factors["b"]) for p in iter_points(exp)] == [(1, "x"), (2, "y")]


def test_exclusions_drop_matching_runs_and_keep_indices_and_seeds():
    doc = {"factors": {"a": [1, 2], "b": ["x", "y"]}, "replications": 2, "seed": 7}
    full = {(r.index, r.replicate): r for r in iter_runs(make(**doc))}
    cut = list(iter_runs(make(**doc, exclude=[{"a": 2, "b": "y"}])))
    assert count_points(make(**doc, exclude=[{"a": 2, "b": "y"}])) == 3
    assert len(cut) == 6
    assert all((r.factors["a"], r.factors["b"]) != (2, "y") for r in cut)
    for r in cut:
        assert full[(r.index, r.replicate)] == r


def test_exclusion_with_nested_keys():
    exp = make(factors={"memmap.strategy": ["kmalloc", "altmap"]}, exclude=[{"memmap": {"strategy": "altmap"}}])
    assert [p.factors["memmap.strategy"] for p in iter_points(exp)] == ["kmalloc"]


def test_run_ids_are_stable_and_depend_on_config_and_replicate_only():
    a = make(name="one", base={"duration": "1m"}, factors={"x": [1, 2]}, seed=1)
    b = make(name="two", base={"duration": "1m"}, factors={"x": [2, 1]}, seed=99)
    ids_a = {(r.factors["x"], r.replicate): r.run_id for r in iter_runs(a)}
    ids_b = {(r.factors["x"], r.replicate): r.run_id for r in iter_runs(b)}
    assert ids_a == ids_b
    assert run_id({"duration": "1m", "x": 1}, 0) == ids_a[(1, 0)]
    assert run_id({"x": 1, "duration": "1m"}, 0) == ids_a[(1, 0)]  # key order does not matter
    assert run_id({"duration": "1m", "x": 1}, 1) != ids_a[(1, 0)]
    assert len(ids_a[(1, 0)]) == 16
    # a literal value pinned here: a change of the id scheme would orphan every existing results directory
    assert run_id({}, 0) == "4866bd1132d249ff"


def test_seeds_come_from_seedsequence_of_master_index_replicate():
    exp = make(factors={"x": [1, 2, 3]}, replications=2, seed=12345)
    for r in iter_runs(exp):
        expected = np.random.SeedSequence(12345, spawn_key=(r.index, r.replicate)).generate_state(1)[0]
        assert r.seed == int(expected)
    seeds = [r.seed for r in iter_runs(exp)]
    assert len(set(seeds)) == len(seeds)


def test_seeds_do_not_depend_on_replications_or_master_changes_them():
    two = {(r.index, r.replicate): r.seed for r in iter_runs(make(factors={"x": [1, 2]}, replications=2))}
    five = {(r.index, r.replicate): r.seed for r in iter_runs(make(factors={"x": [1, 2]}, replications=5))}
    assert all(five[k] == v for k, v in two.items())
    other = {(r.index, r.replicate): r.seed for r in iter_runs(make(factors={"x": [1, 2]}, replications=2, seed=1))}
    assert other != two


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=0, max_size=3),
    replications=st.integers(1, 3),
    master=st.integers(0, 2**32),
)
def test_expansion_properties(sizes, replications, master):
    factors = {f"f{i}": list(range(n)) for i, n in enumerate(sizes)}
    exp = make(factors=factors, replications=replications, seed=master)
    runs = list(iter_runs(exp))
    assert len(runs) == int(np.prod(sizes or [1])) * replications
    assert len({r.run_id for r in runs}) == len(runs)
    # a run's seed is a function of its position only: recompute in reverse order
    for r in reversed(runs):
        assert r.seed == run_seed(master, r.index, r.replicate)


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        (
            {"factors": {"a": [1, 2], "b": [1]}, "zip": [["a", "b"]]},
            "zip[0]: factors that vary together need",
        ),
        ({"factors": {"a": [1, 2], "b": [1]}, "design": "zip"}, 'design = "zip" varies all factors together'),
        ({"factors": {"a": [1]}, "zip": [["a", "c"]]}, "zip[0][1]: 'c' is not a factor"),
        ({"factors": {"a": [1, 1]}}, "factors.a[1]: duplicate level 1 (same as [0])"),
        ({"factors": {"a": []}}, "factors.a: empty list of levels"),
        ({"factors": {"a": [1]}, "exclude": [{"a": 3}]}, "exclude[0].a: 3 is not a level of this factor"),
        ({"factors": {"a": [1]}, "exclude": [{"b": 1}]}, "exclude[0].b: not a factor of this experiment"),
        ({"factors": {"d": [1], "d.x": [2]}}, "factors.d.x: overlaps factor 'd'"),
        ({"base": {"seed": 3}}, "base.seed: not allowed in an experiment"),
        ({"factors": {"seed": [1, 2]}}, "factors.seed: cannot be a factor"),
        (
            {"factors": {"status": ["a"]}},
            "factors.status: cannot be a factor: 'status' is a column of runs.csv",
        ),
        ({"replicatons": 2}, "replicatons: unknown key 'replicatons' (did you mean 'replications'?)"),
        ({"replications": 0}, "replications: must be at least 1 (got 0)"),
        ({"replications": "2"}, "replications: expected a whole number (got '2')"),
    ],
)
def test_structural_errors_name_the_key(doc, fragment):
    with pytest.raises(ConfigError) as info:
        make(**doc)
    assert fragment in str(info.value)


def test_each_run_has_its_own_configuration():
    """Every run gets its own copy of the base and of its factor levels (copy_tree, not copy.deepcopy): a run
    function that edits its configuration changes no other run's, nor the experiment."""
    exp = make(
        base={"guest": {"boot": "2G"}, "workload": {"on": {"dist": "exponential", "mean": 60}}},
        factors={"driver": [{"name": "hyperv", "steps": [[10, "4G"]]}, {"name": "xen"}]},
        replications=2,
    )
    runs = list(iter_runs(exp))
    first, again = runs[0], runs[2]  # the same point, replicates 0 and 1
    assert first.config == again.config
    first.config["guest"]["boot"] = "8G"
    first.config["workload"]["on"]["mean"] = 1
    first.config["driver"]["steps"][0][1] = "16G"
    assert again.config["guest"]["boot"] == "2G" and again.config["workload"]["on"]["mean"] == 60
    assert again.config["driver"]["steps"] == [[10, "4G"]]
    assert exp.base["guest"]["boot"] == "2G" and exp.factors["driver"][0]["steps"] == [[10, "4G"]]
    assert [r.config for r in iter_runs(exp)][0]["guest"]["boot"] == "2G"


def test_copy_tree_is_deepcopy_for_tables():
    import copy
    import datetime

    from balloonsim.experiment.keypaths import copy_tree

    table = {"a": [1, 2.5, {"b": None, "c": True}], "d": datetime.datetime(2026, 12, 2), "e": (1, [2])}
    copied = copy_tree(table)
    assert copied == copy.deepcopy(table) == table
    assert copied["a"] is not table["a"] and copied["a"][2] is not table["a"][2]
    assert copied["e"][1] is not table["e"][1]  # a tuple (not TOML's) falls back to deepcopy: its list is copied
