"""The import graph of core/ and dashboard/ has no circle, no module passes 400 lines, and no module imports another's
private (_underscored) names.

Every `import` / `from ... import` counts as an edge, wherever it stands (module level, inside a function, under
`if TYPE_CHECKING:`): a circle hidden in a function body is still a circle. Relative imports are resolved against the
importing module; `from core.x import y` where `core/x/y.py` exists is an edge to that submodule. Only edges between
modules of the walked packages are kept (the standard library and third parties are not part of the graph).
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "dashboard")
MAX_LINES = 400


def module_names(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the given top-level packages (`__init__` = the package)."""
    names = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            names[".".join(parts)] = path
    return names


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute dotted name `from <node.module>` refers to, seen from `module`."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _deepest_known(name: str, known) -> str | None:
    """`name` itself if it is a walked module, else its nearest walked parent package (None if none)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in known:
            return ".".join(parts)
        parts.pop()
    return None


def imports_of(module: str, path: Path, known) -> set[str]:
    """The walked modules `module` imports anywhere in its body."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        out.update(t for t in (_deepest_known(t, known) for t in targets) if t is not None)
    return out


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    known = module_names(root, packages)
    return {m: imports_of(m, p, known) for m, p in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, and modules that import themselves (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):  # recursion depth is bounded by the number of modules (a few hundred)
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def private_imports(root: Path, packages=PACKAGES) -> list[str]:
    """Every private name a walked module takes from another: `from other import _name`, or `alias._name` where
    alias is another walked module bound by an import (`from core.units import extract as ex; ex._Run`)."""
    known = module_names(root, packages)
    out = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        aliases = {}  # local name -> the walked module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                aliases |= {a.asname: a.name for a in node.names if a.asname and a.name in known}
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, path.name == "__init__.py", node)
                for a in node.names:
                    if f"{base}.{a.name}" in known:
                        aliases[a.asname or a.name] = f"{base}.{a.name}"
                    elif a.name.startswith("_") and not a.name.startswith("__") and base != module \
                            and _deepest_known(base, known) is not None:
                        out.append(f"{module}: from {base} import {a.name}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")
                    and aliases[node.value.id] != module):
                out.append(f"{module}: {aliases[node.value.id]}.{node.attr}")
    return sorted(set(out))


def describe(found: list[list[str]], graph: dict[str, set[str]]) -> str:
    lines = []
    for component in found:
        members = set(component)
        edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]
        lines.append(f"circle of {len(component)}: {', '.join(component)}\n    " + "\n    ".join(edges))
    return "\n".join(lines)


def test_no_import_circles():
    graph = import_graph(ROOT)
    found = cycles(graph)
    assert not found, "import circles in core/ and dashboard/:\n" + describe(found, graph)


def test_no_module_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in module_names(ROOT).values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_private_names_across_modules():
    found = private_imports(ROOT)
    assert not found, "private names imported from another module (make them public):\n" + "\n".join(found)


def test_the_circle_finder_catches_a_circle(tmp_path):
    """The check is not vacuous: a synthetic package with a circle hidden in a function body (through a relative
    import and a `from package import submodule`) and a self import is caught; the same package without them is not."""
    pkg = tmp_path / "core" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "core" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text('"""Docstring only."""\n')
    (pkg / "a.py").write_text("import os\nfrom core.sub.b import thing\n")
    (pkg / "b.py").write_text("thing = 1\n\n\ndef late():\n    from . import c\n    return c\n")
    (pkg / "c.py").write_text("def f():\n    from core.sub import a\n    return a\n")
    (pkg / "d.py").write_text("import core.sub.d\n")
    graph = import_graph(tmp_path, packages=("core",))
    assert graph["core.sub.a"] == {"core.sub.b"}
    assert graph["core.sub.b"] == {"core.sub.c"}
    assert graph["core.sub.c"] == {"core.sub.a"}
    assert cycles(graph) == [["core.sub.a", "core.sub.b", "core.sub.c"], ["core.sub.d"]]
    assert "core.sub.c -> core.sub.a" in describe(cycles(graph), graph)

    (pkg / "c.py").write_text("def f():\n    return 1\n")
    (pkg / "d.py").write_text("import core.sub.a\n")
    assert cycles(import_graph(tmp_path, packages=("core",))) == []


def test_the_private_name_rule_sees_one(tmp_path):
    pkg = tmp_path / "core"
    pkg.mkdir()
    (pkg / "a.py").write_text("def _helper():\n    return 1\n")
    (pkg / "b.py").write_text("from __future__ import annotations\n\nfrom core.a import _helper\n")
    (pkg / "c.py").write_text("from .a import _helper as h\n")
    (pkg / "d.py").write_text("from core import a as m\n\n\ndef f():\n    return m._helper()\n")
    (pkg / "e.py").write_text("from core import a\n\n\ndef f():\n    return a.__name__, a.helper\n")
    assert private_imports(tmp_path, ("core",)) == ["core.b: from core.a import _helper",
                                                     "core.c: from core.a import _helper", "core.d: core.a._helper"]


def test_the_length_rule_sees_a_long_module(tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "big.py").write_text("x = 1\n" * (MAX_LINES + 1))
    sizes = {m: len(p.read_text().splitlines()) for m, p in module_names(tmp_path, ("core",)).items()}
    assert sizes == {"core.big": MAX_LINES + 1}
