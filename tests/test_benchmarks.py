"""Every benchmark still runs: ``python -m bench.<name> --quick`` ends with its summary line
(``bench.append --smoke``: its quick sizes take a minute here, and no figure is read).

The figures are not checked here (speed belongs in ``bench/`` and docs/benchmarks.md); what is
checked is that a change to the schema or the API has not broken the benchmarks themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.sse_channels import FIREHOSES, spans
from bench.sse_clients import Channels, SseStream, Tally, channels_complete

ROOT = Path(__file__).resolve().parents[1]


SSE_FIELDS = ("fanout_p99_ms=", "channels_p99_ms=", "channels_rate=", "channels_streams=2000")


QUICK_RUNS = {
    "bench.append --smoke --growth 3000": (
        "append:",
        "store256/ceiling=",
        "replay/ceiling=",
        "growth_last/empty=",
        "archive_ev_s=",
        "archive_p99_ms=",
    ),
    "bench.archive_half": ("archive_half:", "append=", "list_failed=", "replay=", "archive_ev_s="),
    "bench.projections": ("projections:", "rebuild_ev_s=", "claim_per_s="),
    "bench.sse": ("sse:", "replay/ceiling=", *SSE_FIELDS, "http_append_ev_s=", "http/bare="),
    "bench.workers": ("workers:", "runs_s_ratio=", "cpu_ratio="),
    "bench.otel_export": ("otel:", "fold_spans_s=", "export_spans_s="),
    "bench.audit": ("audit:", "offline_verify_ev_s="),
}


@pytest.fixture(scope="module")
def quick_runs() -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Every quick benchmark, started together: their figures are not read here, and side by
    side on the machine's cores they take about half the time they take one after another."""
    started = {
        module: subprocess.Popen(
            [sys.executable, "-m", *module.split(), *([] if "--smoke" in module else ["--quick"])],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for module in QUICK_RUNS
    }
    yield started
    for process in started.values():
        stop_group(process)


def stop_group(process: subprocess.Popen[str]) -> None:
    """Kills the benchmark and the servers and workers it started: they hold its output pipes,
    so killing the benchmark alone would leave ``communicate`` waiting on them."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


@pytest.mark.timeout(420)
@pytest.mark.parametrize("module", list(QUICK_RUNS))
def test_a_quick_benchmark_runs_to_its_summary_line(
    module: str, quick_runs: dict[str, subprocess.Popen[str]]
) -> None:
    summary = QUICK_RUNS[module]
    stdout, stderr = quick_runs[module].communicate(timeout=400)
    assert quick_runs[module].returncode == 0, stderr[-3000:]
    last = stdout.strip().splitlines()[-1]
    assert last.startswith(summary[0]), stdout[-3000:]
    assert all(field in last for field in summary[1:]), last


def frames(*ticks: tuple[int, float]) -> bytes:
    """An HTTP chunk of SSE frames as runtrack sends them, one per (event id, sent at)."""
    body = b"".join(
        b'id: %d\nevent: custom.tick\ndata: {"payload":{"n":0,"t":%r}}\n\n' % (event_id, sent)
        for event_id, sent in ticks
    )
    return b"%x\r\n%s\r\n" % (len(body), body)


def stream_with(loop: asyncio.AbstractEventLoop, *chunks: bytes) -> SseStream:
    stream = SseStream(b"", Tally(), loop.create_future(), sampled=True)
    stream.data_received(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
    for chunk in chunks:
        stream.data_received(chunk)
    return stream


def test_a_channel_is_complete_only_with_exactly_its_events_up_to_its_last() -> None:
    loop = asyncio.new_event_loop()
    try:
        now = time.time()
        exact = stream_with(loop, frames((5, now)), frames((9, now)))
        duplicated = stream_with(loop, frames((5, now), (9, now)), frames((9, now)))
        short = stream_with(loop, frames((5, now)))
        held = Channels(0, [exact, duplicated, short, None], [], Tally(), Tally())
        expect = {"counts": [2, 2, 2, 0], "last": [9, 9, 9, 0], "sent": 6, "head": 9}
        assert channels_complete(held, expect) == 1
    finally:
        loop.close()


def test_latency_histograms_merge_across_processes() -> None:
    one, other = Tally(), Tally()
    for _ in range(98):
        one.record(10.0, 10.0 - 0.005)  # 5 ms
    other.record(10.0, 10.0 - 0.3)  # 300 ms
    other.record(10.0, 10.0 - 0.4)
    merged = Tally.merged([json.loads(json.dumps(t.sparse())) for t in (one, other)])
    assert merged.samples == 100
    assert merged.quantile_ms(0.5) == pytest.approx(5.1)
    assert merged.quantile_ms(0.99) == pytest.approx(300.1)


def test_the_channels_are_shared_out_over_the_client_processes() -> None:
    for runs in (1, 2, 2000, 10_001):
        parts = spans(runs)
        assert [first for first, _, _ in parts] == list(
            itertools.accumulate([0] + [count for _, count, _ in parts[:-1]])
        )
        assert sum(count for _, count, _ in parts) == runs
        assert sum(hoses for _, _, hoses in parts) == FIREHOSES
