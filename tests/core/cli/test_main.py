"""CLI: --json outputs, and bad input gives one clear line (exit 2) while the index stays exactly as it was."""

import json
import subprocess
import sys
import time

import duckdb
import pytest
from helpers.tiny import write_corpus

from core.cli import main
from core.index.db import connect


@pytest.fixture(scope="module")
def index(tiny_lm_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    corpus = write_corpus(tmp / "c.txt", n_docs=6)
    db = tmp / "i.duckdb"
    rc = main(["extract", "--model", str(tiny_lm_dir), "--corpus", corpus, "--db", str(db), "--context-len", "32",
               "--top-k", "5", "--no-progress"])
    assert rc == 0
    return db, corpus


def snapshot(db):
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        # repr: stored contexts hold NaN, which == never matches
        return {t: repr(con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()) for t in tables}
    finally:
        con.close()


def test_runs_and_top_json(index, capsys, tiny_lm_dir):
    db, _ = index
    assert main(["runs", "--db", str(db), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [(r["run_id"], r["model"], r["status"]) for r in runs] == [(1, str(tiny_lm_dir), "complete")]
    assert runs[0]["tokens"] > 0
    assert main(["top", "--db", str(db), "--run", "1", "--layer", "1", "--unit", "3", "--k", "5", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)
    assert len(top) == 5 and [t["rank"] for t in top] == list(range(5))
    assert all({"doc_id", "position", "activation", "token", "left", "right"} <= set(t) for t in top)
    assert top[0]["activation"] >= top[-1]["activation"]
    assert main(["top", "--db", str(db), "--run", "1", "--layer", "1", "--unit", "3", "--k", "2"]) == 0
    assert "[[" in capsys.readouterr().out


def bad(capsys, args):
    rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("neuroboard: error: ") and "\n" not in err, err
    return err


def test_bad_inputs_leave_index_untouched(index, capsys, tmp_path, tiny_lm_dir):
    db, corpus = index
    before = snapshot(db)
    base = ["extract", "--db", str(db), "--no-progress"]
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text("  \n\n ")
    (tmp_path / "bin.txt").write_bytes(b"text\x00\x01\x02")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (tmp_path / "notext.csv").write_text("a,b\n1,2\n")
    cases = {
        "not a built-in name": base + ["--model", "no-such-model", "--corpus", corpus],
        "tried hub id nobody/nothing": base + ["--model", "nobody/nothing", "--corpus", corpus],
        "missing": base + ["--model", str(tiny_lm_dir), "--corpus", str(tmp_path / "missing.txt")],
        "empty": base + ["--model", str(tiny_lm_dir), "--corpus", str(tmp_path / "empty.txt")],
        "no text": base + ["--model", str(tiny_lm_dir), "--corpus", str(tmp_path / "blank.txt")],
        "binary": base + ["--model", str(tiny_lm_dir), "--corpus", str(tmp_path / "bin.txt")],
        "UTF-8": base + ["--model", str(tiny_lm_dir), "--corpus", str(tmp_path / "latin1.txt")],
        "'text' column": base + ["--model", str(tiny_lm_dir), "--corpus", str(tmp_path / "notext.csv")],
        "out of range": base + ["--model", str(tiny_lm_dir), "--corpus", corpus, "--layers", "0-7"],
        "--layers": base + ["--model", str(tiny_lm_dir), "--corpus", corpus, "--layers", "one"],
        "resume": base + ["--model", str(tiny_lm_dir), "--corpus", corpus, "--resume"],
        "--ctx-window must be >= 0": base + ["--model", str(tiny_lm_dir), "--corpus", corpus, "--ctx-window", "-1"],
    }
    for needle, args in cases.items():
        assert needle in bad(capsys, args)
    assert "units 0-127" in bad(capsys, ["top", "--db", str(db), "--run", "1", "--layer", "0", "--unit", "128"])
    assert "no layer 9" in bad(capsys, ["top", "--db", str(db), "--run", "1", "--layer", "9", "--unit", "0"])
    assert "no run 5" in bad(capsys, ["top", "--db", str(db), "--run", "5", "--layer", "0", "--unit", "0"])
    assert "not found" in bad(capsys, ["runs", "--db", str(tmp_path / "none.duckdb")])
    assert snapshot(db) == before


def test_locked_index(index, capsys, monkeypatch, tiny_lm_dir):
    db, corpus = index
    before = snapshot(db)
    monkeypatch.setenv("NEUROBOARD_LOCK_WAIT", "0.5")
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(60)", str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert "locked by another process" in bad(capsys, ["runs", "--db", str(db)])
        assert "locked by another process" in bad(capsys, ["extract", "--db", str(db), "--model", str(tiny_lm_dir),
                                                            "--corpus", corpus, "--no-progress"])
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.2)
    assert snapshot(db) == before


def test_newer_schema(index, capsys, tmp_path, tiny_lm_dir):
    db, corpus = index
    newer = tmp_path / "newer.duckdb"
    newer.write_bytes(db.read_bytes())
    con = connect(newer)
    con.execute("INSERT INTO schema_version (version) VALUES (999)")
    con.close()
    before = snapshot(newer)
    assert "schema version 999" in bad(capsys, ["runs", "--db", str(newer)])
    assert "schema version 999" in bad(capsys, ["extract", "--db", str(newer), "--model", str(tiny_lm_dir),
                                                "--corpus", corpus, "--no-progress"])
    assert snapshot(newer) == before


def test_layer_units_and_token_search_match_brute_force(index):
    """Dominance and token search recomputed in Python from top_examples + tokens + vocab."""
    from collections import Counter

    from core.index import queries

    db, _ = index
    con = duckdb.connect(str(db), read_only=True)
    tok = {(d, p): t for d, p, t in con.execute("SELECT doc_id, position, token_id FROM tokens").fetchall()}
    vocab = dict(con.execute("SELECT token_id, display FROM vocab").fetchall())
    tops = {}
    for layer, unit, d, p in con.execute("SELECT layer, unit, doc_id, position FROM top_examples").fetchall():
        tops.setdefault((layer, unit), []).append(vocab[tok[(d, p)]])
    units = queries.layer_units(con, 1, 1)
    assert len(units) == 128
    for u in units:
        tok_, c = Counter(tops[(1, u["unit"])]).most_common(1)[0]
        assert u["dominance"] == pytest.approx(c / len(tops[(1, u["unit"])]))
    target = Counter(t for v in tops.values() for t in v).most_common(1)[0][0]
    hits = queries.search_token(con, 1, target, limit=10)
    want = sorted(((v.count(target), k) for k, v in tops.items() if target in v), reverse=True)[:10]
    assert [h["share"] * 5 for h in hits] == [w[0] for w in want]


def test_serve_upgrades_an_older_index_and_refuses_non_indexes(tmp_path, capsys):
    """`serve` brings a schema-1 index up to date before the read-only dashboard opens it; a non-index is one line."""
    from core.index.db import LATEST, migrations

    old = tmp_path / "old.duckdb"
    con = duckdb.connect(str(old))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP)")
    con.execute(dict(migrations())[1])
    con.execute("INSERT INTO schema_version (version) VALUES (1)")
    con.close()
    assert main(["serve", "--db", str(old), "--port", "0"]) == 2  # stops at the port, after the upgrade
    assert "port 0 out of range" in capsys.readouterr().err
    con = connect(old, read_only=True)
    assert con.execute("SELECT max(version) FROM schema_version").fetchall()[0][0] == LATEST
    con.close()
    junk = tmp_path / "junk.duckdb"
    junk.write_text("not a database")
    assert main(["serve", "--db", str(junk), "--port", "8502"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("neuroboard: error:") and len(err.splitlines()) == 1
