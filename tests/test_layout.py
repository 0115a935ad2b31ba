"""The import graph of edgeexport/, models/ and targets/ has no circle and no upward arrow,
deferred imports (inside functions, under TYPE_CHECKING) included: read from the source with
ast, not by importing it.

The layering rule, written once: ``LAYERS`` from the foundation up; a module may import from
its own layer and the layers below it, never above."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"edgeexport": ROOT / "edgeexport", "edgeexport.models": ROOT / "models",
            "edgeexport.targets": ROOT / "targets"}


LAYERS = ("core", "models", "contracts", "targets", "inputs", "analysis", "estimate", "measure",
          "tflite", "int8", "app", "export", "build", "distribute", "cli")
ENTRY_POINTS = {"edgeexport.__main__"}  # above every layer
FOUNDATION = {"edgeexport", "edgeexport.data"}  # __version__; reference tables (no code)


def layer(module: str) -> int:
    """The rank of a module's layer in ``LAYERS`` (the entry points rank above them all)."""
    if module in ENTRY_POINTS:
        return len(LAYERS)
    if module in FOUNDATION:
        return 0
    return LAYERS.index(module.split(".")[1])


def modules() -> dict[str, Path]:
    found = {}
    for package, directory in PACKAGES.items():
        for path in directory.rglob("*.py"):
            parts = path.relative_to(directory).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph = {name: set() for name in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    assert len(graph) > 50 and sum(map(len, graph.values())) > 150  # the walk found the code
    assert cycles(graph) == []


def upward_arrows(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} → {b}" for a, targets in graph.items() for b in targets
                  if layer(b) > layer(a))


def test_no_module_imports_from_a_layer_above_its_own():
    graph = import_graph()
    assert {name.split(".")[1] for name in graph if name not in FOUNDATION | ENTRY_POINTS} \
        == set(LAYERS)  # every module sits in a named layer
    assert upward_arrows(graph) == []


def test_each_layer_says_its_job_and_stays_small():
    package = ROOT / "edgeexport"
    for name in LAYERS:
        directory = {"models": ROOT / "models", "targets": ROOT / "targets"}.get(name, package / name)
        init = ast.parse((directory / "__init__.py").read_text())
        assert ast.get_docstring(init), f"{name}/__init__.py has no docstring"
        modules = [p for p in directory.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= 12, f"{name}/ holds {len(modules)} modules: split it"
    assert sorted(p.name for p in package.glob("*.py")) == ["__init__.py", "__main__.py"]


def test_the_rule_catches_an_upward_arrow():
    assert upward_arrows({"edgeexport.core.errors": {"edgeexport.cli.group"},
                          "edgeexport.cli.group": {"edgeexport.core.errors"}}) \
        == ["edgeexport.core.errors → edgeexport.cli.group"]


def test_the_circle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
