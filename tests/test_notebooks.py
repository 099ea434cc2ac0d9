"""Notebook hygiene (SPEC §1): every notebook parses, is importable by ipynb.fs.defs, has no outputs,
obeys the import-safety rules, and the import graph is a DAG."""
import ast
import importlib
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
DEFINITION_NOTEBOOKS = ["utils", "data_processing", "models", "sae", "artifacts", "experiments", "evaluation", "training",
                        "sae_training", "concepts", "interventions", "steering", "plots", "browser", "pipelines"]
KEPT = (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)


def _cells(path: Path) -> list[str]:
    """Source of every code cell."""
    nb = json.loads(path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def _module(path: Path) -> ast.Module:
    """All code cells joined, parsed."""
    return ast.parse("\n\n".join(_cells(path)))


def _kept(node: ast.stmt) -> bool:
    """What ipynb.fs.defs keeps: imports, def, class, plain ALL_CAPS assignments."""
    if isinstance(node, KEPT):
        return True
    return isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets)


def _edges(path: Path) -> set[str]:
    """Notebooks this notebook imports through ipynb.fs."""
    out = set()
    for node in _module(path).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ipynb.fs."):
            out.add(node.module.rsplit(".", 1)[-1])
    return out


def test_notebooks_exist():
    names = {p.stem for p in NOTEBOOKS}
    assert {"utils", "data_processing"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_format_and_clean(path):
    nb = json.loads(path.read_text())
    assert path.stem.isidentifier(), f"{path.name}: notebook names must be Python identifiers"
    assert nb["nbformat"] == 4
    assert nb["metadata"]["kernelspec"]["language"].lower() == "python", "ipynb refuses other languages"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name} cell {i} has outputs: commit notebooks without outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"
        if cell["cell_type"] == "markdown":
            assert isinstance(cell["source"], list) or "\n" not in cell["source"], (
                f"{path.name} cell {i}: markdown source must be a list of lines (ipynb comments it line by line)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_import_safety(path):
    for i, src in enumerate(_cells(path)):
        ast.parse(src)  # every cell is Python: no %magic, no !shell
        assert "pip install" not in src, f"{path.name} cell {i}: no pip install in notebooks"
    tree = _module(path)
    dropped = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ipynb.fs."):
            assert not node.module.startswith("ipynb.fs.full"), f"{path.name}: ipynb.fs.full runs a whole notebook"
            assert all(a.name != "*" for a in node.names), f"{path.name}: star import from {node.module}"
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id.isupper():
            pytest.fail(f"{path.name}: annotated constant {node.target.id} is dropped by ipynb.fs.defs")
        if isinstance(node, ast.Assign) and _kept(node) is False and any(
                isinstance(t, ast.Tuple) and any(isinstance(e, ast.Name) and e.id.isupper() for e in t.elts)
                for t in node.targets):
            pytest.fail(f"{path.name}: tuple assignment of constants is dropped by ipynb.fs.defs")
        if isinstance(node, (ast.If, ast.Try, ast.For, ast.With)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Assign) and any(isinstance(t, ast.Name) and t.id.isupper() for t in sub.targets):
                    pytest.fail(f"{path.name}: constant defined inside if/try/for/with is dropped on import")
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and not _kept(node):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            dropped |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            local = {a.arg for a in ast.walk(node) if isinstance(a, ast.arg)}
            local |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            reads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            bad = sorted((reads & dropped) - local)
            assert not bad, f"{path.name}: {node.name} reads module globals that ipynb.fs.defs drops: {bad}"


def test_import_graph_is_a_dag():
    graph = {p.stem: _edges(p) for p in NOTEBOOKS}
    for name, deps in graph.items():
        assert deps <= set(graph), f"{name} imports unknown notebooks {deps - set(graph)}"
    state: dict[str, int] = {}

    def visit(node, stack):
        assert state.get(node) != 1, f"import cycle: {' -> '.join(stack + [node])}"
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in graph[node]:
            visit(dep, stack + [node])
        state[node] = 2

    for node in graph:
        visit(node, [])


@pytest.mark.parametrize("name", [n for n in DEFINITION_NOTEBOOKS if any(p.stem == n for p in NOTEBOOKS)])
def test_definition_notebook_imports(name):
    module = importlib.import_module(f"ipynb.fs.defs.{name}")
    public = [n for n in vars(module) if not n.startswith("_")]
    assert public, f"{name} exports nothing"
    for n in public:
        obj = getattr(module, n)
        if callable(obj) and getattr(obj, "__module__", None) == module.__name__:
            assert (obj.__doc__ or "").strip(), f"{name}.{n} has no docstring"


def test_readme_import_graph_is_true():
    """The import-graph table in the README (written by scripts/readme_results.py) lists exactly each notebook's
    ipynb imports, every notebook once."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- import-graph:start -->")[1].split("<!-- import-graph:end -->")[0]
    table = {}
    for line in block.strip().splitlines()[2:]:
        name, deps = (cell.strip() for cell in line.strip("|").split("|"))
        table[name.strip("`")] = {d.strip(" `") for d in deps.split(",")} - {"—", ""}
    assert table == {p.stem: _edges(p) for p in NOTEBOOKS}
