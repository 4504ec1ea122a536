"""SQLite's memory statistics, turned off for the process (checked in fresh interpreters: the
setting is process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import ctypes, json, sqlite3, sys, _sqlite3
from eventstore.sqlite_library import disable_memory_statistics, memory_statistics_disabled
library = ctypes.CDLL(_sqlite3.__file__)
library.sqlite3_memory_used.restype = ctypes.c_int64
disabled = disable_memory_statistics() if sys.argv[1] == "off" else False
connection = sqlite3.connect(":memory:")
connection.execute("CREATE TABLE t (x)")
connection.execute("INSERT INTO t VALUES (randomblob(100000))")
size = connection.execute("SELECT length(x) FROM t").fetchone()[0]
print(json.dumps({"disabled": disabled, "flag": memory_statistics_disabled(),
                  "counted": library.sqlite3_memory_used(), "size": size}))
"""


def probe(mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, timeout=60
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_turning_the_statistics_off_stops_the_counting_and_sqlite_still_works() -> None:
    counting = probe("on")
    assert (counting["disabled"], counting["flag"], counting["size"]) == (False, False, 100_000)
    assert int(str(counting["counted"])) > 100_000  # the blob, at least
    assert probe("off") == {"disabled": True, "flag": True, "counted": 0, "size": 100_000}
