"""``runtrack``'s experience as subprocesses: global options after the verb, ``--version``,
help with examples, errors that name the fix, and ``keys create``'s output."""

from __future__ import annotations

import asyncio
import os
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import typer.main

from api.cli.command import examples, walk
from api.cli.examples import EXAMPLES
from api.cli.main import app

from .conftest import ProcessFactory, ServerProcess, create_key, free_port

pytestmark = pytest.mark.anyio

UNREACHABLE = f"http://127.0.0.1:{free_port()}"
PATHS = [path for path, _ in walk(typer.main.get_command(app))]  # type: ignore[arg-type]
GROUPS = {path.rpartition(" ")[0] for path in PATHS if " " in path}


async def runtrack(*args: str, **env: str) -> tuple[int, str, str]:
    """``runtrack ARGS`` as a subprocess, with no RUNTRACK_* variable but those in ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNTRACK_")}
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "api", *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**clean, "COLUMNS": "120", **env},
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def keyed_server(server_process: ProcessFactory, tmp_path: Path) -> tuple[ServerProcess, str]:
    database = str(tmp_path / "keyed.db")
    token = await create_key(database, "user")
    return await server_process(database=database), token


async def test_global_options_work_after_the_verb(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    server, token = await keyed_server(server_process, tmp_path)
    before = await runtrack("--url", server.url, "--key", token, "--no-ux", "get", "runs")
    after = await runtrack("get", "runs", "--no-ux", "--url", server.url, "--key", token)
    assert before == after == (0, "", "")
    code, out, _ = await runtrack("send", "agent-1", "hi", "--no-wait", "--url", server.url,
                                  "--key", token, "--no-ux")  # fmt: skip
    assert code == 0, out
    run_id = out.split("Run ID: ")[1].strip()
    code, out, _ = await runtrack("get", "runs", "--no-ux", "--key", token, RUNTRACK_URL=server.url)
    assert out.split("\t")[:3] == [run_id, "agent-1", "queued"]  # plain lines, not a table


async def test_an_option_after_the_verb_wins_over_the_one_before_and_the_variable(
    server_process: ProcessFactory,
) -> None:
    server = await server_process()
    code, _, err = await runtrack("--url", UNREACHABLE, "get", "runs", "--url", server.url)
    assert (code, err) == (0, "")
    code, _, _ = await runtrack("get", "runs", "--url", server.url, RUNTRACK_URL=UNREACHABLE)
    assert code == 0
    code, _, err = await runtrack("--url", server.url, "get", "runs", "--url", UNREACHABLE)
    assert code == 2
    assert UNREACHABLE in err


@pytest.mark.parametrize("where", ["before", "after"])
async def test_version(where: str) -> None:
    args = ["--version", "get", "runs"] if where == "before" else ["get", "runs", "--version"]
    code, out, _ = await runtrack(*args, RUNTRACK_URL=UNREACHABLE)
    assert (code, out) == (0, f"runtrack {version('runtrack')}\n")


def test_every_verb_has_examples() -> None:
    assert sorted(EXAMPLES) == sorted(path for path in PATHS if path not in GROUPS)


@pytest.mark.parametrize("path", ["", *PATHS])
async def test_help_shows_examples_and_no_type_after_flags(path: str) -> None:
    code, out, _ = await runtrack(*path.split(), "--help")
    assert code == 0
    assert "<bool>" not in out
    shown = examples(path) if path else ("runtrack get runs --active --agent my-agent",)
    assert shown
    for example in shown:
        assert f"$ {example}" in out
    if path not in GROUPS:
        assert "--no-ux" in out  # the global options, on every verb too


async def test_a_missing_key_names_the_option_and_the_variable(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    server, _ = await keyed_server(server_process, tmp_path)
    code, _, err = await runtrack("get", "runs", "--url", server.url)
    assert code == 2
    assert "needs an API key" in err
    assert "--key" in err
    assert "RUNTRACK_KEY" in err


async def test_a_refused_key_names_the_option_and_the_variable(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    server, token = await keyed_server(server_process, tmp_path)
    code, _, err = await runtrack("get", "runs", "--url", server.url, RUNTRACK_KEY="rtk_0_wrong")
    assert code == 2
    assert "refused the API key" in err
    assert "RUNTRACK_KEY" in err
    assert "unauthorized" in err
    code, _, err = await runtrack("audit", "verify", "--url", server.url, "--key", token)
    assert code == 2  # a user key where admin is needed: 403
    assert "forbidden" in err
    assert "--key" in err
    assert "RUNTRACK_KEY" in err


async def test_an_unreachable_server_is_named() -> None:
    code, _, err = await runtrack("get", "runs", "--url", UNREACHABLE)
    assert code == 2
    assert f"cannot reach the server at {UNREACHABLE}" in err
    assert "--url or RUNTRACK_URL" in err


async def test_keys_create_prints_the_secret_alone_on_stdout(tmp_path: Path) -> None:
    database = str(tmp_path / "keys.db")
    code, out, err = await runtrack("keys", "create", "--role", "user", "--database", database)
    assert code == 0
    assert out.startswith("rtk_")
    assert out.count("\n") == 1
    assert " " not in out.strip()
    assert "shown once" in err
    _, listed, _ = await runtrack("keys", "list", "--database", database)
    key_id = listed.split("\t")[0]
    assert f"created key {key_id} " in err
    assert out.startswith(f"rtk_{key_id}_")
