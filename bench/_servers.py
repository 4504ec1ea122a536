"""Server and client processes of the benchmarks in ``bench/sse.py``, and what they cost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status_kb(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    return proc_status_kb(pid, "VmRSS") / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Child:
    """A child process serving HTTP on 127.0.0.1:``port``; its stderr goes to ``log``."""

    argv: list[str]
    port: int
    log: Path
    process: asyncio.subprocess.Process | None = None
    tree: Path = ROOT
    """The source tree it runs from (another checkout, for a before/after)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> Child:
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                *self.argv,
                cwd=self.tree,
                env={**os.environ, "PYTHONPATH": str(self.tree)},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        await self._ready()
        return self

    async def _ready(self) -> None:
        until = time.monotonic() + 30
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            for _ in range(1000):
                if self.process is None or self.process.returncode is not None:
                    break
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/readyz")).status_code == 200:
                        return
                if time.monotonic() > until:
                    break
                await asyncio.sleep(0.05)
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(self.argv[:2])} did not start:\n{tail}")

    async def stop(self) -> None:
        await stop_process(self.process)


async def stop_process(process: asyncio.subprocess.Process | None) -> None:
    if process is None or process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        process.kill()
        await process.wait()


MANY_STREAMS = ["--max-streams-per-organization", "20000", "--max-streams-per-key", "20000"]
"""The fan-out holds up to 10,000 streams of one key (open mode) in one organization."""
FAST_APPENDS = ["--append-rate", "1000000"]
"""The fan-out appends ~TICK_RATE requests/s and the append scenario as many as it can, from one
key: far above the per-key default (500/s)."""


def runtrack(
    database: str, log: Path, *raised: str, deployed: bool = False, tree: Path = ROOT
) -> Child:
    """``runtrack serve`` (from ``tree``) with the default limits, but for those ``raised`` for
    a scenario; unless ``deployed``, also with rare heartbeats and room for 20,000 streams."""
    port = free_port()
    argv = ["api", "serve", "--database", database, "--port", str(port)]
    if not deployed:
        argv += ["--heartbeat-seconds", "60", "--max-streams", "20000"]
    return Child([*argv, *raised], port, log, tree=tree)


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` for ``seconds`` (raw collapsed stacks, only the samples of the
    thread holding the GIL: what the process's Python spends), into ``out``."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    options = ["-d", str(max(1, int(seconds))), "-r", "250", "-f", "raw", "--gil", "--nonblocking"]
    return subprocess.Popen(
        [spy, "record", "-p", str(pid), *options, "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def profile_table(path: Path, top: int = 25) -> list[str]:
    """The self and inclusive shares of the functions in py-spy's raw collapsed stacks."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = [_function(frame) for frame in stack.split(";")]
        total += int(samples)
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + int(samples)
        own[frames[-1]] = own.get(frames[-1], 0) + int(samples)
    lines = [f"profile ({path}): {total} samples"]
    for title, table in (("self", own), ("inclusive", inclusive)):
        lines.append(f"  top {title}:")
        for name, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"    {100 * count / max(total, 1):5.1f}%  {name}")
    return lines


def _function(frame: str) -> str:
    """A py-spy frame, ``name (its path:line)``, as ``name (file name)``: one per function."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1].split(':')[0].rstrip(')')})" if where else name


def stream_limits(streams: int) -> list[str]:
    """Room for exactly ``streams`` streams of one key in one organization, in one server."""
    count = str(streams)
    caps = ["--max-streams", "--max-streams-per-organization", "--max-streams-per-key"]
    return [word for cap in caps for word in (cap, count)]


async def peak_rss(pids: list[int], seconds: float) -> float:
    """The highest summed RSS of ``pids`` seen every 0.25 s for ``seconds``."""
    peak = 0.0
    for _ in range(int(seconds / 0.25) + 1):
        peak = max(peak, sum(rss_mb(pid) for pid in pids))
        await asyncio.sleep(0.25)
    return peak


@dataclass
class CpuMeter:
    """CPU used by some processes (and this one) since ``start``, in % of one core."""

    pids: dict[str, int]
    before: dict[str, float]
    started: float

    @classmethod
    def start(cls, pids: dict[str, int]) -> CpuMeter:
        meter = cls(pids, {}, time.perf_counter())
        meter.before = meter.read()
        return meter

    def read(self) -> dict[str, float]:
        used = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return {**used, "bench": time.process_time()}

    def percent(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self.started
        now = self.read()
        return {name: 100 * (now[name] - self.before[name]) / elapsed for name in now}


async def read_json(process: asyncio.subprocess.Process, seconds: float) -> dict[str, Any]:
    """The client process's next JSON line, waiting at most ``seconds``."""
    assert process.stdout is not None
    async with asyncio.timeout(seconds):
        line = await process.stdout.readline()
    if not line:
        raise RuntimeError(f"the client process exited ({await process.wait()})")
    message: dict[str, Any] = json.loads(line)
    return message


async def tell(process: asyncio.subprocess.Process, line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line.encode())
    await process.stdin.drain()
