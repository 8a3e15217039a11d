import pytest
from omegaconf import OmegaConf

from harness.config.checks import check_config
from harness.errors import UserError


def cfg(**over):
    base = {"bank": {"k": 8, "top_p": 1.0, "temperature": 1.0}, "train": {"steps": 10, "warmup_ratio": 0.1},
            "algo": {"name": "dpo", "lr": 1e-5, "beta": 0.1}, "eval": {"k": 4, "n_test": None}}
    c = OmegaConf.create(base)
    for k, v in over.items():
        OmegaConf.update(c, k, v)
    return c


def test_sane_config_passes():
    check_config(cfg())


@pytest.mark.parametrize("key,value,msg", [
    ("bank.k", 0, r"bank.k=0 is out of range: it must be >= 1"),
    ("bank.top_p", 1.5, r"bank.top_p=1.5 is out of range"),
    ("train.steps", -3, r"train.steps=-3"),
    ("eval.n_test", 0, r"eval.n_test=0"),
    ("value_check.n_prompts", "abc", r"value_check.n_prompts='abc' is not a number"),
])
def test_out_of_range_values_name_the_key(key, value, msg):
    with pytest.raises(UserError, match=msg):
        check_config(cfg(**{key: value}))
