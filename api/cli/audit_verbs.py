"""``runtrack audit``: verify the chain through a server or offline, and make a signing key.

``audit verify`` asks a server unless it is given files (``--file``, ``--archive``,
``--sqlite``); then it reads them and needs no server. Either way ``--head`` (a head kept from
``GET /v1/audit/head``) and ``--public-key`` check signed heads, and a broken chain exits 1.
The store's modules (hashing, signatures) are imported when a verb runs, so defining these
verbs loads nothing of the server (``tests/api/cli/test_imports.py``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.cli.client_verbs import _connection, run_async
from api.client.models import AuditReport

if TYPE_CHECKING:
    from eventstore import PublicKeys, SignedHead

__all__ = ["audit_app"]

audit_app = typer.Typer(no_args_is_help=True, help="Verify the hash chain; make a signing key.")

Files = Annotated[
    list[Path] | None,
    typer.Option("--file", exists=True, dir_okay=False, help="an export (repeatable): offline"),
]
Archive = Annotated[
    Path | None,
    typer.Option(exists=True, file_okay=False, help="a directory of archive segments: offline"),
]
Sqlite = Annotated[
    Path | None,
    typer.Option(exists=True, dir_okay=False, help="a SQLite database's live part: offline"),
]
Heads = Annotated[
    list[Path] | None,
    typer.Option("--head", exists=True, dir_okay=False, help="a signed head kept (repeatable)"),
]
After = Annotated[
    int,
    typer.Option(
        "--after",
        min=0,
        help="offline: verify from event N+1 on (an export made --after N); unproven before",
    ),
]
Keys = Annotated[
    list[str] | None,
    typer.Option("--public-key", help="trusted public key: hex, or a file (repeatable)"),
]


@audit_app.command("verify")
def verify(
    ctx: typer.Context,
    run_id: Annotated[str | None, typer.Option("--run", help="one run (through a server)")] = None,
    head: Heads = None,
    public_key: Keys = None,
    file: Files = None,
    archive: Archive = None,
    sqlite: Sqlite = None,
    after: After = 0,
) -> None:
    """Verify the hash chain and its signed heads: exit 1 when it is broken."""
    keys, kept = _trusted(public_key or [], head or [])
    if file or archive or sqlite:
        if run_id is not None:
            raise typer.BadParameter("one run is verified through a server", param_hint="--run")
        _offline(file or [], archive, sqlite, keys, kept, after)
        return
    if after:
        raise typer.BadParameter("a server verifies the whole log", param_hint="--after")
    connection = _connection(ctx)
    key_hex = _hex_keys(public_key or [])

    async def go() -> AuditReport:
        async with connection.client() as client:
            latest = max(kept, key=lambda h: h.head_id) if kept else None
            if latest is None and keys:  # the server's own head, checked against the key
                published = await client.chain_head()
                _check_signature(keys, _signed(published.model_dump()), "the server's head")
            at = None if latest is None else (latest.head_id, latest.head_hash)
            return await client.verify(run_id, head=at, public_key=key_hex)

    report = run_async(go)
    typer.echo(json.dumps(report.model_dump(exclude_unset=True)))
    if not report.ok:
        raise typer.Exit(1)


def _trusted(public_keys: list[str], heads: list[Path]) -> tuple[PublicKeys, list[SignedHead]]:
    """The keys given, and the kept heads (each checked against them when keys are given)."""
    from eventstore import PublicKeys, load_public_key

    try:
        keys = PublicKeys([load_public_key(value) for value in public_keys])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--public-key") from exc
    kept = []
    for path in heads:
        try:
            signed = _signed(json.loads(path.read_text()))
        except ValueError as exc:
            raise typer.BadParameter(f"{path}: {exc}", param_hint="--head") from exc
        if keys:
            _check_signature(keys, signed, str(path))
        kept.append(signed)
    return keys, kept


def _signed(data: Any) -> SignedHead:
    from eventstore import SignedHead

    return SignedHead.from_json(data)


def _check_signature(keys: PublicKeys, head: SignedHead, what: str) -> None:
    problem = keys.problem(head)
    if problem is not None:
        typer.echo(f"error: {what} does not verify: {problem}", err=True)
        raise typer.Exit(1)


def _hex_keys(values: list[str]) -> list[str] | None:
    """Every key given, as hex for the server (which then trusts those instead of its own)."""
    if not values:
        return None
    from eventstore import load_public_key, public_hex

    return [public_hex(load_public_key(value)) for value in values]


def _offline(
    files: list[Path],
    archive: Path | None,
    sqlite: Path | None,
    keys: PublicKeys,
    kept: list[SignedHead],
    after: int,
) -> None:
    from eventstore import Broken, HeadChecks, open_sources, verify_sources

    try:
        sources = open_sources(files, archive, sqlite)
    except Broken as broken:
        typer.echo(f"error: {broken.reason}", err=True)
        raise typer.Exit(1) from broken
    report = verify_sources(sources, HeadChecks(keys, kept), after=after)
    shown = {k: v for k, v in dataclasses.asdict(report).items() if v is not None}
    typer.echo(json.dumps(shown))
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("keygen")
def keygen(
    out: Annotated[Path, typer.Option("--out", help="where the private key is written (0600)")],
) -> None:
    """Make an Ed25519 key for ``serve --signing-key``; print its public key (and key id).

    The public key alone goes to stdout (also written to OUT.pub): it is what auditors verify
    with. The private key never leaves OUT.
    """
    from eventstore import generate_key_file, public_hex

    try:
        signer = generate_key_file(out)
    except FileExistsError as exc:
        raise typer.BadParameter(f"{out} exists: keys are never overwritten") from exc
    except OSError as exc:
        raise typer.BadParameter(f"cannot write {out}: {exc.strerror}") from exc
    public = public_hex(signer.public)
    out.with_name(out.name + ".pub").write_text(public + "\n")
    typer.echo(f"wrote the private key to {out} (key id {signer.key_id}): keep it secret", err=True)
    typer.echo(public)
