"""Index file: numbered migrations, schema_version, refusal of newer schemas and of non-index files."""

import duckdb
import pytest

from core.index.db import LATEST, NotAnIndexError, SchemaTooNewError, connect, migrations


def test_migrations_numbered_and_applied(tmp_path):
    nums = [v for v, _ in migrations()]
    assert nums == list(range(1, len(nums) + 1)) and LATEST == nums[-1]
    db = tmp_path / "a.duckdb"
    con = connect(db)
    assert con.execute("SELECT version FROM schema_version ORDER BY version").fetchall() == [(v,) for v in nums]
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"models", "vocab", "runs", "documents", "tokens", "token_norms", "unit_stats", "top_examples",
            "intervals", "interval_samples"} <= tables
    con.close()
    con = connect(db)  # idempotent: nothing re-applied
    assert con.execute("SELECT count(*) FROM schema_version").fetchall()[0][0] == len(nums)
    con.close()


def test_read_only_refuses_unmigrated_and_foreign_files(tmp_path):
    plain = tmp_path / "plain.duckdb"
    duckdb.connect(str(plain)).close()
    with pytest.raises(NotAnIndexError, match="schema version 0"):
        connect(plain, read_only=True)
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(NotAnIndexError):
        connect(junk)
    assert junk.read_bytes() == b"this is not a database" * 100
    with pytest.raises(NotAnIndexError, match="not found"):
        connect(tmp_path / "none.duckdb", read_only=True)


def test_newer_schema_refused(tmp_path):
    db = tmp_path / "n.duckdb"
    con = connect(db)
    con.execute("INSERT INTO schema_version (version) VALUES (?)", [LATEST + 1])
    con.close()
    for ro in (True, False):
        with pytest.raises(SchemaTooNewError, match="newer"):
            connect(db, read_only=ro)


def test_schema_1_index_upgrades_in_place(tmp_path):
    """An index written at schema 1 keeps its rows and gains top_examples.context (NULL for old rows)."""
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP DEFAULT current_timestamp)")
    con.execute(dict(migrations())[1])
    con.execute("INSERT INTO schema_version (version) VALUES (1)")
    con.execute("INSERT INTO top_examples VALUES (1, 0, 5, 0, 3, 7, 2.5)")
    con.close()
    with pytest.raises(NotAnIndexError, match="schema version 1"):
        connect(db, read_only=True)
    connect(db).close()  # a writing open migrates
    con = connect(db, read_only=True)
    assert con.execute("SELECT unit, position, activation, context FROM top_examples").fetchall() == [(5, 7, 2.5, None)]
    assert con.execute("SELECT max(version) FROM schema_version").fetchall()[0][0] == LATEST >= 2


def test_transaction_commits_or_rolls_back(tmp_path):
    """One transaction helper for every write (index, heads, migrations, findings): a block that raises, even with
    KeyboardInterrupt, leaves the rows as they were; writer.transaction is the same helper."""
    from core.index import writer
    from core.index.db import transaction

    assert writer.transaction is transaction
    con = connect(tmp_path / "t.duckdb")
    con.execute("CREATE TABLE t (x INTEGER)")
    with transaction(con):
        con.execute("INSERT INTO t VALUES (1)")
    for exc in (ValueError, KeyboardInterrupt):
        with pytest.raises(exc), transaction(con):
            con.execute("INSERT INTO t VALUES (2)")
            raise exc()
    assert con.execute("SELECT x FROM t").fetchall() == [(1,)]
    con.close()


def test_exit_fold_failure_is_logged(monkeypatch, caplog):
    """The fold at exit never fails the exit, and says which index it left with its log beside it, and why."""
    import logging

    from core.index import db

    def broken(path, wait_s=None):
        raise OSError("disk full")

    monkeypatch.setattr(db, "_written", {"/data/x.duckdb"})
    monkeypatch.setattr(db, "fold_wal", broken)
    with caplog.at_level(logging.WARNING, logger="core.index.db"):
        db._fold_written()
    assert "/data/x.duckdb" in caplog.text and "disk full" in caplog.text
