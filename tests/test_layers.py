"""The package's layering (README, "Layers"): every import of ``mmn/`` (in-function ones included), parsed with
``ast``, goes from a higher layer to a lower one or within a layer, and no import cycle exists; the training
step's backward() lives in the engine only, and no model builds its own DataLoader.

Layers, bottom to top: utils, structures -> config -> data -> evaluation -> modeling -> engine,
visualization -> predict, video -> demo.
"""
import ast
import os
import re

import pytest

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mmn")
LAYER_RANK = {"utils": 0, "structures": 0, "config": 1, "data": 2, "evaluation": 3, "modeling": 4, "engine": 5,
              "visualization": 5, "predict": 6, "video": 6, "demo": 7, "web": 7}


def package_modules(root=PACKAGE_DIR):
    """{module name: file path} of every .py file of the package."""
    modules = {}
    base = os.path.dirname(root)
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path, base)[:-3].replace(os.sep, ".")
                modules[module[: -len(".__init__")] if module.endswith(".__init__") else module] = path
    return modules


def import_edges(modules):
    """{module: {imported module of the package}}, from every import statement of each file (in functions too):
    ``import a.b`` names a.b; ``from a import b`` names a.b when that is a module, else a."""
    edges = {}
    for module, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            else:
                continue
            for name in names:
                while name not in modules and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name in modules and name != module:
                    targets.add(name)
        edges[module] = targets
    return edges


def layer(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def upward_imports(edges):
    """["a -> b", ...]: imports from a lower layer to a higher one."""
    found = []
    for source, targets in edges.items():
        for target in targets:
            low, high = LAYER_RANK.get(layer(source)), LAYER_RANK.get(layer(target))
            if low is not None and high is not None and high > low:
                found.append(f"{source} -> {target}")
    return sorted(found)


def import_cycles(edges):
    """The strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def cycle_edges(cycle, edges):
    """The imports between the modules of one cycle, for the failure message."""
    members = set(cycle)
    return sorted(f"{a} -> {b}" for a in cycle for b in edges[a] if b in members)


@pytest.fixture(scope="module")
def graph():
    modules = package_modules()
    return modules, import_edges(modules)


def test_every_package_folder_has_a_layer(graph):
    modules, _ = graph
    assert {layer(m) for m in modules if layer(m)} <= set(LAYER_RANK), "a new top-level part of mmn needs a layer"


def test_imports_go_downward_only(graph):
    _, edges = graph
    assert upward_imports(edges) == []


def test_no_import_cycle(graph):
    _, edges = graph
    cycles = import_cycles(edges)
    assert not cycles, "import cycles: " + "; ".join(", ".join(cycle_edges(c, edges)) for c in cycles)


def test_the_training_step_lives_in_the_engine(graph):
    modules, _ = graph
    backward = sorted(p for m, p in modules.items() if re.search(r"\.backward\(", open(p).read())
                      and layer(m) != "engine")
    loaders = sorted(p for m, p in modules.items() if "DataLoader(" in open(p).read() and layer(m) == "modeling")
    assert backward == [], "backward() outside mmn/engine"
    assert loaders == [], "a model builds its own DataLoader (the engine owns evaluation)"


def test_the_checks_can_fail():
    """The graph functions find a planted upward import and a planted cycle."""
    edges = {"mmn.data.catalog": {"mmn.modeling.registry"}, "mmn.modeling.registry": {"mmn.data.catalog"}}
    assert upward_imports(edges) == ["mmn.data.catalog -> mmn.modeling.registry"]
    assert import_cycles(edges) == [["mmn.data.catalog", "mmn.modeling.registry"]]
