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
        f"date {datetime.now(UTC):%Y-%m-%d %H:%M} UTC | {platform.node()} | {os.cpu_count()} cores "
        f"({cpu}) | Python {sys.version.split()[0]} | SQLite {sqlite3.sqlite_version}"
    )


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0
