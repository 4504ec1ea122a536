"""The runnable examples of docs/cli.md run, line by line, against a live server."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from .conftest import ProcessFactory, run_cli

pytestmark = pytest.mark.anyio
PAGE = Path(__file__).parents[2] / "docs" / "cli.md"
RUNNABLE = re.compile(r"<!-- runnable -->\n```sh\n(.*?)```", re.DOTALL)


def examples() -> list[str]:
    return [
        line for block in RUNNABLE.findall(PAGE.read_text()) for line in block.splitlines() if line
    ]


async def test_the_documented_session_runs(server_process: ProcessFactory) -> None:
    server = await server_process()
    lines = examples()
    assert lines, "docs/cli.md has no runnable block"
    for line in lines:
        words = shlex.split(line)
        assert words[0] == "runtrack"
        code, out, err = await run_cli(server, *words[1:])
        assert code == 0, f"{line}\n{out}\n{err}"
