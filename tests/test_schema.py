"""The shared sections (harness/config/schema.py): ``config.yaml`` holds exactly their declared defaults, the model
groups set only declared options, and a bad value of any of them stops with one line naming the key."""
import pytest
import yaml

from harness.config.compose import compose
from harness.config.schema import SECTIONS, TOP, Model, Settings, settings
from harness.errors import UserError
from harness.options import defaults, describe
from tests.conftest import ROOT


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        out |= _flatten(v, f"{prefix}{k}.") if isinstance(v, dict) and k != "algo" else {f"{prefix}{k}": v}
    return out


def test_config_yaml_holds_the_declared_defaults():
    raw = yaml.safe_load((ROOT / "sweeps" / "config.yaml").read_text())
    raw = {k: v for k, v in raw.items() if k not in ("defaults", "hydra")}
    declared = defaults(Settings)
    for key in ("algo", "task", "given", "overrides", "interpolated"):
        del declared[key]
    # the model group sets the model's own options (config.yaml the levers every model shares), the dist group
    # the strategy's name
    declared["model"] = {k: v for k, v in declared["model"].items() if k in raw["model"]}
    del declared["dist"]["name"]
    ours, theirs = _flatten(raw), _flatten(declared)
    assert set(ours) == set(theirs), sorted(set(ours) ^ set(theirs))
    for key, value in theirs.items():
        assert ours[key] == value, f"config.yaml {key}={ours[key]!r}, declared default {value!r}"
    assert set(raw) == set(SECTIONS) | set(TOP)
    assert all(doc for key, *_, doc in describe(Settings) if key.split(".")[0] in set(SECTIONS) | set(TOP))


@pytest.mark.parametrize("group", sorted(p.stem for p in (ROOT / "sweeps" / "model").glob("*.yaml")))
def test_model_groups_set_declared_options(group):
    raw = yaml.safe_load((ROOT / "sweeps" / "model" / f"{group}.yaml").read_text())
    assert set(raw) <= {f for f, *_ in describe(Model) if "." not in f}
    compose([f"model={group}"])  # and their values pass the declared types and bounds


def test_the_default_config_parses():
    s = compose([])
    assert s.train.steps == 300 and s.bank.max_new_tokens == s.model.max_new_tokens and s.warm_start.steps > 0
    assert s.algo["name"] == "dqo" and s.task["name"] == "arith"


def _given(**over):
    values = {k: v for k, v in compose([]).given.items()}
    for dotted, v in over.items():
        node = values
        *head, leaf = dotted.split("__")
        for part in head:
            node[part] = node = dict(node[part])
        node[leaf] = v
    return values


@pytest.mark.parametrize("key,value,msg", [
    ("bank__k", 0, r"bank.k=0 is out of range: it must be >= 1"),
    ("bank__top_p", 1.5, r"bank.top_p=1.5 is out of range"),
    ("train__steps", -3, r"train.steps=-3"),
    ("eval__n_test", 0, r"eval.n_test=0"),
    ("value_check__n_prompts", "abc", r"value_check.n_prompts='abc': must be a whole number"),
    ("train__compile", "yes", r"train.compile='yes': must be true or false"),
    ("include_reference", "maybe", r"include_reference='maybe': must be true or false"),
    ("eval__split", "dev", r"eval.split='dev': valid values are test, val"),
    ("train__precision", "fp8", r"train.precision='fp8': valid values are auto, bf16, fp16, fp32"),
    ("model__dtype", "float64", r"model.dtype='float64': valid values are float32, bfloat16, float16"),
    ("model__lora__alpha", 0, r"model.lora.alpha=0 is out of range: it must be > 0"),
    ("seed", 1.5, r"seed=1.5: must be a whole number"),
    ("train__stesp", 3, r"unknown option train.stesp \(did you mean train.steps\?\)"),
])
def test_a_bad_value_names_the_key(key, value, msg):
    with pytest.raises(UserError, match=msg):
        settings(_given(**{key: value}))


def test_an_unknown_override_names_the_closest_option():
    with pytest.raises(UserError, match=r"unknown option model.hiden_size \(did you mean model.hidden_size\?\)"):
        compose(["model.hiden_size=8"])
