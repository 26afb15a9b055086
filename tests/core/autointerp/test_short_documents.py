"""`neuroboard explain` on an index of short documents (40 documents of 12–23 tokens, shorter than the scoring
windows of 2 × --window + 1 tokens): the non-activating windows fit the documents, hold no stored example and no
known activation of the unit, and every unit that is explained gets its scores; where a score cannot be made, the
row says why."""

import json
import random

import pytest
from helpers.fake_llm import fake_llm

from core.cli import main
from core.index import explanations as X
from core.index.db import connect


def short_corpus(path, tokenizer, n_docs: int = 40, lo: int = 12, hi: int = 23) -> str:
    """n_docs documents of lo..hi tokens each (BOS included), words drawn from the tiny tokenizer's text."""
    from helpers.tiny import TINY_TEXT

    words = TINY_TEXT.split()
    rng = random.Random(0)
    docs = []
    while len(docs) < n_docs:
        target, doc = rng.randint(lo, hi), []
        while len(tokenizer(" ".join(doc))["input_ids"]) < target:
            doc.append(rng.choice(words))
        if lo <= len(tokenizer(" ".join(doc))["input_ids"]) <= hi:
            docs.append(" ".join(doc))
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def short_index(tiny_lm_dir, tmp_path_factory):
    from core.model.load import load_model
    from core.units.config import ExtractConfig
    from core.units.extract import extract

    tmp = tmp_path_factory.mktemp("short-docs")
    lm = load_model(str(tiny_lm_dir))
    corpus = short_corpus(tmp / "c.txt", lm.tokenizer)
    db = str(tmp / "i.duckdb")
    extract(ExtractConfig(model=str(tiny_lm_dir), db=db, corpus=corpus, max_tokens=10**9, context_len=32, top_k=8,
                          samples=2, hist_bins=64, batch_tokens=96, layers="1"), lm=lm)
    return db


def test_short_documents_are_scored(short_index, capsys):
    db = short_index
    con = connect(db, read_only=True)
    try:
        lengths = [n for (n,) in con.execute("SELECT n_tokens FROM run_docs WHERE run_id = 1").fetchall()]
    finally:
        con.close()
    assert len(lengths) == 40 and min(lengths) >= 12 and max(lengths) <= 23 < 2 * 12 + 1  # shorter than a window
    with fake_llm() as (url, _):
        assert main(["explain", "--db", db, "--run", "1", "--units", "1:0-5", "--explainer", url, "--json",
                     "--no-progress", "--candidates", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    ok = [r for r in out if r["status"] == "ok"]
    assert len(ok) >= 4
    for r in ok:
        assert r["reason"] is None, r
        for k in ("detection_bacc", "fuzzing_bacc", "control_detection_bacc", "embedding_auc",
                  "control_embedding_auc"):
            assert isinstance(r[k], float) and 0 <= r[k] <= 1, (k, r)
    # the non-activating windows, read back from the row: inside their documents, as many as the activating ones,
    # and holding none of the unit's stored examples nor a token where its stored context says it is active
    con = connect(db, read_only=True)
    try:
        n_tok = dict(con.execute("SELECT doc_id, n_tokens FROM run_docs WHERE run_id = 1").fetchall())
        for r in ok:
            u = int(r["unit"].split(":")[1])
            sc = X.get_one(con, 1, 1, u)["scores"]
            spans = sc["negative_windows"]
            assert len(spans) == sc["negatives"] == sc["positives"] > 0
            assert all(0 <= lo <= hi < n_tok[d] for d, lo, hi in spans)
            assert len({(d, p) for d, lo, hi in spans for p in range(lo, hi + 1)}) == sum(
                hi - lo + 1 for _, lo, hi in spans)  # no two overlap
            active = set()
            for d, p, a, ctx in con.execute(
                    "SELECT doc_id, position, activation, context FROM top_examples WHERE run_id = 1 AND layer = 1 "
                    "AND unit = ? UNION ALL SELECT doc_id, position, activation, NULL FROM interval_samples WHERE "
                    "run_id = 1 AND layer = 1 AND unit = ?", [u, u]).fetchall():
                if a > 0:
                    active.add((d, p))
                w = (len(ctx) - 1) // 2 if ctx else 0
                active |= {(d, p - w + j) for j, v in enumerate(ctx or []) if v == v and v > 0}
            assert active and not any((d, p) in active for d, lo, hi in spans for p in range(lo, hi + 1))
    finally:
        con.close()


def test_no_negative_window_says_why(short_index, tmp_path, monkeypatch, capsys):
    """Every stretch of every document blocked (a unit active everywhere): no non-activating window, no score, and
    the row's reason says why, in the JSON and in the index."""
    import shutil

    from core.autointerp import prompts as P
    from core.autointerp import run as R
    from core.index import queries

    con = connect(short_index, read_only=True)
    try:
        info = queries.get_run(con, 1)
        docs = con.execute("SELECT doc_id, n_tokens FROM run_docs WHERE run_id = 1").fetchall()
        everywhere = [[P.Window(["x"] * n, [1.0] * n, "top", d, 0, 0) for d, n in docs]]
        neg, why = R._negatives(con, info, [12, 12], everywhere, 12, random.Random(0), ["x"] * 300)
    finally:
        con.close()
    assert neg == [] and why.startswith("no non-activating window: every stretch of 6 tokens or more")
    db = tmp_path / "copy.duckdb"
    shutil.copy(short_index, db)
    monkeypatch.setattr(R.S, "free_runs", lambda docs, blocked, min_len: [])
    with fake_llm() as (url, _):
        assert main(["explain", "--db", str(db), "--run", "1", "--units", "1:0-1", "--explainer", url, "--json",
                     "--no-progress", "--candidates", "1", "--redo"]) == 0
    out = json.loads(capsys.readouterr().out)
    con = connect(db, read_only=True)
    try:
        assert any(r["status"] == "ok" for r in out)
        for r in (r for r in out if r["status"] == "ok"):
            assert r["detection_bacc"] is None and r["embedding_auc"] is None
            assert r["reason"].startswith("no non-activating window: every stretch of")
            assert X.get_one(con, 1, 1, int(r["unit"][2:]))["reason"] == r["reason"]
    finally:
        con.close()


def test_free_runs_and_negative_spans_by_hand():
    from core.autointerp import scoring as S

    runs = S.free_runs([(0, 10), (1, 3), (2, 6)], {0: {2, 3, 7}, 2: {0, 5, 9}}, min_len=2)
    assert runs == [(0, 0, 2), (0, 4, 7), (0, 8, 10), (1, 0, 3), (2, 1, 5)]
    spans = S.negative_spans(runs, [4] * 10, 2, random.Random(0))
    assert len(spans) == 5 and sorted(hi - lo + 1 for _, lo, hi in spans) == [2, 2, 3, 3, 4]
    assert all(any(d == e and a <= lo and hi < b for e, a, b in runs) for d, lo, hi in spans)
