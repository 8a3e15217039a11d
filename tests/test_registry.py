import pytest

from harness.config.preflight import preflight
from harness.errors import UserError
from harness.registry import REFERENCE, available, get_algorithm, get_task_class


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

    from algorithms._base import OnlineAlgorithm

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

    code = ("import sys; from harness.registry import available, get_algorithm; import harness.pipeline.stages; "
            "[get_algorithm(n) for n in available('algorithm')]; print('vllm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_backbone_names_no_algorithm():
    """No module under harness/ refers to a plug-in by name (a string, an identifier or an import), so adding
    or removing an algorithm never needs a backbone edit. The exceptions: ``registry.REFERENCE``, the π_ref
    row every algorithm is read against, and the config's declared default of ``warm_start.algo`` (``sft``, a
    default like config.yaml's, which a user may change). The speed benchmark, which times named algorithms'
    steps against TRL's, lives in ``benchmarks/``."""
    import ast
    from pathlib import Path

    names = set(available("algorithm"))
    root = Path(__file__).resolve().parent.parent / "harness"
    hits = []
    for path in sorted(root.rglob("*.py")):  # sub-packages too
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                words = set(node.value.replace(".", " ").replace("/", " ").split())
                found = words & names
            elif isinstance(node, ast.Name):
                found = {node.id.lower()} & names if node.id != "REFERENCE" else set()
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                found = {m.split(".")[-1] for m in mods if m and m.startswith("algorithms.")} & names
            else:
                continue
            hits += [f"{path.name}:{node.lineno}: {n}" for n in found
                     if not (path.name == "registry.py" and n == REFERENCE)
                     and not (path.name == "schema.py" and n == "sft")]
    assert not hits, hits
