"""Open the DuckDB index: migrations, clear errors for locks and newer schemas.

Writers open the file only while committing a chunk, so readers (the dashboard) can open it read-only between
commits. A file lock held by another process is retried for `wait_s` seconds before IndexLockedError.
"""

from __future__ import annotations

import os
import re
import time
from importlib.resources import files
from pathlib import Path

import duckdb

from core.errors import UserError, first_line


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


def connect(path: str | Path, *, read_only: bool = False, wait_s: float | None = None) -> duckdb.DuckDBPyConnection:
    """Open the index; a writable open creates the file and applies pending migrations in one transaction."""
    path = Path(path)
    if wait_s is None:
        wait_s = float(os.environ.get("NEUROBOARD_LOCK_WAIT", "10"))
    if read_only and not path.exists():
        raise IndexNotFoundError(f"index not found: {path} (build one with `neuroboard extract` or `make demo`)")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as e:
            if _is_lock_error(e):
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                raise IndexLockedError(f"index {path} is locked by another process (an extraction writing?); "
                                       "try again when it finishes") from None
            raise NotAnIndexError(f"cannot open index {path}: {first_line(e)}") from None
        except duckdb.Error as e:
            raise NotAnIndexError(f"cannot open index {path}: {first_line(e)}") from None
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


def _migrate(con: duckdb.DuckDBPyConnection, version: int) -> None:
    migrate(con, version, migrations(), "schema_version")


def migrate(con: duckdb.DuckDBPyConnection, version: int, steps: list[tuple[int, str]], table: str) -> None:
    """Apply the steps newer than `version` in one transaction, recording each in `table` (a fixed name of ours,
    never user input)."""
    con.execute("BEGIN")
    try:
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL, "
                    "applied_at TIMESTAMP DEFAULT current_timestamp)")
        for v, sql in steps:
            if v > version:
                con.execute(sql)
                con.execute(f"INSERT INTO {table} (version) VALUES (?)", [v])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
