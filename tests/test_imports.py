"""The house's imports (docs/design.md §2): imports go down the layers of ``harness/``, no module of the project
imports itself back through others (at module level or inside a function), commands do not import each other, and
rebuilding a leaderboard from CSVs loads no model stack."""
import ast
import subprocess
import sys

from tests.conftest import ROOT

PACKAGES = ("harness", "algorithms", "tasks")


def project_imports() -> dict[str, set[str]]:
    """Each project module → the project modules it imports anywhere in its source."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            deps = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    if node.module in PACKAGES:
                        deps |= {f"{node.module}.{a.name}" for a in node.names}
                    elif node.module.split(".")[0] in PACKAGES:
                        deps.add(node.module)
                elif isinstance(node, ast.Import):
                    deps |= {a.name for a in node.names if a.name.split(".")[0] in PACKAGES}
            out[name] = deps
    return {m: {d for d in deps if d in out and d != m} for m, deps in out.items()}


def test_no_import_cycles():
    graph = project_imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph[m]):
            assert state.get(d) != 1, "import cycle: " + " -> ".join(path[path.index(d):] + [d])
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


#: harness/'s layers, bottom up (docs/design.md §2); a module imports only its own layer and those below
LAYERS = ["api", "distributed", "storage", "generation", "backbone", "config", "pipeline", "reporting", "commands"]
API = {"harness.options", "harness.registry", "harness.errors", "harness"}


def layer(module: str) -> str:
    """``harness.options`` is a package for one reason: its ``__main__`` (``python -m harness.options``) is a command
    that lists the shared sections too, which the API below them cannot import."""
    parts = module.split(".")
    if module in API:
        return "api"
    if module.endswith(".__main__"):
        return "commands"
    if len(parts) > 2 or (len(parts) == 2 and (ROOT / "harness" / parts[1]).is_dir()):
        return parts[1]
    return "commands"


def test_harness_imports_only_go_down_its_layers():
    graph = {m: deps for m, deps in project_imports().items() if m.startswith("harness")}
    packages = {p.name for p in (ROOT / "harness").iterdir() if (p / "__init__.py").exists()} - {"options"}
    assert packages == set(LAYERS) - {"api", "commands"}, "a new sub-package needs its place in LAYERS and design §2"
    up = [f"{m} ({layer(m)}) imports {d} ({layer(d)})" for m, deps in sorted(graph.items()) for d in sorted(deps)
          if d.startswith("harness") and LAYERS.index(layer(d)) > LAYERS.index(layer(m))]
    assert not up, "imports that go up:\n" + "\n".join(up)
    between = [f"{m} imports {d}" for m, deps in sorted(graph.items()) for d in sorted(deps)
               if d.startswith("harness") and layer(m) == layer(d) == "commands" and m != "harness.__main__"]
    assert not between, "commands that import commands:\n" + "\n".join(between)


def test_the_report_loads_no_model_stack():
    code = ("import sys, harness.report, harness.reporting.pairwise, harness.reporting.horizon; "
            "print(sorted(m for m in ('torch', 'transformers', 'accelerate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_hydra_tree_stops_at_the_config_layer():
    """Below the commands only ``config/`` reads a Hydra/OmegaConf config: it types it into ``Settings``, and every
    other module receives typed sections (docs/design.md §1)."""
    import ast

    readers = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        mods = {a.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom) and n.module}
        if any(m.split(".")[0] == "omegaconf" for m in mods):
            readers.append(str(path.relative_to(ROOT / "harness")))
    assert all(r.startswith("config/") or "/" not in r for r in readers), readers
