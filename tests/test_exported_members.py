"""Each package's public surface is exactly its ``__all__``, every name in it exists, and code
outside the store reaches it only through that surface."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest


@pytest.mark.parametrize("package", ["eventstore"])
def test_all_names_exist_and_are_sorted(package: str) -> None:
    module = importlib.import_module(package)
    exported = module.__all__
    assert exported == sorted(exported, key=lambda name: (not name.isupper(), name))
    for name in exported:
        assert hasattr(module, name), name


ROOT = Path(__file__).parent.parent
OUTSIDE_THE_STORE = ["api/server", "api/cli", "projections", "bench", "tests"]
"""Code that uses the store through its public surface (the client imports none of it, which
its own import test checks; the store's unit tests in tests/eventstore test its modules)."""


def store_module_imports(path: Path) -> list[str]:
    """The ``eventstore.<module>`` imports of one file (imports of the package itself pass)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.startswith("eventstore.")]
    return found


def test_code_outside_the_store_imports_only_its_package() -> None:
    files = [
        path
        for folder in OUTSIDE_THE_STORE
        for path in sorted((ROOT / folder).rglob("*.py"))
        if not path.is_relative_to(ROOT / "tests" / "eventstore")
    ]
    assert files
    assert [found for path in files for found in store_module_imports(path)] == []
