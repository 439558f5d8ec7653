"""The house's shape: stage subpackages whose imports point one way, and no import circles.

Every module of ``ad`` and ``envs`` is parsed (imports inside functions and ``TYPE_CHECKING``
blocks count too: a deferred import is still a dependency). The layers, lowest first:

    envs -> ad foundation (ad, ad.errors, ad.utils, ad.fields, ad.defaults,
         ad.config, ad.generalist) -> ad.data -> ad.learn
         -> ad.evaluation -> entry points (ad.pipeline, ad.selection, ad.cli)

A module may import its own layer and the layers below it, never one above. Size is no rule of
its own: a module owns one noun, and a function past ~80 lines is the sign to split (STYLE.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("envs", "foundation", "ad.data", "ad.learn", "ad.evaluation", "entry")
FOUNDATION = {
    "ad",
    "ad.errors",
    "ad.utils",
    "ad.fields",
    "ad.defaults",
    "ad.config",
    "ad.generalist",
}
ENTRY = {"ad.pipeline", "ad.selection", "ad.cli"}
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    paths = sorted((ROOT / "ad").rglob("*.py")) + sorted((ROOT / "envs").rglob("*.py"))
    return {_module_name(path): path for path in paths}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that ``path`` imports anywhere in its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports ({ast.unparse(node)})"
            # `from ad.data import histories` imports the module ad.data.histories
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def _layer(module: str) -> str:
    if module == "envs" or module.startswith("envs."):
        return "envs"
    if module in FOUNDATION:
        return "foundation"
    if module in ENTRY:
        return "entry"
    for stage in ("ad.data", "ad.learn", "ad.evaluation"):
        if module == stage or module.startswith(stage + "."):
            return stage
    raise AssertionError(f"{module} belongs to no layer; add it to tests/test_architecture.py")


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_every_module_belongs_to_a_layer_and_imports_only_its_own_and_lower_layers():
    backward = []
    for module, imported in _graph().items():
        rank = LAYERS.index(_layer(module))
        for target in sorted(imported):
            if LAYERS.index(_layer(target)) > rank:
                backward.append(f"{module} imports {target}")
    assert not backward, "imports against the pipeline's direction:\n" + "\n".join(backward)


def test_no_import_circles():
    graph = _graph()
    # Tarjan's strongly connected components: a component of two or more modules is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(" <-> ".join(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_checker_sees_backward_and_deferred_imports(tmp_path):
    """The checks above would catch a deferred (in-function) import from data into learn."""
    source = "def f():\n    from ad.learn import model\n    import envs.base\n"
    path = tmp_path / "probe.py"
    path.write_text(source)
    modules = {"ad.learn.model": path, "envs.base": path, "ad.learn": path}
    assert _imports(path, modules) == {"ad.learn", "ad.learn.model", "envs.base"}
    assert LAYERS.index(_layer("ad.learn.model")) > LAYERS.index(_layer("ad.data.collect"))


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's body, its docstring left out."""
    body = node.body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:] or body
    return body[-1].end_lineno - body[0].lineno + 1


def test_every_module_says_what_it_holds_and_no_function_runs_long():
    undocumented, long = [], {}
    for name, path in _modules().items():
        tree = ast.parse(path.read_text(), filename=str(path))
        if not ast.get_docstring(tree) and path.stat().st_size > 0:
            undocumented.append(name)
        for node in ast.walk(tree):
            functions = (ast.FunctionDef, ast.AsyncFunctionDef)
            if isinstance(node, functions) and _body_lines(node) > MAX_FUNCTION_LINES:
                long[f"{name}.{node.name}"] = _body_lines(node)
    assert not undocumented, f"modules without a docstring naming what they hold: {undocumented}"
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them): {long}"


def test_only_the_two_file_format_modules_import_h5py():
    """Ours (ad.data.histories) and XLand-100B's (ad.data.xland; and envs.xland, below ad.data,
    reads its groups' ruleset ids)."""
    importers = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(n == "h5py" or n.startswith("h5py.") for n in names):
                importers.append(name)
    assert sorted(set(importers)) == ["ad.data.histories", "ad.data.xland", "envs.xland"]
