"""The ``runtrack`` command line: the client verbs and the local verbs on one command.

Importing this module loads neither the server nor the store: the client verbs use only
``api.client``, and the local verbs import the server when they run.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from api.cli import client_verbs, local_verbs
from api.cli.client_verbs import Connection
from api.cli.command import RuntrackGroup

__all__ = ["app", "main"]

EPILOG = "\n\n".join(
    (
        "Examples:",
        '  $ RUN=$(runtrack send my-agent "Summarise" --no-wait --no-ux | grep -o "run-.*")',
        '  $ runtrack track "$RUN" --no-ux',
        "  $ runtrack get runs --active --agent my-agent",
        "  $ RUNTRACK_URL=https://runtrack.example RUNTRACK_KEY=rtk_... runtrack get runs",
        "Each verb's --help shows its own examples.",
    )
)

app = typer.Typer(
    cls=RuntrackGroup,
    no_args_is_help=True,
    add_completion=False,
    help="Track durable agent runs.",
    epilog=EPILOG,
)
local_verbs.add_groups(app)
client_verbs.register(app)
app.command()(local_verbs.archive)
app.command()(local_verbs.serve)  # after the client verbs: the order ``--help`` lists them in


def _show_version(value: bool) -> None:
    if value:
        try:
            typer.echo(f"runtrack {version('runtrack')}")
        except PackageNotFoundError:  # a source tree that was never installed
            typer.echo("runtrack (not installed)")
        raise typer.Exit()


@app.callback(cls=RuntrackGroup)
def connect(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar="RUNTRACK_URL", metavar="URL", help="the server's address")
    ] = "http://127.0.0.1:8000",
    key: Annotated[
        str | None, typer.Option(envvar="RUNTRACK_KEY", metavar="KEY", help="an API key (rtk_…)")
    ] = None,
    no_ux: Annotated[bool, typer.Option("--no-ux", help="plain, stable output")] = False,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Client verbs talk to a server given by --url and --key (or RUNTRACK_URL/RUNTRACK_KEY)."""
    ctx.obj = Connection(url, key, no_ux)


def main() -> None:
    app(prog_name="runtrack")
