"""Open the DuckDB index: migrations, clear errors for locks and newer schemas, and writes a kill cannot corrupt.

Writers open the file only while committing a chunk, so readers (the dashboard) can open it read-only between
commits. A file lock held by another process is retried for `wait_s` seconds before IndexLockedError.

Durability. DuckDB's checkpoint rewrites blocks of the file in place (a metadata block is rewritten whole while the
old header still points into it), and a SIGKILL can cut a write short: a process killed mid-checkpoint can leave the
file unreadable ("Corrupt database file: computed checksum …"). So a writer here never checkpoints in place: its
commits go to the write-ahead log only (`PRAGMA disable_checkpoint_on_shutdown`, no automatic checkpoint), and an
append-only log whose torn tail DuckDB ignores keeps every committed transaction and nothing else. `fold_wal`
brings the log into the file by copy and swap: it keeps writers out (a read-only open), copies the file and its
log, checkpoints the copy, and renames the copy over the file (the one atomic step). The old log is then stale:
DuckDB refuses a log older than its file (its checkpoint iteration), and `connect` deletes such a log, which holds
nothing the file lacks. A writing open folds a log grown past max(WAL_MIN, WAL_SHARE × the file); a finished
extraction, explain run or demo job folds at once, and a process that wrote folds as it exits, so a finished
index is one file (a killed one leaves file + log, which every open reads together).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import shutil
import time
from importlib.resources import files
from pathlib import Path

import duckdb

from core.errors import UserError, first_line
from core.faults import point

log = logging.getLogger(__name__)


class IndexFileError(UserError):
    """Base class: a one-line, user-facing problem with the index file."""


class IndexLockedError(IndexFileError):
    pass


class SchemaTooNewError(IndexFileError):
    pass


class NotAnIndexError(IndexFileError):
    pass


class IndexNotFoundError(NotAnIndexError):
    pass


def migrations(package: str = "core.index") -> list[tuple[int, str]]:
    """(version, SQL) of `package`'s migrations/NNN_*.sql, in order (the index's; the findings file has its own)."""
    out = []
    for f in files(package).joinpath("migrations").iterdir():
        m = re.match(r"(\d+)_.*\.sql$", f.name)
        if m:
            out.append((int(m.group(1)), f.read_text(encoding="utf-8")))
    return sorted(out)


LATEST = max(v for v, _ in migrations())


def _is_lock_error(e: Exception) -> bool:
    s = str(e).lower()
    return "lock" in s and ("conflicting" in s or "could not set lock" in s or "resource temporarily" in s)


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    has = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'").fetchall()[0][0]
    if not has:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()[0][0]


WAL_MIN = 64 << 20
WAL_SHARE = 0.25
WRITER = {"checkpoint_threshold": "1TB"}
"""A writer's DuckDB settings: no automatic checkpoint (and none at close: the PRAGMA in connect)."""


_written: set[str] = set()


@atexit.register
def _fold_written() -> None:
    """A process that wrote an index leaves it one file when it exits normally (a killed one leaves the log)."""
    for path in sorted(_written):
        try:
            fold_wal(path, wait_s=2.0)
        except Exception as e:  # never fail an exit over this: the log keeps every commit
            log.warning("%s: its write-ahead log was not folded into the file at exit (%s); the next open reads "
                        "both", path, first_line(e))


def wal_path(path: str | Path) -> Path:
    return Path(f"{path}.wal")


