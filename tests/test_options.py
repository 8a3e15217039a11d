"""Typed options: every plug-in's yaml matches its declared options, and bad options stop with one line."""
import dataclasses

import pytest
import yaml

from harness.errors import UserError
from harness.options import defaults, describe, parse_options
from harness.registry import available, get, get_algorithm
from tests.conftest import ROOT, run_cli


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize("kind,name", [("algorithm", n) for n in available("algorithm")] +
                         [("task", n) for n in available("task")])
def test_yaml_matches_the_declared_options(kind, name):
    """The yaml (what Hydra composes and users read) declares exactly the plug-in's options, with the same
    defaults; every option has a one-line doc."""
    cls = get(kind, name)
    group = "algo" if kind == "algorithm" else "task"
    raw = yaml.safe_load((ROOT / "sweeps" / group / f"{name}.yaml").read_text())
    assert raw.pop("name") == name
    raw.pop("search", None)  # harness.tune's search space (tests/test_tune.py)
    ours, declared = _flatten(raw), _flatten(defaults(cls.Options))
    assert set(ours) == set(declared), f"{name}.yaml keys differ from {cls.__name__}.Options: " \
                                       f"{sorted(set(ours) ^ set(declared))}"
    for key, value in declared.items():
        assert ours[key] == value, f"{name}.yaml {key}={ours[key]!r}, declared default {value!r}"
    assert all(doc for *_, doc in describe(cls.Options)), name


def test_parse_options_checks_keys_types_and_bounds():
    opts = get_algorithm("dqo").Options
    o = parse_options(opts, {"beta": 0.2, "is_clip": None, "lam": 0}, "algo")
    assert o.beta == 0.2 and o.is_clip is None and o.lam == 0.0 and o.lr == opts().lr
    for values, msg in [({"betta": 1}, r"unknown option algo.betta \(did you mean algo.beta\?\); valid: .*lam"),
                        ({"beta": "abc"}, r"algo.beta='abc' is not a number"),
                        ({"beta": 0}, r"algo.beta=0 is out of range: it must be > 0"),
                        ({"lam": 1.5}, r"algo.lam=1.5 is out of range: it must be >= 0 and <= 1"),
                        ({"value_model": "nope"}, r"algo.value_model='nope': valid values are separate, shared"),
                        ({"process_values": "yes"}, r"algo.process_values='yes': must be true or false")]:
        with pytest.raises(UserError, match=msg):
            parse_options(opts, values, "algo")
    online = get_algorithm("grpo").Options
    with pytest.raises(UserError, match=r"algo.budget.prompts='lots': must be a whole number"):
        parse_options(online, {"budget": {"prompts": "lots"}, "prompt_pool": 8, "max_completion_length": 8}, "algo")
    with pytest.raises(UserError, match=r"algo.prompt_pool is not set"):
        parse_options(online, {"max_completion_length": 8, "budget": {"prompts": 8}}, "algo")
    kto = get_algorithm("kto").Options
    assert parse_options(kto, {"desirable_weight": 1.5}, "algo").desirable_weight == 1.5
    with pytest.raises(UserError, match=r"algo.desirable_weight='x': must be auto \| float"):
        parse_options(kto, {"desirable_weight": "x"}, "algo")


def test_every_option_class_is_a_dataclass_with_defaults():
    for name in available("algorithm"):
        for f in dataclasses.fields(get_algorithm(name).Options):
            assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


@pytest.mark.parametrize("args,msg", [
    (["algo=dqo", "algo.betta=0.2"], "unknown option algo.betta (did you mean algo.beta?)"),
    (["-m", "algo=dqo,ppo", "++algo.lam=0.5"], "unknown option algo.lam for ppo"),
    (["task=gsm8k", "++task.n_shots=2"], "unknown option task.n_shots (did you mean task.n_shot?)"),
])
def test_unknown_algo_key_stops_with_one_line_before_any_work(tmp_path, args, msg):
    res = run_cli([*args, f"results_dir={tmp_path}"])
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0], res.stderr
    assert not (tmp_path / "artifacts").exists()


def test_a_group_default_set_by_a_plug_in_is_its_declared_default():
    """A plug-in may give a group of options its own defaults (``budget: Budget = option(Budget(prompts=...))``);
    ``defaults`` and ``describe`` read that instance, not the group class's defaults."""
    from algorithms._base import Budget, OnlineOptions
    from harness.options import option

    @dataclasses.dataclass
    class Opts(OnlineOptions):
        budget: Budget = option(Budget(prompts=7), "when to stop")

    assert defaults(Opts)["budget"] == {"prompts": 7, "gen_tokens": None}
    assert ("budget.prompts", "int", "7") == describe(Opts)[-2][:3]
    assert parse_options(Opts, {"prompt_pool": 3}, "algo").budget.prompts == 7


def test_options_command_lists_every_option_with_its_doc(capsys):
    from harness.options.__main__ import main

    assert main(["dqo", "reference"]) == 0
    out = capsys.readouterr().out
    assert "algo.is_self_normalize" in out and "(>= 0 and <= 1)" in out and "algo=reference  (no options)" in out
    assert main(["nope"]) == 2 and "unknown algorithm 'nope'" in capsys.readouterr().err
    assert main([]) == 0  # everything: the top-level options, every shared section, every algorithm
    out = capsys.readouterr().out
    assert "top level" in out and "train.micro_batch_size" in out and "bank.top_p" in out and "(> 0 and <= 1)" in out
    assert "model.lora.alpha" in out and "algo=dqo" in out
