"""What a callback URL must look like: an absolute http(s) URL, printable ASCII, a real host.

Checked when a run is created (so a bad URL is a 422 naming the problem, never a delivery that
fails forever) and again before each delivery (a log written by an older version may hold one).
The API advertises ``CALLBACK_URL_PATTERN`` (``api/client/contract.py``) for it:
``tests/eventstore/test_callback_url.py`` holds that every URL the pattern matches passes here.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

__all__ = ["check_callback_url"]

_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_QUAD = f"{_OCTET}(\\.{_OCTET}){{3}}"

_NUMBER = re.compile(r"^([0-9]+|0[xX][0-9A-Fa-f]*)$")
"""A label that URL parsers read as a number, making the whole host an IPv4 address."""
_DOTTED_QUAD = re.compile(f"^{_QUAD}$")
_HOST_NAME = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?$")


def check_callback_url(value: str) -> str:
    """Return ``value`` if it is a usable callback URL, else raise ValueError saying why."""
    _check_characters(value)
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError("callback_url is not a valid URL (check its host's brackets)") from None
    if parts.scheme not in ("http", "https") or not value.lower().startswith(parts.scheme + "://"):
        raise ValueError("callback_url must be an absolute http:// or https:// URL")
    _check_host(parts)
    _check_port(parts)
    return value


def _check_characters(value: str) -> None:
    for char in value:
        if ord(char) < 0x20 or ord(char) == 0x7F:
            raise ValueError(f"callback_url contains a control character (U+{ord(char):04X})")
        if char == " ":
            raise ValueError("callback_url contains a space (percent-encode it as %20)")
        if ord(char) > 0x7E:
            raise ValueError(
                f"callback_url contains a non-ASCII character (U+{ord(char):04X}): "
                "percent-encode it, and write a host name in its xn-- (IDNA) form"
            )


def _check_host(parts: SplitResult) -> None:
    netloc = parts.netloc.rpartition("@")[2]
    if netloc.startswith("["):
        literal = netloc[1:].partition("]")[0]
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise ValueError("callback_url has an invalid IPv6 address in brackets") from None
        return
    host = netloc.partition(":")[0]
    if not host:
        raise ValueError("callback_url has no host")
    if not _HOST_NAME.match(host):
        raise ValueError("callback_url has an invalid host name")
    _check_address(host)


def _check_address(host: str) -> None:
    """A host whose last label is a number is an IPv4 address: only a plain dotted quad is
    taken, since octal, hex and short forms are read differently by different parsers."""
    last = host.removesuffix(".").rpartition(".")[2]
    if _NUMBER.match(last) and not _DOTTED_QUAD.match(host):
        raise ValueError(
            "callback_url has an invalid IPv4 address: write it as four decimal numbers "
            "0 to 255 without leading zeros (e.g. 192.0.2.1)"
        )


def _check_port(parts: SplitResult) -> None:
    try:
        port = parts.port
    except ValueError:
        raise ValueError("callback_url has an invalid port") from None
    if port == 0:
        raise ValueError("callback_url has an invalid port (0)")