def _ident(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _is_stale_wal(e: Exception) -> bool:
    return "checkpoint iteration does not match" in str(e)


def connect(path: str | Path, *, read_only: bool = False, wait_s: float | None = None) -> duckdb.DuckDBPyConnection:
    """Open the index; a writable open creates the file and applies pending migrations in one transaction, and its
    commits go to the log only (module docstring)."""
    path = Path(path)
    if wait_s is None:
        wait_s = float(os.environ.get("NEUROBOARD_LOCK_WAIT", "10"))
    if read_only and not path.exists():
        raise IndexNotFoundError(f"index not found: {path} (build one with `neuroboard extract` or `make demo`)")
    if not read_only:
        _fold_if_grown(path)
    deadline = time.monotonic() + wait_s
    while True:
        log = _ident(wal_path(path))
        try:
            con = duckdb.connect(str(path), read_only=read_only, config={} if read_only else WRITER)
            break
        except duckdb.IOException as e:
            if _is_lock_error(e):
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                raise IndexLockedError(f"index {path} is locked by another process (an extraction writing?); "
                                       "try again when it finishes") from None
            if _is_stale_wal(e) and log is not None and _ident(wal_path(path)) == log:
                wal_path(path).unlink(missing_ok=True)  # folded into the file already (fold_wal, killed or racing)
                continue
            raise NotAnIndexError(f"cannot open index {path}: {first_line(e)}") from None
        except duckdb.Error as e:
            raise NotAnIndexError(f"cannot open index {path}: {first_line(e)}") from None
    if not read_only:
        con.execute("PRAGMA disable_checkpoint_on_shutdown")
        _written.add(str(path.resolve()))
    try:
        version = schema_version(con)
    except duckdb.Error as e:
        con.close()
        raise NotAnIndexError(f"{path} is not a neuroboard index: {first_line(e)}") from None
    if version > LATEST:
        con.close()
        raise SchemaTooNewError(f"index {path} has schema version {version}, newer than this neuroboard "
                                f"understands ({LATEST}); upgrade neuroboard")
    if version < LATEST:
        if read_only:
            con.close()
            raise NotAnIndexError(f"index {path} has schema version {version}; open it once with a writing "
                                  "command (e.g. extract) to upgrade it")
        _migrate(con, version)
    return con


def _fold_if_grown(path: Path) -> None:
    wal = wal_path(path)
    try:
        grown = wal.stat().st_size > max(WAL_MIN, WAL_SHARE * path.stat().st_size)
    except OSError:
        return
    if grown:
        fold_wal(path)


def fold_wal(path: str | Path, *, wait_s: float | None = None) -> bool:
    """Bring the index's write-ahead log into the file by copy, checkpoint and rename (module docstring); False if
    there was no log, or another process holds the file (the log stays; nothing is lost)."""
    path = Path(path)
    wal = wal_path(path)
    if not path.exists() or _ident(wal) is None:
        return False
    try:
        hold = connect(path, read_only=True, wait_s=0.0 if wait_s is None else wait_s)  # keeps writers out
    except IndexFileError:
        return False
    try:
        if _ident(wal) is None:
            return False
        tmp = path.with_name(path.name + ".fold")
        wal_path(tmp).unlink(missing_ok=True)  # a killed fold's leftovers
        shutil.copyfile(path, tmp)
        shutil.copyfile(wal, wal_path(tmp))
        point("fold-copied")  # the fault matrix: killed with the copy made, not checkpointed
        con = duckdb.connect(str(tmp))
        con.execute("CHECKPOINT")
        con.close()
        wal_path(tmp).unlink(missing_ok=True)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        point("fold-checkpointed")  # killed with the folded copy complete, not yet renamed
        log = _ident(wal)
        os.replace(tmp, path)
    finally:
        hold.close()
    point("fold-swapped")  # killed with the new file in place and the old log beside it (stale: connect drops it)
    if _ident(wal) == log:
        wal.unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def transaction(con):
    """BEGIN ... COMMIT, or ROLLBACK when the block raises (the file keeps what it had). The one place the project
    opens a transaction (core.index.writer re-exports it)."""
    con.execute("BEGIN")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _migrate(con: duckdb.DuckDBPyConnection, version: int) -> None:
    migrate(con, version, migrations(), "schema_version")


def migrate(con: duckdb.DuckDBPyConnection, version: int, steps: list[tuple[int, str]], table: str) -> None:
    """Apply the steps newer than `version` in one transaction, recording each in `table` (a fixed name of ours,
    never user input)."""
    with transaction(con):
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL, "
                    "applied_at TIMESTAMP DEFAULT current_timestamp)")
        for v, sql in steps:
            if v > version:
                con.execute(sql)
                con.execute(f"INSERT INTO {table} (version) VALUES (?)", [v])
