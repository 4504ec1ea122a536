"""``python -m bench.http_append [ARGS]`` is ``python -m bench.sse --only http [ARGS]``.

The HTTP append ceiling (single-event appends by wrk over 32 keep-alive connections against
runtrack as deployed and against a bare Starlette route on the same uvicorn stack: ``http/bare``)
is bench/sse.py's http scenario, with its ``--base TREE``, ``--profile SECONDS``, ``--rounds``
and ``--seconds``; this name is kept for the commands in docs/benchmarks.md.
"""

from __future__ import annotations

import sys

from bench import sse


def main() -> None:
    sys.argv = [sys.argv[0], "--only", "http", *sys.argv[1:]]
    sse.main()


if __name__ == "__main__":
    main()
