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


def test_every_algorithm_registers_and_has_its_config():
    from pathlib import Path

    from algorithms.base import OnlineAlgorithm

    root = Path(__file__).resolve().parent.parent
    for name in available("algorithm"):
        cls = get_algorithm(name)
        assert cls.name == name and (root / "sweeps" / "algo" / f"{name}.yaml").exists(), name
    assert issubclass(get_algorithm("ppo"), OnlineAlgorithm) and issubclass(get_algorithm("grpo"), OnlineAlgorithm)
    assert not get_algorithm("dqo").online


def test_no_algorithm_imports_vllm():
    """vLLM is imported only when generation.engine=vllm asks for it, never by an algorithm or the run."""
    import subprocess
    import sys

    code = ("import sys; from harness.registry import available, get_algorithm; import harness.pipeline; "
            "[get_algorithm(n) for n in available('algorithm')]; print('vllm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
