"""``ConfigGroup``: the one way a config group is declared and parsed strictly."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from bitlatent.config import ConfigGroup


@dataclass
class Inner(ConfigGroup):
    betas: tuple[float, float] = (0.9, 0.99)
    steps: int = 10


@dataclass(frozen=True)
class Frozen(ConfigGroup):
    sides: tuple[int, ...] = (1, 2)


@dataclass
class Outer(ConfigGroup):
    GROUP = "outer"
    RETIRED = {"mode": "fast", "scale": 1.0}

    name: str = "a"
    limit: int | None = None
    splits: list[str] = field(default_factory=lambda: ["x"])
    inner: Inner = field(default_factory=Inner)


def test_missing_keys_take_defaults_and_none_is_all_defaults():
    assert Outer.from_dict({}) == Outer() == Outer.from_dict(None)
    assert Outer.from_dict({"name": "b"}) == Outer(name="b")


def test_an_unknown_key_names_the_group_and_the_known_keys():
    with pytest.raises(ValueError, match=r"unknown outer parameter\(s\) \['nmae'\]; known: \['inner', 'limit', 'name', 'splits'\]"):
        Outer.from_dict({"nmae": "b"})
    with pytest.raises(ValueError, match=r"unknown Inner parameter\(s\) \['step'\]"):  # default name: the class
        Inner.from_dict({"step": 3})
    with pytest.raises(ValueError, match="must be a mapping"):
        Outer.from_dict(["name"])


def test_lists_become_tuples_where_the_field_is_a_tuple():
    assert Inner.from_dict({"betas": [0.5, 0.9]}).betas == (0.5, 0.9)
    assert Inner(betas=[0.5, 0.9]).betas == (0.5, 0.9)  # built directly, too
    assert Frozen(sides=[3, 4]).sides == (3, 4)  # frozen dataclasses as well
    assert Outer.from_dict({"splits": ["y", "z"]}).splits == ["y", "z"]  # a list field stays a list


def test_nested_groups_are_parsed_strictly_under_their_path():
    outer = Outer.from_dict({"inner": {"betas": [0.1, 0.2]}})
    assert outer.inner == Inner(betas=(0.1, 0.2))
    with pytest.raises(ValueError, match=r"unknown outer\.inner parameter\(s\) \['beta'\]"):
        Outer.from_dict({"inner": {"beta": [0.1, 0.2]}})
    assert Outer.from_dict({"inner": Inner(steps=3)}).inner.steps == 3  # an instance is taken as it is


def test_to_dict_is_plain_json_and_round_trips():
    outer = Outer(name="c", limit=4, inner=Inner(betas=(0.5, 0.9)))
    plain = outer.to_dict()
    assert plain == {"name": "c", "limit": 4, "splits": ["x"], "inner": {"betas": [0.5, 0.9], "steps": 10}}
    assert Outer.from_dict(json.loads(json.dumps(plain))) == outer


def test_a_retired_key_is_accepted_only_with_the_value_the_code_now_uses():
    assert Outer.from_dict({"name": "b", "mode": "fast", "scale": 1}) == Outer(name="b")  # 1 == 1.0
    with pytest.raises(ValueError, match=r"outer\.mode was removed: only 'fast' remains, got 'slow'"):
        Outer.from_dict({"mode": "slow"})


def test_a_saved_config_this_code_cannot_build_names_the_command_that_rebuilds_it():
    assert Outer.from_saved({"mode": "fast"}, "models/x", "make x") == Outer()
    with pytest.raises(ValueError, match=r"models/x holds a model .*outer\.mode was removed.*`make x`"):
        Outer.from_saved({"mode": "slow"}, "models/x", "make x")
