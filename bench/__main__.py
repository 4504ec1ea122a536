"""Run every benchmark: ``python -m bench [--quick] [--postgres URL]``."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "bench.append",
    "bench.projections",
    "bench.sse",
    "bench.workers",
    "bench.otel_export",
    "bench.audit",
    "bench.archive_pages",
)


def main() -> int:
    failed = 0
    for module in BENCHMARKS:
        print(f"== {module}", flush=True)
        failed |= subprocess.call([sys.executable, "-m", module, *sys.argv[1:]])
    return failed


if __name__ == "__main__":
    sys.exit(main())
