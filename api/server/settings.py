"""Server settings: one frozen record, filled from the command line or the environment."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cache

from api.server.callbacks.addresses import IPNetwork, parse_networks

__all__ = [
    "Settings",
    "callback_networks",
    "demo_callback_url",
    "is_loopback",
    "listen_address",
]


@dataclass(frozen=True)
class Settings:
    database: str = "runtrack.db"
    host: str = "127.0.0.1"
    port: int = 8000
    heartbeat_seconds: float = 15.0
    """Idle interval after which a stream gets a ``: heartbeat`` comment."""
    retry_ms: int = 3000
    """The ``retry:`` a browser waits before reconnecting."""
    max_streams: int = 10_000
    """Open SSE streams allowed at once (per server process); past it, 503 with Retry-After."""
    max_streams_per_organization: int = 1_000
    """Open SSE streams one organization may hold (per server process); past it, 429."""
    max_streams_per_key: int = 100
    """Open SSE streams one API key may hold (per server process; open mode is one key);
    past it, 429."""
    run_create_rate: float = 50.0
    """Runs one API key may create per second (per server process), with a burst of one
    second's worth; past it, 429 with Retry-After."""
    append_rate: float = 500.0
    """Append requests (``POST …/events`` and ``…/tool-results``) one API key may make per
    second (per server process), with a burst of one second's worth; past it, 429."""
    header_timeout: float = 10.0
    """Seconds a connection has to send a request's headers (from the connection's start, or
    from the first byte of a later request on it); past it, the connection is closed."""
    body_timeout: float = 60.0
    """Seconds a request's whole body has to arrive, from the end of its headers (also when
    the answer came first, e.g. a 401); past it, the connection is closed. A request without
    a body (an SSE stream) is not timed."""
    max_header_bytes: int = 65_536
    """The largest request head: the URL and every header field's name and value; past it,
    431 (414 for a longer URL alone) and the connection is closed."""
    max_headers: int = 100
    """The most header fields a request may have; past it, 431 and the connection is closed."""
    keep_alive_timeout: float = 20.0
    """Seconds an idle kept-alive connection stays open between requests (uvicorn's
    ``timeout_keep_alive``). Above the idle expiry of the clients' pools (``RuntrackClient``
    2 s, httpx 5 s, aiohttp 15 s): a client reusing a connection the server closes at that
    moment gets a reset instead of an answer."""
    send_timeout: float = 30.0
    """A client that does not take a write within this many seconds is dropped."""
    max_body_bytes: int = 1_048_576
    """The largest request body; past it, 413. Advertised in ``/openapi.json``."""
    key_cache_seconds: float = 30.0
    """The longest a verified API key stays cached; a create or revoke anywhere empties the
    cache sooner, at the next poll of the key-change counter (``key_poll_seconds``)."""
    key_poll_seconds: float = 0.25
    """How often each server reads the key-change counter: a revocation written by any process
    on the database is in force (and the key's streams ended) within this interval."""
    synchronous: str = "FULL"
    fanout_linger_ms: float = 50.0
    """Under load, streams are woken at most once per this many ms (see eventstore/tail.py)."""
    fanout_budget: int = 12_000
    """Stream wake-ups per second before the fan-out window grows past ``fanout_linger_ms``
    (with many thousand streams); 0 turns the growth off."""
    leader_interval: float = 1.0
    """How often a follower tries to become the leader that runs background services."""
    reconcile_seconds: float = 30.0
    heartbeat_timeout: float = 300.0
    max_claim_wait: float = 30.0
    """The longest a claim waits server-side, whatever its ``wait_seconds`` asks (at most 30):
    lower it below the idle timeout of a proxy in front of the server."""
    queue_timeout: float = 3600.0
    cancel_timeout: float = 180.0
    callback_secret: str | None = None
    callback_max_attempts: int = 8
    callback_retry_base: float = 1.0
    """Seconds before the second attempt; doubles each time (with jitter), capped at 5 min."""
    callback_poll_seconds: float = 1.0
    callback_timeout: float = 5.0
    """Deadline in seconds for one whole attempt: resolving, connecting, sending, reading."""
    callback_allow_networks: tuple[str, ...] = ()
    """CIDRs callbacks may reach although they are not public (loopback, private, link-local
    ...); by default only public addresses are. ``--demo`` adds the server's own address."""
    callback_concurrency: int = 64
    """Attempts in flight at once, over all organizations."""
    callback_concurrency_per_organization: int = 8
    """Attempts in flight at once for one organization: its slow receivers hold no more."""
    processes: int = 1
    """Server processes sharing the port (PostgreSQL only): each has its own event loop and
    live tail, so streams and requests spread over several cores."""
    access_log: bool = False
    """One log line per request. Off by default: at thousands of requests a second the line
    costs a noticeable share of the server's CPU (docs/benchmarks.md, "Notes from the code")."""
    metrics_token: str | None = None
    """Bearer token ``/metrics`` requires (``Authorization: Bearer <token>``). ``/metrics``
    counts every organization's runs, so it is the deployment operator's, never a tenant key's;
    without a token or ``metrics_listen`` it is served only in open mode (docs/operations.md)."""
    metrics_listen: str | None = None
    """``HOST:PORT`` of a socket of its own that serves ``/metrics`` (and nothing else); the
    API's address then answers ``/metrics`` with 404. The token, if set, is required there too."""
    otel_content: bool = False
    """Export content (tool arguments and results, messages, journals, questions and answers,
    error texts) with the traces; without it only names, ids, statuses, times and token counts
    leave (docs/telemetry.md). Export itself is on when ``OTEL_EXPORTER_OTLP_*`` is set."""
    otel_max_request_bytes: int = 4_194_304
    """Largest OTLP request before compression: a page is split to fit, a span too large on
    its own trimmed. Lowered by itself when the collector answers 413 to a smaller one."""
    otel_drop_after: int = 5
    """Attempts after which a span the collector refuses on its own (400, or 413 once it
    cannot be trimmed) is dropped and logged; 0 keeps retrying it, holding the export."""
    signing_key: str | None = None
    """A file holding the Ed25519 private key (``runtrack audit keygen``) the leader signs
    chain heads with; without one, no ``chain_head`` is appended."""
    trusted_public_keys: tuple[str, ...] = ()
    """Public keys (64 hex digits, or files holding them) the server's verify trusts besides
    its own signing key's: the keys it signed with before a rotation (docs/security.md)."""
    chain_head_seconds: float = 60.0
    """How often the leader signs the chain's head (when something was appended since)."""
    archive_dir: str | None = None
    """Where archive segments are (on this machine): archived runs' events are read from
    them, and ``retain`` writes them there."""
    retain: str | None = None
    """Keep this much of the log live (``30d``); the leader archives what is older to
    ``archive_dir`` every ``archive_interval`` seconds (docs/operations.md, "Retention")."""
    archive_interval: float = 3600.0
    """Seconds between the leader's retention passes."""
    demo: bool = False
    """Also run simulated agents (``api/server/demo.py``)."""
    demo_pace: float = 1.0
    """Scales the demo's pauses (tests run it fast)."""

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        return None if self.metrics_listen is None else listen_address(self.metrics_listen)


def callback_networks(settings: Settings) -> tuple[IPNetwork, ...]:
    """The networks callbacks may reach besides public ones (ValueError for a bad CIDR)."""
    allowed = parse_networks(settings.callback_allow_networks)
    if settings.demo:  # the demo posts to its own receiver, on the server's address
        allowed += parse_networks(_own_addresses(settings.host))
    return allowed


def demo_callback_url(settings: Settings) -> str:
    """Where the demo posts its callbacks: this server, at loopback when bound to every address
    (an unspecified address is never connected to)."""
    host = _reachable(settings.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/demo/callbacks"


def _own_addresses(host: str) -> tuple[str, ...]:
    """The addresses the demo's callbacks reach; the port cannot be expressed, the address is."""
    if host == "localhost":
        return ("127.0.0.1", "::1")
    return (_reachable(host),) if _is_address(host) else ()


def _reachable(host: str) -> str:
    """``host``, or the loopback address of its family when it is 0.0.0.0 or ``::``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        return "127.0.0.1" if address.version == 4 else "::1"
    return str(address)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@cache
def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a pair; ValueError naming what is wrong."""
    host, colon, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a listen address is HOST:PORT, the port 1 to 65535; got {value!r}")
    return host, int(port)
