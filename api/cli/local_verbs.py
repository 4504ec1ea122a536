"""The local verbs of ``runtrack``: they work on the database directly, not through a server.

``serve`` runs the server on it; ``keys``, ``projections rebuild`` and ``callbacks secret`` read
or write it (or the server's settings) in this process. They need the server and the store, so
each imports them when it runs: defining the verbs loads neither, and ``runtrack --help`` or a
client verb stays as light as the client (``tests/api/cli/test_imports.py``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from api.server.settings import Settings

__all__ = ["add_groups", "archive", "serve", "settings_from"]

DEFAULT_ORGANIZATION = "default"
"""``api.server.auth.DEFAULT_ORGANIZATION``, written here so that defining the verbs needs no
server (``tests/api/cli/test_imports.py`` holds the two equal)."""

keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys.")
projections_app = typer.Typer(no_args_is_help=True, help="Rebuild or check the read models.")
callbacks_app = typer.Typer(no_args_is_help=True, help="Secrets of callback signatures.")


def add_groups(app: typer.Typer) -> None:
    """Add the local groups (``keys``, ``callbacks``, ``projections``) to ``runtrack``."""
    app.add_typer(keys_app, name="keys")
    app.add_typer(callbacks_app, name="callbacks")
    app.add_typer(projections_app, name="projections")


Database = Annotated[
    str,
    typer.Option(
        "--database", envvar="RUNTRACK_DATABASE", help="SQLite file (default) or postgresql:// URL"
    ),
]


def _option(envvar: str, help: str | None = None) -> Any:
    return typer.Option(envvar=envvar, help=help)


def _positive(envvar: str, help: str) -> Any:
    return typer.Option(envvar=envvar, help=help, callback=_must_be_positive)


def _must_be_positive(value: float) -> float:
    if value <= 0:
        raise typer.BadParameter(f"must be above 0; got {value:g}")
    return value


def serve(
    host: Annotated[str, _option("RUNTRACK_HOST")] = "127.0.0.1",
    port: Annotated[int, _option("RUNTRACK_PORT")] = 8000,
    database: Database = "runtrack.db",
    heartbeat_seconds: Annotated[float, _option("RUNTRACK_HEARTBEAT_SECONDS")] = 15.0,
    retry_ms: Annotated[int, _option("RUNTRACK_RETRY_MS")] = 3000,
    max_streams: Annotated[int, _option("RUNTRACK_MAX_STREAMS")] = 10_000,
    max_streams_per_organization: Annotated[
        int, _positive("RUNTRACK_MAX_STREAMS_PER_ORGANIZATION", "open streams per organization")
    ] = 1_000,
    max_streams_per_key: Annotated[
        int, _positive("RUNTRACK_MAX_STREAMS_PER_KEY", "open streams per API key")
    ] = 100,
    run_create_rate: Annotated[
        float, _positive("RUNTRACK_RUN_CREATE_RATE", "runs created per second per API key")
    ] = 50.0,
    append_rate: Annotated[
        float, _positive("RUNTRACK_APPEND_RATE", "append requests per second per API key")
    ] = 500.0,
    header_timeout: Annotated[
        float, _positive("RUNTRACK_HEADER_TIMEOUT", "seconds to receive a request's headers")
    ] = 10.0,
    body_timeout: Annotated[
        float, _positive("RUNTRACK_BODY_TIMEOUT", "seconds to receive a request's whole body")
    ] = 60.0,
    max_header_bytes: Annotated[
        int, _positive("RUNTRACK_MAX_HEADER_BYTES", "largest request head, URL included (431)")
    ] = 65_536,
    max_headers: Annotated[
        int, _positive("RUNTRACK_MAX_HEADERS", "most header fields in a request (431)")
    ] = 100,
    keep_alive_timeout: Annotated[
        float,
        _positive("RUNTRACK_KEEP_ALIVE_TIMEOUT", "seconds an idle connection is kept open"),
    ] = 20.0,
    send_timeout: Annotated[float, _option("RUNTRACK_SEND_TIMEOUT")] = 30.0,
    max_body_bytes: Annotated[
        int, _option("RUNTRACK_MAX_BODY_BYTES", "largest request body accepted (413 past it)")
    ] = 1_048_576,
    fanout_linger_ms: Annotated[float, _option("RUNTRACK_FANOUT_LINGER_MS")] = 50.0,
    fanout_budget: Annotated[int, _option("RUNTRACK_FANOUT_BUDGET")] = 12_000,
    leader_interval: Annotated[float, _option("RUNTRACK_LEADER_INTERVAL")] = 1.0,
    key_poll_seconds: Annotated[
        float,
        typer.Option(
            envvar="RUNTRACK_KEY_POLL_SECONDS",
            min=0.05,
            help="how often each server picks up key revocations (seconds)",
        ),
    ] = 0.25,
    reconcile_seconds: Annotated[float, _option("RUNTRACK_RECONCILE_SECONDS")] = 30.0,
    heartbeat_timeout: Annotated[float, _option("RUNTRACK_HEARTBEAT_TIMEOUT")] = 300.0,
    max_claim_wait: Annotated[
        float,
        typer.Option(
            envvar="RUNTRACK_MAX_CLAIM_WAIT",
            min=0,
            max=30,
            help="the longest a claim waits for a claimable run (seconds)",
        ),
    ] = 30.0,
    queue_timeout: Annotated[float, _option("RUNTRACK_QUEUE_TIMEOUT")] = 3600.0,
    cancel_timeout: Annotated[float, _option("RUNTRACK_CANCEL_TIMEOUT")] = 180.0,
    callback_secret: Annotated[
        str | None, _option("RUNTRACK_CALLBACK_SECRET", "HMAC-SHA256 key that signs callbacks")
    ] = None,
    callback_retry_base: Annotated[float, _option("RUNTRACK_CALLBACK_RETRY_BASE")] = 1.0,
    callback_max_attempts: Annotated[int, _option("RUNTRACK_CALLBACK_MAX_ATTEMPTS")] = 8,
    callback_timeout: Annotated[
        float, _option("RUNTRACK_CALLBACK_TIMEOUT", "deadline of one whole attempt, seconds")
    ] = 5.0,
    callback_allow_networks: Annotated[
        list[str] | None,
        typer.Option(
            "--callback-allow-network",
            envvar="RUNTRACK_CALLBACK_ALLOW_NETWORK",
            help="a non-public CIDR callbacks may reach (repeatable), e.g. 10.0.0.0/8",
        ),
    ] = None,
    callback_concurrency: Annotated[
        int, typer.Option(envvar="RUNTRACK_CALLBACK_CONCURRENCY", min=1)
    ] = 64,
    callback_concurrency_per_organization: Annotated[
        int, typer.Option(envvar="RUNTRACK_CALLBACK_CONCURRENCY_PER_ORGANIZATION", min=1)
    ] = 8,
    processes: Annotated[
        int,
        typer.Option(envvar="RUNTRACK_PROCESSES", min=1, help="server processes (PostgreSQL only)"),
    ] = 1,
    access_log: Annotated[
        bool, typer.Option("--access-log", envvar="RUNTRACK_ACCESS_LOG", help="log every request")
    ] = False,
    metrics_token: Annotated[
        str | None,
        _option("RUNTRACK_METRICS_TOKEN", "bearer token /metrics requires (prefer the variable)"),
    ] = None,
    metrics_listen: Annotated[
        str | None, _option("RUNTRACK_METRICS_LISTEN", "HOST:PORT serving /metrics on its own")
    ] = None,
    otel_content: Annotated[
        bool,
        typer.Option(
            "--otel-content",
            envvar="RUNTRACK_OTEL_CONTENT",
            help="export tool arguments, results and messages with the OTLP traces",
        ),
    ] = False,
    otel_max_request_bytes: Annotated[
        int,
        _option("RUNTRACK_OTEL_MAX_REQUEST_BYTES", "largest OTLP request, before compression"),
    ] = 4_194_304,
    otel_drop_after: Annotated[
        int,
        _option(
            "RUNTRACK_OTEL_DROP_AFTER",
            "attempts before a span the collector refuses is dropped (0: never)",
        ),
    ] = 5,
    signing_key: Annotated[
        str | None,
        _option("RUNTRACK_SIGNING_KEY", "Ed25519 private key file that signs chain heads"),
    ] = None,
    trusted_public_keys: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-public-key",
            envvar="RUNTRACK_TRUSTED_PUBLIC_KEY",
            help="a public key verify trusts besides the signing key's (repeatable): hex or file",
        ),
    ] = None,
    chain_head_seconds: Annotated[
        float, _positive("RUNTRACK_CHAIN_HEAD_SECONDS", "how often the chain's head is signed")
    ] = 60.0,
    archive_dir: Annotated[
        str | None, _option("RUNTRACK_ARCHIVE_DIR", "archive segments' directory (this machine)")
    ] = None,
    retain: Annotated[
        str | None,
        _option("RUNTRACK_RETAIN", "archive what is older (30d) to --archive-dir"),
    ] = None,
    archive_interval: Annotated[
        float, _positive("RUNTRACK_ARCHIVE_INTERVAL", "seconds between retention passes")
    ] = 3600.0,
    demo: Annotated[bool, typer.Option("--demo", help="also run simulated agents")] = False,
) -> None:
    """Serve the HTTP API and SSE streams (and, on the leader, the background services)."""
    settings = settings_from(locals())  # first: locals() must hold only the options
    from api.server.runner import check_settings
    from api.server.runner import serve as run_server

    try:
        check_settings(settings)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    run_server(settings)


def settings_from(options: dict[str, Any]) -> Settings:
    """Every ``serve`` option is a Settings field of the same name (a test holds them equal).

    The demo shortens the heartbeat timeout and the reconcile interval, so that its runs that
    stop heartbeating visibly time out within a minute. A repeated option arrives as a list;
    the frozen Settings hold a tuple.
    """
    from api.server.settings import Settings

    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    for repeated in ("callback_allow_networks", "trusted_public_keys"):
        if options.get(repeated) is None:
            options[repeated] = ()
    if options.get("demo") is True:
        options = {
            **options,
            "heartbeat_timeout": min(options["heartbeat_timeout"], 20.0),
            "reconcile_seconds": min(options["reconcile_seconds"], 5.0),
        }
    return Settings(**options)


def archive(
    to: Annotated[str, typer.Option("--to", help="directory of the segments (this machine)")],
    before: Annotated[
        int | None, typer.Option("--before", min=1, help="archive the events before this id")
    ] = None,
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="archive the events older than this (30d)")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, help="events per segment")] = 2500,
    database: Database = "runtrack.db",
) -> None:
    """Move a prefix of the log to segment files (on the database directly, like ``keys``).

    The cut stops before any run that has not ended, is resumable or has a callback to deliver,
    and at every durable consumer's cursor; what held it back is printed. Servers keep serving
    meanwhile: each batch holds the log's lock only briefly."""
    if (before is None) == (older_than is None):
        raise typer.BadParameter("give exactly one of --before EVENT_ID and --older-than AGE")
    from pathlib import Path

    from projections import ArchiveReport, parse_age

    try:
        age = None if older_than is None else parse_age(older_than)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--older-than") from exc
    report: ArchiveReport = asyncio.run(_archive(database, Path(to), before, age, batch))
    typer.echo(
        f"archived {report.events} events in {len(report.segments)} segments to {to}; "
        f"the live log starts at event {report.cut + 1}"
    )
    for hold in report.holds:
        typer.echo(f"held back at event {hold.event_id - 1}: {hold.reason}")


