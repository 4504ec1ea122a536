"""The ``runtrack`` command and its client verbs load nothing of the server or the store; the
local verbs import it only when they run."""

from __future__ import annotations

import inspect

import pytest

from api.cli import local_verbs
from api.server.auth import DEFAULT_ORGANIZATION
from tests.api.client.test_imports import loaded_by, server_side


def _quietly(*arguments: str) -> str:
    """``runtrack ARGUMENTS`` in-process, its output kept off stdout (which reports modules)."""
    return (
        "import contextlib, io\nfrom api.cli.main import app\n"
        "with contextlib.redirect_stdout(io.StringIO()) as shown:\n"
        f"    app({list(arguments)!r}, standalone_mode=False)\n"
        "assert 'Usage' in shown.getvalue(), shown.getvalue()"
    )


@pytest.mark.parametrize(
    "statement",
    [
        "import api.cli.client_verbs",
        "import api.cli.main",
        _quietly("--help"),
        _quietly("get", "runs", "--help"),
        _quietly("serve", "--help"),
    ],
)
def test_the_command_and_client_verbs_import_nothing_of_the_server(statement: str) -> None:
    modules = loaded_by(statement)
    assert "api.cli.client_verbs" in modules
    assert server_side(modules) == []


def test_a_local_verb_loads_the_server_when_it_runs() -> None:
    """The check above can fail: building the server's settings loads the server."""
    modules = loaded_by("from api.cli.local_verbs import settings_from\nsettings_from({})")
    assert "api.server.settings" in server_side(modules)


def test_the_default_organization_of_keys_create_is_the_servers() -> None:
    default = inspect.signature(local_verbs.keys_create).parameters["organization"].default
    assert default == DEFAULT_ORGANIZATION == local_verbs.DEFAULT_ORGANIZATION
