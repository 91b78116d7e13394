"""``--set key=value`` parsing against keyword-only hyperparameters, and run identities."""

from __future__ import annotations

from typing import Literal

import pytest

from benchmark.config import RunConfig
from benchmark.options import OptionError, parse_overrides, resolve


class Example:
    def __init__(self, *, lambda_dm: float = 1.0, steps: int = 3, detach: bool = True,
                 form: Literal["paper", "bernoulli"] = "paper", task: str | None = None) -> None:
        pass


def test_values_are_parsed_by_type():
    got = parse_overrides(Example, ["lambda_dm=0.5", "steps=7", "detach=false", "form=bernoulli", "task=none"], "x")
    assert got == {"lambda_dm": 0.5, "steps": 7, "detach": False, "form": "bernoulli", "task": None}
    assert parse_overrides(Example, ["task=classes"], "x") == {"task": "classes"}
    assert resolve(Example, {"steps": 9})["steps"] == 9 and resolve(Example, {})["lambda_dm"] == 1.0


def test_unknown_key_names_the_key_close_matches_and_the_options():
    with pytest.raises(OptionError) as err:
        parse_overrides(Example, ["lamda_dm=2"], "method 'dmsca'")
    text = str(err.value)
    assert "method 'dmsca' has no option 'lamda_dm'" in text and "Did you mean lambda_dm" in text
    assert "steps (int)" in text


@pytest.mark.parametrize("pair, expected", [("steps=1.5", "expected int"), ("lambda_dm=abc", "expected float"),
                                            ("detach=maybe", "expected a bool"), ("form=other", "expected one of"),
                                            ("steps", "not of the form key=value")])
def test_wrong_type_names_the_key_and_the_expected_type(pair, expected):
    with pytest.raises(OptionError, match=expected):
        parse_overrides(Example, [pair], "x")


def _config(**kw) -> RunConfig:
    base = dict(method="no_coupling", db="synthetic", backbone="smallcnn", seed=0, epochs=2, batch_size=8, lr=1e-3,
                image_size=16, db_options={"n_train": 10})
    base.update(kw)
    return RunConfig(**base)


def test_run_id_is_a_stable_hash_of_the_config_and_protocol_ignores_the_method():
    a, b = _config(), _config()
    assert a.run_id == b.run_id and len(a.run_id) == 16
    assert _config(seed=1).run_id != a.run_id
    assert _config(db_options={"n_train": 11}).run_id != a.run_id
    other = _config(method="single_task", method_options={"task": "classes"})
    assert other.run_id != a.run_id and other.protocol_id == a.protocol_id
    assert _config(seed=1).protocol_id != a.protocol_id
    assert RunConfig.from_dict(a.to_dict()) == a
