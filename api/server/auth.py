"""API keys and roles.

A key is ``rtk_<key_id>_<secret>``; only SHA-256 of the secret is stored (the secret has 256 bits
of entropy, so a slow password hash would add nothing). Roles nest: ``user`` < ``operator`` <
``admin``. Each key belongs to one organization and sees only it.

Open mode: a server bound to a loopback address, on a database that has never had a key, treats
every request as an admin of the ``default`` organization, and says so when it starts. Key rows
are never deleted, so a database whose keys are all revoked stays closed.

Every create and revoke bumps a one-row counter in the same transaction; each server polls it
(``revocation.py``) and forgets the keys it verified when it moves, so a revocation written
by another process (``runtrack keys revoke``, another server) takes effect within a poll.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from starlette.requests import Request

from api.server.errors import ApiError
from api.server.settings import is_loopback
from eventstore import (
    EventStore,
    Visibility,
    WriteContext,
    format_timestamp,
    is_reserved_organization,
)

__all__ = ["DEFAULT_ORGANIZATION", "KeyRing", "Principal", "Role", "cap", "require"]

DEFAULT_ORGANIZATION = "default"
_PREFIX = "rtk_"
SCHEMA = """CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, role TEXT NOT NULL,
    secret_hash TEXT NOT NULL, name TEXT, created_at TEXT NOT NULL, revoked_at TEXT)"""
CHANGES_SCHEMA = """CREATE TABLE IF NOT EXISTS api_key_changes (
    id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"""
_NEVER_DELETED = "API keys are never deleted: revoke them instead"
"""A revoked key's row is what keeps its database closed (open mode is for a database that never
had a key), so the database refuses to delete one."""
_SEED_CHANGES = "INSERT INTO api_key_changes (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING"
_BUMP_CHANGES = "UPDATE api_key_changes SET version = version + 1 WHERE id = 1"


class Role(enum.IntEnum):
    USER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def max_visibility(self) -> Visibility:
        return {Role.USER: Visibility.USER, Role.OPERATOR: Visibility.OPERATOR}.get(
            self, Visibility.INTERNAL
        )

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValueError(f"role must be user, operator or admin; got {value!r}") from None


@dataclass(frozen=True)
class Principal:
    organization_id: str
    role: Role
    key_id: str | None


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    organization_id: str
    role: str
    name: str | None
    created_at: str
    revoked_at: str | None


class KeyRing:
    """Creates, lists, revokes and verifies keys, with a cache of verified ones.

    The cache is emptied by ``forget`` whenever the key-change counter moves (``KeyWatch``);
    ``cache_seconds`` only bounds how long an entry lives should the counter go unread.
    """

    def __init__(self, store: EventStore, *, cache_seconds: float = 30.0) -> None:
        self._store = store
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._generation = 0
        self._ever_keyed: tuple[float, bool] = (-1e9, False)

    async def setup(self) -> None:
        def create_tables(context: WriteContext) -> None:
            keep_rows = context.tx.dialect.refuse_deletes("api_keys", _NEVER_DELETED)
            for statement in (SCHEMA, *keep_rows, CHANGES_SCHEMA):
                context.tx.execute(statement)
            context.tx.execute(_SEED_CHANGES)

        await self._store.transact(create_tables)

    async def create(self, organization_id: str, role: Role, name: str | None = None) -> str:
        """Create a key and return its token: the only time the secret is ever shown.

        The server's own organization (``SYSTEM_ORGANIZATION``, which holds the signed chain
        heads) gets none: ValueError."""
        if is_reserved_organization(organization_id):
            raise ValueError(
                f"{organization_id} is the server's own organization: no key can be made for it"
            )
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        row = (key_id, organization_id, role.label, _digest(secret), name, _now())

        def insert(context: WriteContext) -> None:
            context.tx.execute(
                "INSERT INTO api_keys (key_id, organization_id, role, secret_hash, name, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )
            context.tx.execute(_BUMP_CHANGES)

        await self._store.transact(insert)
        self._ever_keyed = (float("inf"), True)
        return f"{_PREFIX}{key_id}_{secret}"

    async def revoke(self, key_id: str) -> bool:
        """Mark a key revoked (its row stays: the database must remember it ever had keys)."""

        def update(context: WriteContext) -> bool:
            found = context.tx.fetchone(
                "SELECT key_id FROM api_keys WHERE key_id = ? AND revoked_at IS NULL", (key_id,)
            )
            if found is not None:
                context.tx.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE key_id = ?", (_now(), key_id)
                )
                context.tx.execute(_BUMP_CHANGES)
            return found is not None

        revoked = await self._store.transact(update)
        self.forget()
        return revoked

    async def list(self) -> list[KeyInfo]:
        rows = await self._store.fetchall(
            "SELECT key_id, organization_id, role, name, created_at, revoked_at FROM api_keys "
            "ORDER BY created_at"
        )
        return [KeyInfo(*row) for row in rows]

    async def version(self) -> int:
        """The key-change counter: it moves with every create and revoke, in any process."""
        rows = await self._store.fetchall("SELECT version FROM api_key_changes WHERE id = 1")
        return int(rows[0][0]) if rows else 0

    async def revoked_ids(self) -> frozenset[str]:
        rows = await self._store.fetchall(
            "SELECT key_id FROM api_keys WHERE revoked_at IS NOT NULL"
        )
        return frozenset(str(row[0]) for row in rows)

    def forget(self) -> None:
        """Drop every verified key and the open-mode answer: the keys changed somewhere."""
        self._generation += 1
        self._cache.clear()
        if not self._ever_keyed[1]:
            self._ever_keyed = (-1e9, False)

    async def any_active(self) -> bool:
        """Whether some key is not revoked (what the server says when it starts)."""
        rows = await self._store.fetchall("SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1")
        return bool(rows)

    async def ever_keyed(self, *, max_age: float = 0.0) -> bool:
        """Whether the database ever had a key, revoked or not: only one that never did may
        serve open. Once true it stays true (rows are never deleted); false is re-read after
        ``max_age`` seconds or when the counter moves."""
        checked_at, found = self._ever_keyed
        if found or time.monotonic() - checked_at <= max_age:
            return found
        generation = self._generation
        rows = await self._store.fetchall("SELECT 1 FROM api_keys LIMIT 1")
        found = bool(rows)
        if found or (generation == self._generation and not self._ever_keyed[1]):
            self._ever_keyed = (time.monotonic(), found)  # never "unkeyed" from a stale read
        return found

    async def verify(self, token: str) -> Principal | None:
        cached = self._cache.get(token)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        generation = self._generation
        principal = await self._lookup(token)
        if principal is not None and generation == self._generation:  # not read before a change
            self._cache[token] = (time.monotonic() + self._cache_seconds, principal)
        return principal

    async def _lookup(self, token: str) -> Principal | None:
        key_id, _, secret = token.removeprefix(_PREFIX).partition("_")
        if not token.startswith(_PREFIX) or not key_id or not secret:
            return None
        rows = await self._store.fetchall(
            "SELECT organization_id, role, secret_hash FROM api_keys "
            "WHERE key_id = ? AND revoked_at IS NULL",
            (key_id,),
        )
        if not rows or not hmac.compare_digest(rows[0][2], _digest(secret)):
            return None
        if is_reserved_organization(rows[0][0]):  # a row written past ``create``: never valid
            return None
        return Principal(rows[0][0], Role.parse(rows[0][1]), key_id)


async def authenticate(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer``; open mode lets everyone in as admin."""
    state = request.app.state
    header = _authorization(request.scope["headers"])
    if not header and request.method == "GET" and (param := _token_param(request)):
        header = f"Bearer {param}"  # EventSource cannot send headers (docs/api.md)
    scheme, _, token = header.partition(" ")
    if not header and state.settings.loopback and not await state.keys.ever_keyed(max_age=2.0):
        _require_loopback_origin(request)
        return Principal(DEFAULT_ORGANIZATION, Role.ADMIN, None)  # open mode
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "unauthorized",
            "send an API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    keys: KeyRing = state.keys
    principal = await keys.verify(token.strip())
    if principal is None:
        raise ApiError(
            401,
            "unauthorized",
            "unknown or revoked API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def _authorization(headers: list[tuple[bytes, bytes]]) -> str:
    """The first ``Authorization`` header, as ``request.headers.get`` finds it (the server
    lowercases names), without building Starlette's ``Headers`` on every request."""
    for name, value in headers:
        if name == b"authorization":
            return value.decode("latin-1")
    return ""


def _require_loopback_origin(request: Request) -> None:
    """Open mode answers only requests addressed to a loopback name and sent from a loopback
    page: a web page elsewhere could otherwise drive it (cross-site requests) or, by DNS
    rebinding its own name to 127.0.0.1, read its answers."""
    host = _host_name(request.headers.get("host", ""))
    origin = request.headers.get("origin")
    if not is_loopback(host) or (origin is not None and not is_loopback(_origin_host(origin))):
        raise ApiError(
            403,
            "forbidden",
            "open mode (no API keys) serves only requests to and from loopback addresses "
            "(Host and Origin): create a key with 'runtrack keys create' to serve others",
        )


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _origin_host(origin: str) -> str:
    try:
        return urlsplit(origin).hostname or ""
    except ValueError:
        return ""


def _token_param(request: Request) -> str | None:
    return request.query_params.get("access_token") if request.scope["query_string"] else None


async def require(request: Request, role: Role) -> Principal:
    principal = await authenticate(request)
    if principal.role < role:
        raise ApiError(
            403,
            "forbidden",
            f"this needs the {role.label} role; the key has {principal.role.label}",
        )
    return principal


def cap(principal: Principal) -> Visibility:
    """The highest visibility of the events whose content this key may read (docs/design.md,
    "Security model"): the same cap as the key's streams."""
    return principal.role.max_visibility


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> str:
    return format_timestamp(datetime.now(UTC))
