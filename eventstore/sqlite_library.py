"""Process-wide settings of the SQLite library that Python's ``sqlite3`` module runs on.

SQLite keeps memory-use statistics by default, and every allocation then takes one global
mutex. Two threads building strings in SQLite (two replay pages framed at once) contend on it,
and together they run slower than one alone. With the statistics off (SQLite's own advice for
speed: ``SQLITE_DEFAULT_MEMSTATUS=0``), two threads frame a replay faster than one (figures in
docs/benchmarks.md, "Notes from the code"). We use no feature that needs the statistics (the
soft heap limit, ``sqlite3_memory_used``).

Python cannot set this, so it is set through ``ctypes``, on the library the ``_sqlite3``
extension is linked to. It is a start-up setting: SQLite must be shut down and initialised
again, which is only allowed while no connection is open. ``runtrack serve`` does it before it
opens anything; library users and tests keep SQLite's defaults.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["disable_memory_statistics", "memory_statistics_disabled"]

_SQLITE_OK = 0
_SQLITE_CONFIG_MEMSTATUS = 9
_disabled = False


def disable_memory_statistics() -> bool:
    """Turn SQLite's memory statistics off; True when they are off. Call before any connection
    is opened in this process (the library is shut down and initialised again)."""
    global _disabled
    if _disabled:
        return True
    library = _library()
    if library is None:
        return False
    try:
        shutdown, config = library.sqlite3_shutdown, library.sqlite3_config
        initialize = library.sqlite3_initialize
    except AttributeError:  # an SQLite linked in without its symbols exported
        return False
    shutdown()
    configured: int = config(_SQLITE_CONFIG_MEMSTATUS, ctypes.c_int(0))
    initialised: int = initialize()
    _disabled = configured == initialised == _SQLITE_OK
    return _disabled


def memory_statistics_disabled() -> bool:
    """Whether this process turned them off (so SQLite reads scale over threads)."""
    return _disabled


def _library() -> ctypes.CDLL | None:
    """The SQLite the ``_sqlite3`` extension uses, on Linux only: ``sqlite3_config`` takes
    variadic arguments, which ``ctypes`` passes correctly on Linux's calling conventions but
    not on every platform's (macOS on ARM puts them on the stack)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import _sqlite3

        return ctypes.CDLL(_sqlite3.__file__)
    except (ImportError, OSError, AttributeError):
        return None
