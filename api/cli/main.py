"""The ``runtrack`` command line: the client verbs and the local verbs on one command.

Importing this module loads neither the server nor the store: the client verbs use only
``api.client``, and the local verbs import the server when they run.
"""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli import client_verbs, local_verbs
from api.cli.client_verbs import Connection

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Track durable agent runs.")
local_verbs.add_groups(app)
client_verbs.register(app)
app.command()(local_verbs.serve)  # after the client verbs: the order ``--help`` lists them in


@app.callback()
def connect(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(envvar="RUNTRACK_URL", help="the server")] = (
        "http://127.0.0.1:8000"
    ),
    key: Annotated[str | None, typer.Option(envvar="RUNTRACK_KEY", help="an API key")] = None,
    no_ux: Annotated[bool, typer.Option("--no-ux", help="plain, stable output")] = False,
) -> None:
    """Client verbs talk to a server given by --url and --key (or RUNTRACK_URL/RUNTRACK_KEY)."""
    ctx.obj = Connection(url, key, no_ux)


def main() -> None:
    app()
