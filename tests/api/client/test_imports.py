"""The client loads nothing of the server or the store: a program that only calls pays for the
client alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SERVER_SIDE = ("starlette", "aiosqlite", "psycopg", "eventstore", "projections", "uvicorn")
"""Top-level packages of the server and the store."""


def loaded_by(statement: str) -> list[str]:
    """The modules a fresh interpreter holds after running ``statement``."""
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    modules: list[str] = json.loads(done.stdout)
    return modules


def server_side(modules: list[str]) -> list[str]:
    return [
        name
        for name in modules
        if name.split(".")[0] in SERVER_SIDE or name.split(".")[:2] == ["api", "server"]
    ]


@pytest.mark.parametrize(
    "statement",
    [
        "import api.client",
        "from api.client import SyncRuntrackClient",
        "from api.client import RuntrackClient, Run, StoredEvent",
        "import api.client.models, api.client.contract",
        "from api.client import Worker, SyncWorker, RunContext, RunCancelled",
        "import api.client.worker, api.client.sync_worker, api.client.run_context",
    ],
)
def test_the_client_imports_nothing_of_the_server(statement: str) -> None:
    modules = loaded_by(statement)
    assert "api.client" in modules
    assert server_side(modules) == []


def test_the_check_sees_a_server_import() -> None:
    """The same check on the server's app: it must name what the client must not load."""
    found = server_side(loaded_by("import api.server.app"))
    assert {"starlette", "aiosqlite", "eventstore", "projections", "api.server.app"} <= set(found)
