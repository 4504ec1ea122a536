"""The ``runtrack`` command. Until the HTTP issue lands, ``serve`` says it is not there yet."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["serve"]:
        print("runtrack serve: the HTTP/SSE server arrives with issue 4 (not built yet).")
        return 0
    print("usage: runtrack serve")
    return 2