async def _archive(database: str, to: Any, before: int | None, age: Any, batch: int) -> Any:
    from eventstore import StoreError, open_store
    from projections import RunProjection, cut_for_age
    from projections import archive as archive_log

    async with open_store(database, projections=[RunProjection()]) as store:
        if store.stale_projections:
            raise typer.Exit(_say_stale(store.stale_projections))
        requested = before - 1 if before is not None else await cut_for_age(store, age)
        try:
            return await archive_log(store, requested, to, batch=batch)
        except StoreError as exc:
            typer.echo(f"archive stopped: {exc.message}", err=True)
            raise typer.Exit(1) from exc


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="user, operator or admin")],
    organization: Annotated[str, typer.Option()] = DEFAULT_ORGANIZATION,
    name: Annotated[str | None, typer.Option()] = None,
    database: Database = "runtrack.db",
) -> None:
    """Create an API key and print it (the only time it is shown).

    The key alone goes to stdout, so that ``KEY=$(runtrack keys create ...)`` holds just the key;
    its id (what ``keys list`` and ``keys revoke`` name) and the warning go to stderr.
    """
    from api.server.auth import Role
    from eventstore import is_reserved_organization

    try:
        parsed = Role.parse(role)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if is_reserved_organization(organization):
        raise typer.BadParameter(
            "the server's own organization (it holds the signed chain heads) gets no key",
            param_hint="--organization",
        )
    token = asyncio.run(_with_keys(database, lambda ring: ring.create(organization, parsed, name)))
    key_id = token.removeprefix("rtk_").partition("_")[0]  # rtk_<key id>_<secret>
    typer.echo(f"created key {key_id} ({parsed.label}, organization {organization})", err=True)
    typer.echo("this secret is shown once, now: store it, it cannot be shown again", err=True)
    typer.echo(token)


