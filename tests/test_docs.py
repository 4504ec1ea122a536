"""The Python examples in docs/ run, and every document the code and docs cite exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
EXAMPLES = [
    pytest.param(block, id=f"{page.name}-{n}")
    for page in sorted(DOCS.glob("*.md"))
    for n, block in enumerate(BLOCK.findall(page.read_text()))
]
CITING = ("eventstore", "projections", "api", "bench", "tests", "docs")
"""Where citations are looked for (with README.md): the code, its tests, its documents."""
CITED_PAGE = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[\w-]+\.md)\b")
"""A Markdown document named by path (``docs/security.md``) or by name (``design.md``)."""
CITED_MODULE = re.compile(r"(?<![\w./-])((?:[\w-]+/)+[\w-]+\.py)\b")
"""A Python file named by a path (``eventstore/chain.py``, ``callbacks/sender.py``)."""
BARE_CONTRACT = re.compile(r"\bDESIGN\b|\breference systems?\b")
"""A contract cited without a file, which no reader can open."""


def citing_files() -> list[Path]:
    found = [ROOT / "README.md"]
    for folder in CITING:
        found += sorted((ROOT / folder).rglob("*.py")) + sorted((ROOT / folder).rglob("*.md"))
    return found


def unresolved(text: str, source: Path) -> list[str]:
    """The citations in ``text`` that name no file: looked for beside ``source`` and at the
    root, and pages in docs/ too (code names them either way)."""
    missing = [
        page
        for page in CITED_PAGE.findall(text)
        if not any((base / page).is_file() for base in (source.parent, ROOT, DOCS))
    ]
    missing += [
        module
        for module in CITED_MODULE.findall(text)
        if not any((base / module).is_file() for base in (source.parent, ROOT))
    ]
    return missing + BARE_CONTRACT.findall(text)


@pytest.mark.parametrize("source", EXAMPLES)
def test_example_runs(source: str) -> None:
    exec(compile(source, "<docs>", "exec"), {"__name__": "__docs__"})


def test_every_cited_document_and_module_is_in_the_repository() -> None:
    broken = {
        str(path.relative_to(ROOT)): missing
        for path in citing_files()
        if path != Path(__file__) and (missing := unresolved(path.read_text(), path))
    }
    assert broken == {}


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        ("see ``docs/audit.md``", ["docs/audit.md"]),
        ("as DESIGN.md says", ["DESIGN.md", "DESIGN"]),
        ("the reference systems' shape", ["reference systems"]),
        ("(eventstore/nothing.py)", ["eventstore/nothing.py"]),
        ("see docs/security.md, eventstore/chain.py and [design](design.md)", []),
    ],
)
def test_a_citation_of_a_missing_file_is_found(text: str, missing: list[str]) -> None:
    assert unresolved(text, DOCS / "api.md") == missing


def architecture_tree() -> str:
    """The first code block of docs/architecture.md after its package table: the tree."""
    text = (DOCS / "architecture.md").read_text()
    start = text.index("```\neventstore/")
    return text[start : text.index("```", start + 3)]


def test_the_architecture_tree_names_every_module() -> None:
    tree = architecture_tree()
    modules = [
        path
        for package in ("eventstore", "projections", "api")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "__init__.py"
    ]
    named = set(re.findall(r"[\w]+\.py", tree))
    missing = [str(p.relative_to(ROOT)) for p in modules if p.name not in named]
    assert missing == []


def test_the_architecture_tree_names_no_module_that_is_gone() -> None:
    existing = {
        path.name
        for package in ("eventstore", "projections", "api")
        for path in (ROOT / package).rglob("*.py")
    }
    gone = sorted(set(re.findall(r"[\w]+\.py", architecture_tree())) - existing)
    assert gone == []


def test_the_lifecycle_table_is_the_transition_table() -> None:
    """docs/lifecycle.md draws ``TRANSITIONS``: each row's targets, its conditions aside."""
    from projections import TRANSITIONS

    text = (ROOT / "docs" / "lifecycle.md").read_text()
    drawn: dict[str, set[str]] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] in ("from", "---") or not line.startswith("|"):
            continue
        targets = re.sub(r"\([^)]*\)", "", cells[1])
        names = {t.strip() for t in targets.split(",") if t.strip() and t.strip() != "nothing"}
        for status in cells[0].split(","):
            drawn[status.strip()] = names
    assert drawn == {s.value: {t.value for t in targets} for s, targets in TRANSITIONS.items()}
