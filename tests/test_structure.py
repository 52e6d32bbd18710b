"""The package's shape (ARCHITECTURE.md): no import cycle, and a harness that names no method.

Both read the source with ``ast`` (every import, at the top of a module or inside a function), so they hold
for the installed package and for a checkout alike.
"""

from __future__ import annotations

import ast
from importlib import resources
from pathlib import Path

import pytest

import bench
from bench.methods import method_names

PACKAGES = ("bench", "bench.quality", "bench.methods", "bench.datasets", "bench.reports")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        folder = Path(str(resources.files(package)))
        for path in folder.glob("*.py"):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def imports(name: str, path: Path, known: dict) -> set[str]:
    """The package's modules that ``name`` imports (``from bench.x import y`` counts module ``bench.x.y``
    when that is a module, else ``bench.x``)."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]

    def module_of(dotted: str) -> str:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {module_of(alias.name) for alias in node.names if alias.name.startswith("bench")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            if base.startswith("bench"):
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else module_of(base) for a in node.names}
    return found - {name, ""}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_dependencies_point_one_way():
    graph = import_graph()
    for name, deps in graph.items():
        if name.startswith("bench.methods"):
            assert not {d for d in deps if d.startswith(("bench.cli", "bench.store", "bench.reports"))}, name
        if name.startswith("bench.datasets"):
            assert not {d for d in deps if d.startswith("bench.methods")}, name
        if name.startswith("bench.reports"):  # reports read the store, never the harness that runs cells
            assert not {d for d in deps if d in ("bench.runner", "bench.cell", "bench.executors")}, name
        if name.startswith("bench.quality"):  # the metrics read images and methods, never the harness
            assert not {d for d in deps if not d.startswith(("bench.quality", "bench.errors", "bench.datasets",
                                                             "bench.methods"))}, name


def _string_literals(path: Path) -> set[str]:
    """Every string constant of a module except docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings}


@pytest.mark.parametrize("module", sorted(n for n in modules() if n.startswith("bench.")
                                          and n.split(".")[1] not in ("methods", "datasets", "reports")))
def test_the_harness_names_no_method(module):
    named = _string_literals(modules()[module]) & set(method_names())
    assert named == set(), f"{module} names the methods {sorted(named)}: ask the method through its interface"


def test_the_method_name_check_sees_a_name(tmp_path):
    source = tmp_path / "x.py"
    source.write_text('"""capsan in a docstring is fine."""\nTWINS = {"capsan": "capsan-conv"}\n')
    assert _string_literals(source) & set(method_names()) == {"capsan", "capsan-conv"}
    assert bench.__name__ == "bench"


def test_a_bench_process_loads_heavy_libraries_only_where_it_uses_them(tmp_path):
    """Each costs a bench process seconds at start (benchmarks/startup.py): torchvision is imported where a sample
    grid is saved, inductor where ``--compile`` compiles, scikit-learn and imbalanced-learn where a cell
    resamples or scores; determinism is on all the same."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "import bench.runner, bench.methods, bench.reports\n"
            "from bench.cell import seed_everything\n"
            "seed_everything(0, torch.device('cpu'))\n"
            "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),"
            " *(name in sys.modules for name in ('torchvision', 'torch._inductor.config', 'sklearn', 'imblearn')))")
    # not from the checkout's root, whose bench/ folder would shadow the installed package's layout
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "False", "False", "False", "False"]


def _gradient_calls(path: Path) -> list[str]:
    """The ``x.backward(...)`` and ``x.zero_grad(...)`` calls of a module, as "line: name"."""
    return [f"{node.lineno}: {node.func.attr}" for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("backward", "zero_grad")]


@pytest.mark.parametrize("module", sorted(n for n in modules() if n.startswith("bench.methods.")
                                          and n != "bench.methods.budget"))
def test_every_optimiser_update_goes_through_the_ledger(module):
    # Ledger.update is the one place that zeroes, backpropagates and steps: a method that did so itself could
    # step past the ledger (an uncounted update) and past what fused training plugs in there.
    assert _gradient_calls(modules()[module]) == [], f"{module}: make the update with ctx.ledger.update"


def test_the_ledger_check_sees_a_hand_written_update(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("def f(opt, loss):\n    opt.zero_grad()\n    loss.backward()\n    opt.step()\n")
    assert _gradient_calls(source) == ["2: zero_grad", "3: backward"]