@keys_app.command("list")
def keys_list(database: Database = "runtrack.db") -> None:
    """List keys (never their secrets)."""
    for info in asyncio.run(_with_keys(database, lambda ring: ring.list())):
        state = f"revoked {info.revoked_at}" if info.revoked_at else "active"
        typer.echo(
            f"{info.key_id}\t{info.organization_id}\t{info.role}\t{info.name or '-'}\t{state}"
        )


@keys_app.command("revoke")
def keys_revoke(key_id: str, database: Database = "runtrack.db") -> None:
    """Revoke a key by its id."""
    if not asyncio.run(_with_keys(database, lambda ring: ring.revoke(key_id))):
        typer.echo(f"no active key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


async def _with_keys(database: str, action):  # type: ignore[no-untyped-def]
    from api.server.auth import KeyRing
    from eventstore import open_store

    async with open_store(database) as store:  # keys need no read model
        ring = KeyRing(store)
        await ring.setup()
        return await action(ring)


@callbacks_app.command("secret")
def callbacks_secret(
    organization: Annotated[str, typer.Option(help="whose receivers verify with it")],
    callback_secret: Annotated[
        str, typer.Option(envvar="RUNTRACK_CALLBACK_SECRET", help="the server's --callback-secret")
    ],
) -> None:
    """Print the secret an organization's receivers verify its callbacks' signatures with."""
    from projections.callbacks import organization_secret

    if not organization:
        raise typer.BadParameter("must not be empty", param_hint="--organization")
    typer.echo(organization_secret(callback_secret, organization))


@projections_app.command("rebuild")
def projections_rebuild(
    check: Annotated[bool, typer.Option("--check", help="compare only, write nothing")] = False,
    database: Database = "runtrack.db",
) -> None:
    """Rebuild the read models from the log (on the database directly), or check them."""
    from eventstore import open_store
    from projections import RunProjection, rebuild
    from projections import check as check_models

    async def go() -> Any:
        async with open_store(
            database, projections=[RunProjection()], replace_stale_tables=not check
        ) as store:
            if check and store.stale_projections:
                raise typer.Exit(_say_stale(store.stale_projections))
            return await (check_models(store) if check else rebuild(store))

    report = asyncio.run(go())
    typer.echo(f"{report.events} events, {report.runs} runs, {report.seconds:.2f}s")
    for line in report.differences:
        typer.echo(line)
    if report.differences:
        raise typer.Exit(1)


def _say_stale(names: list[str]) -> int:
    typer.echo(
        f"the read model ({', '.join(names)}) was filled under another schema: "
        "run 'runtrack projections rebuild' (a server also does it when it starts)"
    )
    return 1
