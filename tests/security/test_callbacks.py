"""Callbacks against hostile receivers: SSRF refusals, one deadline, a capped read, no
redirects, URLs checked at create, and one organization's receivers never delaying another's.

Non-loopback addresses (10.x, 169.254.169.254) are refused before any connection is tried, so
those tests send no traffic anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.cli.local_verbs import settings_from
from api.server.auth import Role
from api.server.callbacks.addresses import AddressPolicy, is_public, parse_networks
from api.server.callbacks.sender import CallbackSender
from api.server.runner import check_settings
from api.server.settings import Settings
from tests.api.conftest import ServerFactory
from tests.api.server.test_callbacks import attempts_until_final, finished_run
from tests.receiver import Receiver
from tests.security.conftest import Tenants
from tests.security.raw_receivers import RawReceiver, read_request, wait_for_hang_up
from tests.waiting import eventually

pytestmark = pytest.mark.anyio
FAST = {"callback_poll_seconds": 0.05, "leader_interval": 0.05, "callback_retry_base": 0.05}
LOOPBACK = {"callback_allow_networks": ("127.0.0.1/32",)}
Start = Callable[..., Awaitable[RawReceiver]]


@pytest.fixture
async def raw() -> AsyncIterator[Start]:
    started: list[RawReceiver] = []

    async def start(answer: Any, host: str = "127.0.0.1") -> RawReceiver:
        receiver = await RawReceiver().start(answer, host)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        await receiver.stop()


async def only_attempt(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    run_id = await finished_run(client, url)
    [attempt] = await asyncio.wait_for(attempts_until_final(client, run_id), 30)
    return attempt


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"],
)
async def test_a_loopback_receiver_is_reached_only_once_its_network_is_allowed(
    server_factory: ServerFactory, receivers: Any, address: str
) -> None:
    receiver: Receiver = await receivers()
    url = receiver.url.replace("127.0.0.1", address)
    refusing = await server_factory(**FAST)
    async with refusing.client() as client:
        refused = await only_attempt(client, url)
    assert (refused["status_code"], refused["error"], refused["final"]) == (
        None,
        "refused_address",
        True,
    )
    assert receiver.requests == []  # `localhost` is refused too: the resolved address counts
    await refusing.stop()  # (the leader of this database delivers: let the next one lead)

    allowing = await server_factory(callback_allow_networks=("127.0.0.0/8",), **FAST)
    async with allowing.client() as client:
        delivered = await only_attempt(client, url)
    assert (delivered["status_code"], delivered["error"]) == (200, None)
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1:8080/hook",
        "http://[::ffff:169.254.169.254]/",
        "http://[fd00::1]/hook",
        "http://0.0.0.0:9/hook",
    ],
)
async def test_internal_addresses_are_refused_before_connecting(
    server_factory: ServerFactory, url: str
) -> None:
    live = await server_factory(**LOOPBACK, **FAST)  # allowing loopback allows nothing else
    async with live.client() as client:
        attempt = await only_attempt(client, url)
        [run] = (await client.get("/v1/runs")).json()["items"]
    assert (attempt["status_code"], attempt["error"], attempt["final"]) == (
        None,
        "refused_address",
        True,
    )
    assert (run["callback_pending"], run["callback_attempts"]) == (False, 1)


async def test_a_trickling_receiver_is_cut_at_the_deadline(
    server_factory: ServerFactory, raw: Start
) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await trickler.write(writer, b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while True:  # a byte a second: each read succeeds, the whole answer never ends
            await trickler.write(writer, b"z")
            await asyncio.sleep(1.0)  # the receiver's pace, not a synchronisation

    trickler = await raw(trickle)
    live = await server_factory(callback_timeout=2.0, callback_max_attempts=1, **LOOPBACK, **FAST)
    async with live.client() as client:
        attempt = await only_attempt(client, trickler.url)
    assert (attempt["status_code"], attempt["error"]) == (None, "timeout")
    await asyncio.wait_for(trickler.hung_up.wait(), 10)


async def test_a_flooding_receiver_is_read_only_up_to_the_cap(
    server_factory: ServerFactory, raw: Start
) -> None:
    size, chunk = 300 * 1024 * 1024, b"x" * 65536

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await flooder.write(writer, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        while flooder.sent < size:
            await flooder.write(writer, chunk)

    flooder = await raw(flood)
    live = await server_factory(**LOOPBACK, **FAST)
    async with live.client() as client:
        attempt = await only_attempt(client, flooder.url)
    assert (attempt["status_code"], attempt["error"]) == (200, "response_too_large")
    await asyncio.wait_for(flooder.hung_up.wait(), 10)
    assert flooder.sent < 32 * 1024 * 1024  # the cap plus what socket buffers took, not 300 MB


async def test_a_redirect_to_a_refused_address_is_not_followed(
    server_factory: ServerFactory, raw: Start
) -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await wait_for_hang_up(reader)

    async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        location = target.url.encode()
        await redirector.write(
            writer, b"HTTP/1.1 307 Temporary Redirect\r\nLocation: %b\r\n" % location
        )
        await redirector.write(writer, b"Content-Length: 0\r\n\r\n")
        await wait_for_hang_up(reader)

    target = await raw(never, host="127.0.0.2")  # loopback, but outside the allowed /32
    redirector = await raw(redirect)
    live = await server_factory(callback_max_attempts=1, **LOOPBACK, **FAST)
    async with live.client() as client:
        attempt = await only_attempt(client, redirector.url)
    assert (attempt["status_code"], attempt["error"], attempt["final"]) == (
        307,
        "http_status",
        True,
    )
    assert target.connections == 0


async def test_credentials_in_a_callback_url_are_sent_but_never_logged(
    server_factory: ServerFactory, receivers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    receiver: Receiver = await receivers()
    url = receiver.url.replace("http://", "http://hook-user:pass-S3CRET@") + "?token=T0KEN-S3CRET"
    live = await server_factory(**LOOPBACK, **FAST)
    # `runtrack serve` logs at INFO; its own loggers are checked down to DEBUG
    with caplog.at_level(logging.INFO), caplog.at_level(logging.DEBUG, logger="runtrack"):
        async with live.client() as client:
            attempt = await only_attempt(client, url)
    assert attempt["status_code"] == 200
    [request] = receiver.requests
    assert request.headers["authorization"] == "Basic aG9vay11c2VyOnBhc3MtUzNDUkVU"
    lines = [record.getMessage() for record in caplog.records]
    assert lines  # e.g. httpx's line per request
    assert not [line for line in lines if "S3CRET" in line]


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://127.0.0.1:9/hook\n", "control character (U+000A)"),
        ("http://127.0.0.1:9/ho\rok", "control character (U+000D)"),
        ("http://exa mple.com/hook", "space"),
        ("http:///hook", "no host"),
        ("http://example.com:99999/", "invalid port"),
        ("http://exa<mple.com/", "invalid host name"),
        ("javascript://example.com/", "http:// or https://"),
    ],
)
async def test_an_invalid_callback_url_is_refused_at_create(
    server_factory: ServerFactory, url: str, named: str
) -> None:
    live = await server_factory()
    async with live.client() as client:
        answer = await client.post("/v1/runs", json={"agent_id": "a", "callback_url": url})
        runs = (await client.get("/v1/runs")).json()["items"]
    assert answer.status_code == 422
    assert named in answer.text
    assert runs == []


async def test_an_invalid_url_in_the_log_is_one_recorded_attempt_not_a_crash() -> None:
    """A log written before URLs were checked may hold one: the sender reports, never raises."""
    sender = CallbackSender(AddressPolicy(), deadline=1.0, resolvers=1)
    try:
        outcome = await sender.send("http://a/\nb", b"{}", {})
    finally:
        await sender.aclose()
    assert (outcome.status_code, outcome.error, outcome.give_up) == (None, "invalid_url", True)


async def test_hanging_receivers_of_one_organization_do_not_delay_another(
    server_factory: ServerFactory, raw: Start, receivers: Any
) -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await wait_for_hang_up(reader)

    hanging = await raw(hang)
    receiver: Receiver = await receivers()
    live = await server_factory(callback_timeout=60.0, **LOOPBACK, **FAST)
    tenants = await Tenants(live).create_keys()
    a, b = tenants.client("org-a", Role.OPERATOR), tenants.client("org-b", Role.OPERATOR)
    try:
        a_runs = [await finished_run(a, hanging.url) for _ in range(20)]
        per_organization = Settings().callback_concurrency_per_organization
        await eventually(lambda: hanging.connections >= per_organization, within=30)
        b_run = await finished_run(b, receiver.url)
        await receiver.wait_for(1)
        [delivered] = await asyncio.wait_for(attempts_until_final(b, b_run), 30)
        a_attempts = [(await a.get(f"/v1/runs/{r}")).json()["callback_attempts"] for r in a_runs]
    finally:
        await tenants.aclose()
    assert delivered["status_code"] == 200
    assert a_attempts == [0] * 20  # B was delivered while every attempt of A still hung
    assert hanging.connections == per_organization  # A held no more than its own slots


def test_allowed_networks_are_checked_when_the_server_starts() -> None:
    settings = settings_from({"callback_allow_networks": ["10.0.0.0/8", "fd00::/8"]})
    assert settings.callback_allow_networks == ("10.0.0.0/8", "fd00::/8")
    check_settings(settings)
    with pytest.raises(ValueError, match="not-a-network"):
        check_settings(Settings(callback_allow_networks=("not-a-network",)))


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
        ("::ffff:93.184.215.14", True),
        ("127.0.0.1", False),
        ("127.255.0.9", False),
        ("::1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("169.254.169.254", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("224.0.0.1", False),
        ("ff02::1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("::7f00:1", False),  # IPv4-compatible 127.0.0.1
        ("2002:a00:1::", False),  # 6to4 of 10.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(ip_address(address)) is public
    allowed = AddressPolicy(parse_networks(["127.0.0.0/8"]))
    in_allowed = address in ("127.0.0.1", "127.255.0.9", "::ffff:127.0.0.1")
    assert allowed.permits(ip_address(address)) is (public or in_allowed)


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for ``name`` made by the openssl command (the outside world's tool)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}"),
            *("-addext", f"subjectAltName=DNS:{name}"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def tls_receiver(cert: Path, key: Path, names: list[str]) -> tuple[asyncio.Server, int]:
    """An https receiver on 127.0.0.1 that notes the SNI name of each handshake."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def note(_socket: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        names.append(name or "")

    context.sni_callback = note

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ssl.SSLError):
            await read_request(reader)
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    return server, server.sockets[0].getsockname()[1]


async def test_https_checks_the_certificate_and_sends_sni_for_the_host_name(
    tmp_path: Path,
) -> None:
    """Connected to the checked address (127.0.0.1), TLS still speaks to the name."""
    cert, key = self_signed(tmp_path, "localhost")
    names: list[str] = []
    server, port = await tls_receiver(cert, key, names)
    trusting = ssl.create_default_context(cafile=str(cert))
    allowed = AddressPolicy(parse_networks(["127.0.0.0/8"]))
    sender = CallbackSender(allowed, deadline=5.0, resolvers=1, ssl_context=trusting)
    try:
        good = await sender.send(f"https://localhost:{port}/hook", b"{}", {})
        other = await sender.send(f"https://127.0.0.1:{port}/hook", b"{}", {})
    finally:
        await sender.aclose()
        server.close()
    assert (good.status_code, good.error) == (204, None)
    assert names[0] == "localhost"
    assert (other.status_code, other.error) == (None, "tls_failed")  # no certificate for it
