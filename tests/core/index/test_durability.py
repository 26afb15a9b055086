"""A writer never rewrites the index file in place (its commits go to DuckDB's log); the log comes into the file by
copy, checkpoint and rename (core.index.db.fold_wal). A log cut at any byte keeps exactly the committed prefix, a
log left stale by a fold killed after its rename is dropped, and a kill at each moment of a fold loses nothing."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys

import duckdb
import pytest

from core.faults import ENV
from core.index import db as D

ROWS = 3000


def _commit(path, i):
    con = D.connect(path)
    con.execute("CREATE TABLE IF NOT EXISTS t (i INTEGER, s VARCHAR)")
    con.execute("INSERT INTO t SELECT ? * 100000 + range, repeat('x', 40) FROM range(?)", [i, ROWS])
    con.close()


def _rows(path):
    con = D.connect(path, read_only=True)
    try:
        return con.execute("SELECT count(*), coalesce(sum(i), 0) FROM t").fetchall()[0]
    finally:
        con.close()


def _want(n):
    return n * ROWS, sum(i * 100000 * ROWS + ROWS * (ROWS - 1) // 2 for i in range(n))


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_commits_go_to_the_log_the_file_is_never_rewritten(tmp_path):
    db = tmp_path / "a.duckdb"
    D.connect(db).close()  # created and migrated
    D.fold_wal(db)
    before = _sha(db)
    for i in range(4):
        _commit(db, i)
        assert _sha(db) == before, "a writer rewrote the file in place"
        assert _rows(db) == _want(i + 1)
    assert D.wal_path(db).stat().st_size > 4 * ROWS * 40


def test_a_log_cut_at_any_byte_keeps_exactly_the_committed_prefix(tmp_path):
    db = tmp_path / "a.duckdb"
    D.connect(db).close()
    D.fold_wal(db)
    con = D.connect(db)
    con.execute("CREATE TABLE t (i INTEGER, s VARCHAR)")
    con.close()
    made = D.wal_path(db).stat().st_size
    ends = []
    for i in range(3):
        _commit(db, i)
        ends.append(D.wal_path(db).stat().st_size)
    log = D.wal_path(db).read_bytes()
    cuts = sorted({1, 100, made - 1, made, ends[0] - 1, ends[0], ends[0] + 7, (ends[0] + ends[1]) // 2, ends[1],
                   ends[2] - 3, ends[2]} | {ends[2] * k // 13 for k in range(1, 13)})
    for cut in cuts:
        cdb = tmp_path / f"cut{cut}.duckdb"
        shutil.copyfile(db, cdb)
        D.wal_path(cdb).write_bytes(log[:cut])
        if cut < made:  # not even the table's creation committed
            con = D.connect(cdb, read_only=True)
            assert not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 't'"
                                   ).fetchall()[0][0], cut
            con.close()
        else:
            assert _rows(cdb) == _want(sum(e <= cut for e in ends)), cut


def test_fold_swaps_in_a_checkpointed_copy_and_drops_the_log(tmp_path):
    db = tmp_path / "a.duckdb"
    for i in range(3):
        _commit(db, i)
    ino = db.stat().st_ino
    assert D.fold_wal(db)
    assert not D.wal_path(db).exists() and not (tmp_path / "a.duckdb.fold").exists()
    assert db.stat().st_ino != ino  # a new file, renamed in
    assert _rows(db) == _want(3)
    assert not D.fold_wal(db)  # nothing to fold


def test_a_stale_log_is_dropped_and_nothing_is_lost(tmp_path):
    """The state a fold killed between its rename and the log's removal leaves: the folded file beside the log it
    already holds. DuckDB refuses that log (older than the file); connect drops it, reading or writing."""
    db = tmp_path / "a.duckdb"
    for i in range(2):
        _commit(db, i)
    stale = D.wal_path(db).read_bytes()
    assert D.fold_wal(db)
    for read_only in (True, False):
        D.wal_path(db).write_bytes(stale)
        with pytest.raises(duckdb.IOException, match="checkpoint iteration"):
            duckdb.connect(str(db), read_only=True)
        con = D.connect(db, read_only=read_only)
        assert con.execute("SELECT count(*) FROM t").fetchall()[0][0] == 2 * ROWS  # not replayed twice
        con.close()
        assert not D.wal_path(db).exists()


def test_a_grown_log_is_folded_by_the_next_writer(tmp_path, monkeypatch):
    db = tmp_path / "a.duckdb"
    _commit(db, 0)
    monkeypatch.setattr(D, "WAL_MIN", 1)
    monkeypatch.setattr(D, "WAL_SHARE", 100.0)  # the log is far smaller than 100 × the file: kept
    _commit(db, 1)
    assert D.wal_path(db).exists()
    monkeypatch.setattr(D, "WAL_SHARE", 0.01)
    con = D.connect(db)  # folds first
    assert not D.wal_path(db).exists()
    con.close()
    assert _rows(db) == _want(2)


def test_fold_waits_for_no_one_a_held_file_keeps_its_log(tmp_path):
    db = tmp_path / "a.duckdb"
    _commit(db, 0)
    other = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                              "print('in', flush=True); time.sleep(60)", str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "in"
        assert not D.fold_wal(db, wait_s=0.5)
        assert D.wal_path(db).exists()
    finally:
        other.kill()
        other.wait()
    assert _rows(db) == _want(1)


@pytest.mark.parametrize("where", ["fold-copied", "fold-checkpointed", "fold-swapped"])
def test_a_fold_killed_at_each_moment_loses_nothing(tmp_path, where):
    db = tmp_path / "a.duckdb"
    for i in range(3):
        _commit(db, i)
    code = "import sys; from core.index.db import fold_wal; fold_wal(sys.argv[1])"
    env = {**os.environ, ENV: f"{where}:1", "PYTHONPATH": os.getcwd()}
    killed = subprocess.run([sys.executable, "-c", code, str(db)], env=env, timeout=120)
    assert killed.returncode == -signal.SIGKILL, "the kill point was not reached: the case proves nothing"
    assert _rows(db) == _want(3)
    _commit(db, 3)  # and it takes writes again
    assert D.fold_wal(db)
    assert _rows(db) == _want(4) and not D.wal_path(db).exists()
