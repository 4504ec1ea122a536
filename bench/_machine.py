"""What every benchmark prints first: when, where, on what."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
from datetime import UTC, datetime


def describe_machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return (
        f"date {datetime.now(UTC):%Y-%m-%d %H:%M} UTC | {platform.node()} | {nproc()} cores "
        f"({cpu}) | Python {sys.version.split()[0]} | SQLite {sqlite3.sqlite_version}"
    )


def nproc() -> int:
    """What ``nproc`` prints: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mb() -> float:
    return status_mb("VmRSS")


class PeakRss:
    """RSS growth from now on: the kernel's high-water mark (reset here) and sampled RSS.

    Writing 5 to ``/proc/self/clear_refs`` resets ``VmHWM`` to the current RSS, so the peak seen
    later is the peak of this phase, not of earlier ones; where that is refused, the samples
    taken with ``sample()`` give the peak instead.
    """

    def __init__(self) -> None:
        self._hwm_reset = reset_high_water_mark()
        self.baseline = rss_mb()
        self._peak = self.baseline

    def sample(self) -> None:
        self._peak = max(self._peak, rss_mb())

    def growth_mb(self) -> float:
        self.sample()
        peak = max(self._peak, status_mb("VmHWM")) if self._hwm_reset else self._peak
        return peak - self.baseline


def reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True
