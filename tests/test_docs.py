"""The Python examples in docs/ run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
EXAMPLES = [
    pytest.param(block, id=f"{page.name}-{n}")
    for page in sorted(DOCS.glob("*.md"))
    for n, block in enumerate(BLOCK.findall(page.read_text()))
]


@pytest.mark.parametrize("source", EXAMPLES)
def test_example_runs(source: str) -> None:
    exec(compile(source, "<docs>", "exec"), {"__name__": "__docs__"})
