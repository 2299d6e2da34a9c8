"""The package's floors (docs/DESIGN.md, "Layers"): imports only go down, and no two modules
import each other. Every module under fer_distill/ is parsed with `ast` (nothing is
imported), including imports inside function bodies.

`python tests/test_layers.py` prints every import edge that breaks a rule.
"""
from __future__ import annotations

import ast
import functools
import itertools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fer_distill"

# Lowest first. A module's floor is its first match (a module name or a subpackage).
FLOORS = (
    ("fer_distill.atomic", "fer_distill.errors", "fer_distill.lock", "fer_distill.rundir"),
    ("fer_distill.data", "fer_distill.scenarios"),  # scenarios: which view each model sees
    ("fer_distill.models",),
    ("fer_distill.distill",),
    ("fer_distill.evaluation",),
    ("fer_distill.train",),
    ("fer_distill.serving",),
    ("fer_distill.explain",),
    ("fer_distill.reproduce", "fer_distill.preset", "fer_distill.reproduce_evaluation"),
)
# The package itself: `import fer_distill.anything` runs its __init__ first, whatever the
# floor, so it belongs to none (it only registers the custom layers and holds the version).
ROOT = "fer_distill"


@functools.cache
def modules() -> dict[str, Path]:
    """{dotted name: file} of every module under fer_distill/ (a package is its __init__)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported fer_distill module, line) of every import in the file, at any depth.

    `from P import n` imports module P.n when that is a module, else P (n is defined there).
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        edges += [(t, node.lineno) for t in targets
                  if t in known and t != name and t != ROOT]
    return edges


def floor(name: str) -> int | None:
    for level, members in enumerate(FLOORS):
        if any(name == m or name.startswith(m + ".") for m in members):
            return level
    return None


@functools.cache
def graph() -> dict[str, list[tuple[str, int]]]:
    """{module: [(imported module, line), ...]} over the whole package."""
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def problems() -> tuple[list[str], list[str]]:
    """(imports going up a floor, pairs of modules importing each other)."""
    known = modules()
    upward = [f"{known[a].relative_to(PACKAGE.parent)}:{line}: {a} (floor {floor(a)}) "
              f"imports {b} (floor {floor(b)})"
              for a, edges in graph().items() for b, line in edges
              if a != ROOT and floor(a) is not None and floor(b) is not None
              and floor(b) > floor(a)]
    targets = {a: {b for b, _ in edges} for a, edges in graph().items()}
    mutual = [f"{a} <-> {b}" for a, b in itertools.combinations(sorted(targets), 2)
              if b in targets[a] and a in targets[b]]
    return upward, mutual


def cycles() -> list[list[str]]:
    """Every import cycle longer than two modules (Tarjan's strongly connected components)."""
    targets = {a: sorted({b for b, _ in edges}) for a, edges in graph().items()}
    index, low, stack, found = {}, {}, [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in targets[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 2:
                found.append(sorted(component))

    for name in targets:
        if name not in index:
            visit(name)
    return found


def test_every_module_has_a_floor():
    assert [name for name in modules() if name != ROOT and floor(name) is None] == []


def test_the_checker_sees_lazy_and_package_imports(tmp_path):
    """The rules would pass vacuously if the parser missed imports inside functions or
    `from package import module`."""
    known = {"fer_distill.a": tmp_path / "a.py", "fer_distill.b": tmp_path / "b.py",
             "fer_distill.p": tmp_path / "p" / "__init__.py",
             "fer_distill.p.m": tmp_path / "p" / "m.py"}
    known["fer_distill.a"].write_text("def f():\n    from fer_distill import b\n"
                                      "    from fer_distill.p import m, NAME\n")
    (tmp_path / "p").mkdir()
    known["fer_distill.p.m"].write_text("from . import NAME\nfrom .. import a\n")
    assert sorted(imports("fer_distill.a", known["fer_distill.a"], known)) == [
        ("fer_distill.b", 2), ("fer_distill.p", 3), ("fer_distill.p.m", 3)]
    assert sorted(imports("fer_distill.p.m", known["fer_distill.p.m"], known)) == [
        ("fer_distill.a", 2), ("fer_distill.p", 1)]


def test_no_import_goes_up_the_floors():
    upward, _ = problems()
    assert upward == []


def test_no_two_modules_import_each_other():
    _, mutual = problems()
    assert mutual == []


def test_no_longer_import_cycles():
    assert cycles() == []


if __name__ == "__main__":
    found_upward, found_mutual = problems()
    print("\n".join(["upward imports:", *found_upward, "modules importing each other:",
                     *found_mutual, "longer cycles:", *map(" -> ".join, cycles())]))
