"""Shared read-only access to an index for a long-lived reader (the dashboard), that still lets writers in.

DuckDB lets one process write a file, and a process holding the file open read-only keeps writers out. Opening the
file costs 10-40 ms, more than a whole unit-page read, so `reading(path)` keeps one read-only connection per file
while reads keep coming and closes it after `idle_s` without any (an extraction waiting for its write lock retries
for 10 s, so it gets in within about `idle_s`). Each read gets its own cursor (DuckDB cursors are separate
connections to the same database, safe to use from separate threads).
The file held open is checked at each read: deleted or replaced underneath (another inode, size or mtime: no DuckDB
writer can change it while it is held), the shared connection is dropped and the path opened afresh, so the reader
gets the error of what is there now, or the new index, instead of the old file's contents.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from core.index.db import connect

IDLE_S = 1.0


def _identity(path: str) -> tuple | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class _Shared:
    def __init__(self) -> None:
        self.con = None
        self.ident: tuple | None = None
        self.users = 0
        self.last = 0.0
        self.timer: threading.Timer | None = None


_lock = threading.Lock()
_files: dict[str, _Shared] = {}


def _close_if_idle(key: str, idle_s: float) -> None:
    with _lock:
        sh = _files.get(key)
        if sh is None or sh.con is None:
            return
        if sh.users == 0 and time.monotonic() - sh.last >= idle_s - 1e-3:
            sh.con.close()
            sh.con = None
        elif sh.users == 0:  # used again meanwhile: check later
            sh.timer = threading.Timer(idle_s, _close_if_idle, (key, idle_s))
            sh.timer.daemon = True
            sh.timer.start()


@contextlib.contextmanager
def reading(path: str | Path, *, wait_s: float = 2.0, idle_s: float = IDLE_S):
    """A cursor on a shared read-only connection to `path`. Raises what core.index.db.connect raises."""
    key = str(Path(path).resolve())
    with _lock:
        sh = _files.setdefault(key, _Shared())
        if sh.con is not None and _identity(key) != sh.ident:  # deleted or replaced underneath
            if sh.users == 0:
                sh.con.close()
            else:  # its readers finish on the old file; later reads get a fresh entry
                sh = _files[key] = _Shared()
            sh.con = None
        if sh.con is None:
            sh.con = connect(path, read_only=True, wait_s=wait_s)
            sh.ident = _identity(key)
        sh.users += 1
        cur = sh.con.cursor()
    try:
        yield cur
    finally:
        cur.close()
        with _lock:
            sh.users -= 1
            sh.last = time.monotonic()
            if sh.users == 0 and (sh.timer is None or not sh.timer.is_alive()):
                sh.timer = threading.Timer(idle_s, _close_if_idle, (key, idle_s))
                sh.timer.daemon = True
                sh.timer.start()


def close_all() -> None:
    """Close every shared connection now (tests; shutting down)."""
    with _lock:
        for sh in _files.values():
            if sh.con is not None and sh.users == 0:
                sh.con.close()
                sh.con = None
