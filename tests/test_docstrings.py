"""Module docstrings stay short (docs/DESIGN.md, "Conventions"): what the module is and how to
call it, its equations where it implements them; the longer why lives in docs/DESIGN.md.
Every module under fer_distill/ is parsed with `ast` (nothing is imported).

`python tests/test_docstrings.py` lists every module over the limit.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fer_distill"
MAX_LINES = 15


@functools.cache
def docstring_lengths() -> dict[str, int]:
    """{path relative to fer_distill/: lines of its module docstring} for every module."""
    lengths = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        lengths[path.relative_to(PACKAGE).as_posix()] = len(doc.splitlines()) if doc else 0
    return lengths


def too_long() -> dict[str, int]:
    return {name: n for name, n in docstring_lengths().items()
            if n > MAX_LINES}


def test_module_docstrings_are_short():
    assert too_long() == {}, (
        f"module docstrings over {MAX_LINES} lines (move the why to docs/DESIGN.md): "
        f"{too_long()}")


def test_the_check_sees_every_module():
    lengths = docstring_lengths()
    # The walk found the package, and it measures real docstrings.
    assert "rundir.py" in lengths and "models/vgg_f.py" in lengths
    assert lengths["rundir.py"] > 1 and lengths["distill/triplet_model.py"] > 10


if __name__ == "__main__":
    for name, n in too_long().items():
        print(f"fer_distill/{name}: {n} lines")
