"""The layering rules, checked on the source: no import cycle between modules of ``trainer``,
``callbacks`` and ``architectures``, and ``callbacks`` never imports ``trainer``.

Imports are read with ``ast`` from every module, including those inside functions (a lazy import
is still a dependency). ``callbacks`` is the lowest layer: Keras callbacks usable in any
``model.fit`` without the rest of this repository (``tests/test_callbacks_standalone.py`` runs
them that way).
"""

from __future__ import annotations

import ast
import os

from tests.conftest import REPO

PACKAGES = ("trainer", "callbacks", "architectures")


def module_files() -> dict[str, str]:
    """{dotted module name: path} for every ``.py`` file of the packages (packages nest)."""
    found = {}
    for package in PACKAGES:
        for root, dirs, files in os.walk(os.path.join(REPO, package)):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                parts = os.path.relpath(os.path.join(root, name), REPO)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                found[".".join(parts)] = os.path.join(root, name)
    return found


def imports_of(module: str, path: str, modules) -> set[str]:
    """The modules of ``modules`` that ``module`` imports anywhere in its source."""
    is_package = os.path.basename(path) == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    targets = set()

    def add(name: str):
        # ``import a.b.c`` depends on a.b.c; a name that is no module of ours is ignored.
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != module:
            targets.add(name)

    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                add(submodule if submodule in modules else source)
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    assert {"trainer.run", "callbacks.base", "architectures.cnn"} <= set(graph)
    assert "callbacks.base" in graph["callbacks.scalars"]  # a module-level import
    assert "callbacks.text" in graph["callbacks.base"]


def test_a_cycle_and_a_lazy_import_are_found(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    from . import n\n    import pkg.o as o\n")
    assert imports_of("pkg.m", str(source), {"pkg", "pkg.m", "pkg.n", "pkg.o"}) == {"pkg.n", "pkg.o"}


def test_no_import_cycle_between_modules():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_callbacks_never_import_trainer():
    bad = sorted(f"{module} imports {target}" for module, targets in import_graph().items()
                 if module.split(".")[0] == "callbacks"
                 for target in targets if target.split(".")[0] == "trainer")
    assert not bad, "callbacks is the lowest layer:\n" + "\n".join(bad)
