"""Keeps API keys out of every log line the server writes.

EventSource cannot send headers, so streams carry their key in ``?access_token=``, and
uvicorn's access log writes the whole query string. A filter on every handler of the root and
uvicorn loggers rewrites, in the message and each of its arguments, the ``access_token``
value, the value of an ``Authorization`` header, and the secret part of anything shaped like a
key (``rtk_<key_id>_<secret>``; the key id stays, so a line still says which key it was).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

__all__ = ["RedactKeys", "redact", "redact_server_logs"]

MASK = "***"
_PATTERNS = (
    (re.compile(r"(access_token=)[^&\s\"']*", re.IGNORECASE), rf"\g<1>{MASK}"),
    (
        re.compile(r"(authorization[\"']?\s*[:=,]\s*(?:b?[\"'])?(?:bearer\s+)?)[^\s\"',;]+", re.I),
        rf"\g<1>{MASK}",
    ),
    (re.compile(r"\b(rtk_[0-9a-f]+_)[A-Za-z0-9_-]+"), rf"\g<1>{MASK}"),
)
_LOGGERS = ("", "uvicorn", "uvicorn.access", "uvicorn.error")
"""Whose handlers get the filter: records of every other logger propagate to one of these."""


def redact(text: str) -> str:
    """``text`` with keys masked; percent-encoded text is masked in its decoded form when that
    hides a key (``access%5Ftoken=%72tk_…`` is the same key to the server)."""
    cleaned = _masked(text)
    if "%" in cleaned:
        decoded = unquote(cleaned)
        masked = _masked(decoded)
        if masked != decoded:
            return masked
    return cleaned


def _masked(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactKeys(logging.Filter):
    """Rewrites a record's text in place; the arguments keep their places (uvicorn's access
    formatter unpacks them by position)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {name: _redacted(arg) for name, arg in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(_TRACEBACKS.formatException(record.exc_info))
        return True


_TRACEBACKS = logging.Formatter()


def _redacted(value: object) -> object:
    """A string argument redacted; another object as its redacted text if that differs."""
    if value is None or isinstance(value, (int, float)):
        return value
    text = value if isinstance(value, str) else str(value)
    cleaned = redact(text)
    return cleaned if cleaned != text or isinstance(value, str) else value


def redact_server_logs() -> None:
    """Put the filter on the handlers that exist now (call it once logging is configured)."""
    for name in _LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactKeys) for f in handler.filters):
                handler.addFilter(RedactKeys())
