"""The limits one HTTP connection is held to, and the meter that counts a request's head.

httptools (llhttp) bounds neither the request line nor the header section: it hands every
fragment on, and uvicorn keeps them all, so a client can make the server buffer a head of any
size. The meter counts the head as the parser reports it and refuses it past the limits.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConnectionLimits", "HeadMeter", "HeadRefused"]

FIELD_OVERHEAD = 4
"""The ``": "`` and ``"\\r\\n"`` around a header field, counted as the client sent them."""


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection must keep to (docs/security.md, "Per-tenant limits")."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_header_bytes: int = 65_536
    max_headers: int = 100


class HeadRefused(Exception):
    """A request head past a limit; ``status`` is the answer (414 or 431)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class HeadMeter:
    """Counts one request head: its URL and fields exactly, and the bytes still unparsed."""

    def __init__(self, max_bytes: int, max_fields: int) -> None:
        self.max_bytes = max_bytes
        self.max_fields = max_fields
        self.reset()

    def reset(self) -> None:
        self.url_bytes = 0
        self.parsed_bytes = 0
        self.unparsed_bytes = 0
        self.fields = 0

    def add_url(self, fragment: bytes) -> None:
        self.url_bytes += len(fragment)
        self.parsed_bytes += len(fragment)
        if self.url_bytes > self.max_bytes:
            raise HeadRefused(414, f"the request URL is longer than {self.max_bytes} bytes")

    def add_field(self, name: bytes, value: bytes) -> None:
        self.fields += 1
        if self.fields > self.max_fields:
            raise HeadRefused(431, f"a request has at most {self.max_fields} header fields")
        self.parsed_bytes += len(name) + len(value) + FIELD_OVERHEAD
        self._check_bytes(self.parsed_bytes)

    def add_received(self, size: int) -> None:
        """``size`` bytes arrived that all belong to a head not complete yet (the parser may
        hold part of them unreported, e.g. one long header value)."""
        self.unparsed_bytes += size
        self._check_bytes(self.unparsed_bytes)

    def _check_bytes(self, size: int) -> None:
        if size > self.max_bytes:
            raise HeadRefused(431, f"a request's headers take at most {self.max_bytes} bytes")
