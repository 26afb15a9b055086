"""The findings file: a DuckDB file of its own (`serve --findings PATH`, default data/findings.duckdb), so the
indexes stay read-only to the dashboard. Every change is one transaction: a process killed in the middle of saving
leaves the file as it was before that save. Its schema moves by numbered migrations (core/findings/migrations/),
tracked in `findings_schema`, a table no index has, which is how a findings file is told from an index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import duckdb

from core.errors import UserError, first_line
from core.index.db import migrate, transaction
from core.index.db import migrations as index_migrations

DEFAULT_PATH = "data/findings.duckdb"


class FindingsError(UserError):
    """A findings file that cannot be used, or a finding that does not exist (one line)."""


def migrations() -> list[tuple[int, str]]:
    return index_migrations("core.findings")


LATEST = max(v for v, _ in migrations())


@dataclass
class Finding:
    title: str
    url: str
    snapshot: dict
    manifest: dict
    note: str = ""
    finding_id: int = 0
    position: float = 0.0
    page: str = ""
    params: dict = field(default_factory=dict)
    created_at: str = ""

    def __post_init__(self) -> None:
        if not self.page and not self.params:
            self.page, self.params = parse_url(self.url)

    def as_dict(self) -> dict:
        return {"id": self.finding_id, "position": self.position, "title": self.title, "note": self.note,
                "url": self.url, "page": self.page, "params": self.params, "snapshot": self.snapshot,
                "manifest": self.manifest, "created_at": self.created_at}


def parse_url(url: str) -> tuple[str, dict]:
    """(page, params) of a dashboard URL: the path's last part ('' for Home) and its query (last value wins)."""
    parts = urlsplit(url)
    page = parts.path.rstrip("/").rsplit("/", 1)[-1] if parts.path.strip("/") else ""
    return page, dict(parse_qsl(parts.query, keep_blank_values=True))


def connect(path: str | Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (a writable open creates and migrates) the findings file; FindingsError (one line) for a file that is
    not a findings file, from a newer neuroboard, locked, or unreadable."""
    path = Path(path)
    if read_only and not path.exists():
        raise FindingsError(f"no findings file at {path}")
    if not read_only:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FindingsError(f"cannot create {path.parent}: {e.strerror or e}") from None
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as e:
        raise FindingsError(f"cannot open findings file {path}: {first_line(e)}") from None
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "findings_schema" not in tables:
            if tables:
                raise FindingsError(f"{path} is not a findings file (it holds other tables: an index?)")
            version = 0
        else:
            version = con.execute("SELECT coalesce(max(version), 0) FROM findings_schema").fetchone()[0]
        if version > LATEST:
            raise FindingsError(f"findings file {path} has schema version {version}, newer than this neuroboard "
                                f"understands ({LATEST}); upgrade neuroboard")
        if version < LATEST:
            if read_only:
                raise FindingsError(f"findings file {path} has schema version {version}; open it once for "
                                    "writing to upgrade it")
            _migrate(con, version)
    except FindingsError:
        con.close()
        raise
    except duckdb.Error as e:
        con.close()
        raise FindingsError(f"{path} is not a usable findings file: {first_line(e)}") from None
    return con


def _migrate(con, version: int) -> None:
    migrate(con, version, migrations(), "findings_schema")


_COLS = "finding_id, position, title, note, url, page, params, snapshot, manifest, CAST(created_at AS VARCHAR)"


def _row(r) -> Finding:
    return Finding(finding_id=r[0], position=r[1], title=r[2], note=r[3], url=r[4], page=r[5],
                   params=json.loads(r[6]), snapshot=json.loads(r[7]), manifest=json.loads(r[8]), created_at=r[9])


def add(path, f: Finding) -> int:
    """Store a finding at the end of the list; its id."""
    if not f.title.strip():
        raise FindingsError("a finding needs a title")
    body = [json.dumps(f.params), json.dumps(f.snapshot, allow_nan=True), json.dumps(f.manifest)]
    con = connect(path)
    try:
        with transaction(con):
            fid, pos = con.execute("SELECT coalesce(max(finding_id), 0) + 1, coalesce(max(position), 0) + 1 "
                                   "FROM findings").fetchone()
            con.execute("INSERT INTO findings (finding_id, position, title, note, url, page, params, snapshot, "
                        "manifest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [fid, pos, f.title.strip(), f.note, f.url, f.page, *body])
        return int(fid)
    finally:
        con.close()


def list_findings(path) -> list[Finding]:
    """All findings in list order (position, then id)."""
    con = connect(path, read_only=True) if Path(path).exists() else None
    if con is None:
        return []
    try:
        return [_row(r) for r in con.execute(f"SELECT {_COLS} FROM findings ORDER BY position, finding_id")
                .fetchall()]
    finally:
        con.close()


def get(path, finding_id: int) -> Finding:
    for f in list_findings(path):
        if f.finding_id == finding_id:
            return f
    raise FindingsError(f"no finding {finding_id} in {path}")


def update(path, finding_id: int, *, title: str | None = None, note: str | None = None) -> None:
    if title is not None and not title.strip():
        raise FindingsError("a finding needs a title")
    con = connect(path)
    try:
        with transaction(con):
            _exists(con, path, finding_id)
            con.execute("UPDATE findings SET title = coalesce(?, title), note = coalesce(?, note), "
                        "updated_at = current_timestamp WHERE finding_id = ?",
                        [title.strip() if title is not None else None, note, finding_id])
    finally:
        con.close()


def move(path, finding_id: int, offset: int) -> None:
    """Move a finding `offset` places in the list (negative: earlier), renumbering positions 1..n."""
    con = connect(path)
    try:
        with transaction(con):
            _exists(con, path, finding_id)
            ids = [r[0] for r in con.execute("SELECT finding_id FROM findings ORDER BY position, finding_id")
                   .fetchall()]
            i = ids.index(finding_id)
            ids.insert(max(0, min(len(ids) - 1, i + offset)), ids.pop(i))
            for pos, fid in enumerate(ids, 1):
                con.execute("UPDATE findings SET position = ? WHERE finding_id = ?", [float(pos), fid])
    finally:
        con.close()


def delete(path, finding_id: int) -> None:
    con = connect(path)
    try:
        with transaction(con):
            _exists(con, path, finding_id)
            con.execute("DELETE FROM findings WHERE finding_id = ?", [finding_id])
    finally:
        con.close()


def _exists(con, path, finding_id: int) -> None:
    """FindingsError unless the file holds finding `finding_id`."""
    if not con.execute("SELECT count(*) FROM findings WHERE finding_id = ?", [finding_id]).fetchone()[0]:
        raise FindingsError(f"no finding {finding_id} in {path}")
