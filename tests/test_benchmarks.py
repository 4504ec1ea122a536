"""Every benchmark still runs: ``python -m bench.<name> --quick`` ends with its summary line.

The figures are not checked here (speed belongs in ``bench/`` and docs/benchmarks.md); what is
checked is that a change to the schema or the API has not broken the benchmarks themselves.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("module", "summary"),
    [
        ("bench.append", ("append:", "store256/ceiling=", "replay/ceiling=")),
        ("bench.projections", ("projections:", "rebuild_ev_s=", "claim_per_s=")),
        ("bench.sse", ("sse:", "replay/ceiling=", "fanout_p99_ms=", "http_append_ev_s=")),
    ],
)
def test_a_quick_benchmark_runs_to_its_summary_line(module: str, summary: tuple[str, ...]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(summary[0]), done.stdout[-3000:]
    assert all(field in last for field in summary[1:]), last
