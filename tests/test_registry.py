import pytest

from harness.errors import UserError
from harness.registry import available, get_algorithm, get_task_class
from harness.run import preflight


def test_available_lists_plugins_without_helpers():
    algos = available("algorithm")
    assert {"reference", "sft", "rft", "dpo"} <= set(algos)
    assert "base" not in algos
    assert "arith" in available("task")


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UserError, match=r"unknown algorithm 'nope'; valid: .*dpo"):
        get_algorithm("nope")
    with pytest.raises(UserError, match=r"unknown task 'nope'; valid: .*arith"):
        get_task_class("nope")


def test_lazy_import_registers_on_demand():
    cls = get_algorithm("dpo")
    assert cls.name == "dpo" and cls.needs_bank


@pytest.mark.parametrize("arg,kind", [("algo=sft,nope", "algo"), ("task=nope", "task"), ("model=nope", "model")])
def test_preflight_rejects_unknown_names(arg, kind):
    with pytest.raises(UserError, match=rf"unknown {kind} 'nope'; valid: "):
        preflight(["-m", arg])


def test_preflight_accepts_valid_names_and_other_overrides():
    preflight(["-m", "algo=sft,rft,dpo", "task=arith", "model=tiny", "model.name_or_path=x/y", "seed=0,1"])
