"""The server process's garbage-collector settings (checked in a fresh interpreter: they are
process-wide, and the test process must keep CPython's own)."""

from __future__ import annotations

import json
import subprocess
import sys

from api.server.gc_tuning import FULL_COLLECTION_EVERY

PROBE = """
import gc, json
import api.server.runner
from api.server.gc_tuning import tune_collector
before, tracked = gc.get_threshold(), len(gc.get_objects())
tune_collector()
left = len(gc.get_objects())
print(json.dumps({"before": before, "after": gc.get_threshold(), "tracked": tracked,
                  "frozen": gc.get_freeze_count(), "left": left}))
"""


def test_start_up_objects_are_frozen_and_full_collections_spaced_out() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    seen = json.loads(probe.stdout)
    young, middle, full = seen["before"]
    assert seen["after"] == [young, middle, FULL_COLLECTION_EVERY]
    assert full < FULL_COLLECTION_EVERY
    # what the server had loaded is out of the collector's walks; nothing is left to walk
    assert seen["frozen"] > seen["tracked"] // 2
    assert seen["left"] < 100
