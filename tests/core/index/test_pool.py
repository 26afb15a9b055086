"""The dashboard's shared read-only connection: reused while reads come, closed when they pause so a writer in
another process gets the file, safe from several threads."""

import subprocess
import sys
import threading
import time

from core.index import pool
from core.index.queries import list_runs

WRITE = ("import sys; from core.index.db import connect; c = connect(sys.argv[1], wait_s=float(sys.argv[2])); "
         "c.execute('UPDATE runs SET docs_done = docs_done + 1'); c.close(); print('wrote')")


def writer(db, wait_s):
    return subprocess.run([sys.executable, "-c", WRITE, str(db), str(wait_s)], capture_output=True, text=True,
                          timeout=60)


def test_reused_then_closed_when_idle_and_a_writer_gets_in(tiny_index):
    key = str(tiny_index.resolve())
    with pool.reading(tiny_index, idle_s=0.5) as cur:
        assert [r.run_id for r in list_runs(cur)] == [1, 2]
        first = pool._files[key].con
        held = writer(tiny_index, 0.0)  # the file is held open: a writer that does not wait is refused
        assert held.returncode != 0 and "locked" in held.stderr
    with pool.reading(tiny_index, idle_s=0.5) as cur:
        assert pool._files[key].con is first  # no second open while reads keep coming
    done = writer(tiny_index, 10.0)  # a waiting writer gets in once reads pause
    assert done.returncode == 0 and "wrote" in done.stdout
    assert pool._files[key].con is None
    with pool.reading(tiny_index) as cur:  # and the next read sees what it wrote
        assert cur.execute("SELECT docs_done FROM runs WHERE run_id = 1").fetchall()[0][0] == 13
    pool.close_all()


def test_threads_read_at_once(tiny_index):
    out, errors = [], []

    def read():
        try:
            for _ in range(20):
                with pool.reading(tiny_index) as cur:
                    out.append(len(list_runs(cur)))
        except Exception as e:  # noqa: BLE001 — reported below
            errors.append(e)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and out == [2] * 80
    time.sleep(0.01)
    pool.close_all()


def test_replaced_or_deleted_underneath_is_read_afresh(tiny_index, tmp_path):
    """The held file replaced by another index, then deleted: each read sees what is there now, not the old file
    the shared connection still holds open."""
    import shutil

    import pytest

    from core.index.db import IndexFileError, connect, fold_wal

    path, other = tmp_path / "served.duckdb", tmp_path / "other.duckdb"
    shutil.copy(tiny_index, path)
    shutil.copy(tiny_index, other)
    con = connect(other)
    con.execute("DELETE FROM runs WHERE run_id = 2")
    con.close()
    fold_wal(other)  # one file, as a finished writer leaves it
    with pool.reading(path, idle_s=30) as cur:
        assert [r.run_id for r in list_runs(cur)] == [1, 2]
    held = pool._files[str(path.resolve())].con
    other.replace(path)  # replaced while held open
    with pool.reading(path, idle_s=30) as cur:
        assert [r.run_id for r in list_runs(cur)] == [1] and pool._files[str(path.resolve())].con is not held
    path.unlink()  # deleted while held open
    with pytest.raises(IndexFileError, match="not found"), pool.reading(path, idle_s=30):
        pass
    pool.close_all()
