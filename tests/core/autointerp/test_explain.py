"""`neuroboard explain` end to end on a tiny index: with a deterministic OpenAI-compatible server on 127.0.0.1 (the
explanations, the prompts stored, scores and controls, resume (no call repeated), keyword search, the
control), bad endpoints and malformed answers, and with the built-in smollm2 instruct model on two units."""

import json

import pytest
from helpers.fake_llm import fake_llm

from core.cli import main
from core.index import explanations as X
from core.index.db import connect


@pytest.fixture(scope="module")
def indexed(tiny_lm_dir, tmp_path_factory):
    from helpers.findings import tiny_extracted

    return tiny_extracted(tiny_lm_dir, tmp_path_factory.mktemp("autointerp"))


def rows(db, run=1):
    con = connect(db, read_only=True)
    try:
        return {(r["layer"], r["unit"]): r for r in X.get_all(con, run)}
    finally:
        con.close()


def test_explain_and_score_with_a_local_endpoint(indexed, capsys):
    db, _, _ = indexed
    with fake_llm() as (url, calls):
        rc = main(["explain", "--db", db, "--run", "1", "--units", "1:0-3", "--explainer", url, "--json",
                   "--no-progress", "--candidates", "1"])
        out = json.loads(capsys.readouterr().out)
        n_first = calls["n"]
        assert rc == 0 and [r["unit"] for r in out] == ["1:0", "1:1", "1:2", "1:3"]
        stored = rows(db)
        for r in out:
            row = stored[(1, int(r["unit"].split(":")[1]))]
            if r["status"] == "skipped":
                assert "never fires" in r["reason"]
                continue
            assert r["status"] == "ok" and r["explanation"].startswith("tokens like")
            assert "<<" in row["prompt"] and "Marked tokens (activation 0-10):" in row["prompt"]
            assert row["explainer"] == f"http:{url}"
            sc = row["scores"]
            assert sc["positives"] > 0 and sc["negatives"] > 0 and sc["control_unit"] != [1, int(r["unit"][2:])]
            assert 0 <= r["detection_bacc"] <= 1 and r["control_detection_bacc"] is not None
            assert 0 <= r["embedding_auc"] <= 1 and r["control_embedding_auc"] is not None
        # resume: the same settings explain and score nothing again
        assert main(["explain", "--db", db, "--run", "1", "--units", "1:0-3", "--explainer", url, "--json",
                     "--no-progress", "--candidates", "1"]) == 0
        assert json.loads(capsys.readouterr().out) == out and calls["n"] == n_first


def test_feature_units_and_keyword_search(indexed, capsys):
    db, _, _ = indexed
    with fake_llm() as (url, _):
        assert main(["explain", "--db", db, "--run", "1", "--sae", "1", "--units", "0-2", "--explainer", url,
                     "--no-score", "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["unit"] for r in out] == ["sae1:0", "sae1:1", "sae1:2"] and all(r["detection_bacc"] is None for r in out)
    con = connect(db, read_only=True)
    try:
        hits = X.keyword_search(con, "TOKENS like")
        assert hits and all("tokens like" in h["explanation"] for h in hits)
        assert X.keyword_search(con, "100%_") == []  # LIKE wildcards in the query are plain characters
    finally:
        con.close()


def test_bad_endpoints_and_answers(indexed, capsys):
    db, _, _ = indexed
    before = rows(db)
    with fake_llm("fail") as (url, calls):
        rc = main(["explain", "--db", db, "--run", "1", "--units", "1:5", "--explainer", url, "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and "failed 4 times" in err and len(err.strip().splitlines()) == 1 and calls["n"] == 4
    assert rows(db) == before  # finished units kept, nothing half-written
    with fake_llm("noexplain") as (url, _):
        assert main(["explain", "--db", db, "--run", "1", "--units", "1:6", "--explainer", url, "--json",
                     "--no-progress", "--candidates", "1"]) == 0
    (r,) = json.loads(capsys.readouterr().out)
    assert r["status"] == "unparsed" and r["explanation"] is None and rows(db)[(1, 6)]["reply"] == "   "
    with fake_llm("badjudge") as (url, _):
        assert main(["explain", "--db", db, "--run", "1", "--units", "1:7-8", "--explainer", url, "--json",
                     "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    for r in out:  # every judge answer unparsed: counted, no score invented
        sc = rows(db)[(1, int(r["unit"][2:]))]["scores"]
        assert r["status"] == "ok" and r["detection_bacc"] is None
        assert sc["detection"]["unparsed"] == sc["positives"] + sc["negatives"] and sc["detection"]["n"] == 0
    for args, needle in ((["--run", "9", "--units", "1:1"], "no run 9"), (["--run", "1", "--units", "7:1"], "no layer 7"),
                         (["--run", "1", "--sae", "5", "--units", "1"], "no SAE 5"),
                         (["--run", "1", "--units", "x"], "layer:unit"),
                         (["--run", "1", "--units", "1:1", "--explainer", "ftp://x"], "http(s)://")):
        rc = main(["explain", "--db", db, "--no-progress"] + args)
        err = capsys.readouterr().err
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_units_that_never_fire_are_skipped_with_the_reason(indexed, tiny_lm_dir, tmp_path, capsys):
    """An SAE whose features 0 and 5 have an encoder bias of -1e4 (they never reach the TopK, so never fire in the
    indexed tokens): each is stored as skipped with the reason, with no explanation and no score, beside a live
    feature that is explained as usual."""
    import torch
    from helpers.tiny import write_corpus

    from core.saes.formats import save_saelens
    from core.saes.sae import SAE
    from core.units.config import ExtractConfig
    from core.units.extract import extract

    _, lm, _ = indexed
    g = torch.Generator().manual_seed(3)
    b_enc = torch.zeros(32)
    b_enc[[0, 5]] = -1e4
    sae = SAE(torch.randn(64, 32, generator=g) * 0.3, b_enc, torch.randn(32, 64, generator=g), torch.zeros(64),
              activation="topk", k=4, site="resid_post.1")
    db = str(tmp_path / "i.duckdb")
    extract(ExtractConfig(model=str(tiny_lm_dir), db=db, corpus=write_corpus(tmp_path / "c.txt", n_docs=4),
                          max_tokens=10**9, context_len=32, top_k=8, samples=2, hist_bins=64, batch_tokens=96,
                          layers="1", sae=[str(save_saelens(sae, tmp_path / "sae"))]), lm=lm)
    con = connect(db, read_only=True)
    try:
        active = dict(con.execute("SELECT unit, count_active FROM unit_stats WHERE run_id = 1 AND layer = -1 AND "
                                  "unit IN (0, 1, 5)").fetchall())
    finally:
        con.close()
    assert active[0] == active[5] == 0 and active[1] > 0
    with fake_llm() as (url, calls):
        assert main(["explain", "--db", db, "--run", "1", "--sae", "1", "--units", "0-1,5", "--explainer", url,
                     "--json", "--no-progress", "--candidates", "1"]) == 0
    out = {r["unit"]: r for r in json.loads(capsys.readouterr().out)}
    for u in (0, 5):
        r = out[f"sae1:{u}"]
        assert r["status"] == "skipped" and r["reason"] == "never fires in the indexed tokens"
        assert r["explanation"] is None and r["detection_bacc"] is None and rows(db)[(-1, u)]["scores"] is None
    assert out["sae1:1"]["status"] == "ok" and out["sae1:1"]["detection_bacc"] is not None and calls["n"] > 0


@pytest.mark.slow
def test_builtin_explainer_on_two_units(indexed, capsys):
    db, _, _ = indexed
    assert main(["explain", "--db", db, "--run", "1", "--units", "1:10-11", "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    stored = rows(db)
    for r in out:
        assert r["status"] in ("ok", "unparsed", "skipped")
        row = stored[(1, int(r["unit"].split(":")[1]))]
        assert row["explainer"] == "local:smollm2-135m"
        if r["status"] == "ok":
            assert r["explanation"] and row["scores"]["judge"] == "local:smollm2-135m"


@pytest.mark.slow
def test_builtin_judge_in_batches_equals_one_pass_each():
    """The built-in judge's batched scores (one shared prefix, padded suffixes, chunks of 3 rows) equal one full pass
    of the model per excerpt, for excerpts of different lengths and explanations that share only the instructions."""
    from core.autointerp import prompts as P
    from core.autointerp.backends import chat

    judge = chat("builtin")
    excerpts = ["x = 1", "def f(x):\n    try:\n        return x + 1\n    except ValueError:\n        pass",
                "The cat sat on the mat.", "<<for>> i in range(3):", "3.14 and 2.71 are numbers", "if x:\n  y", "…"]
    convs = [P.judge_one_messages(e, x, fuzz) for e in ("numbers and digits", "Python keywords like try")
             for x in excerpts for fuzz in (False, True)][:11]
    want = [judge.yes_score(m) for m in convs]
    for rows in (3, 32):
        got = judge.yes_scores(convs, rows=rows)
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < 1e-3
    assert max(want) - min(want) > 0.1  # the excerpts are judged differently: the comparison is not vacuous
    assert judge.yes_scores(convs[:1]) == pytest.approx(want[:1], abs=1e-3) and judge.yes_scores([]) == []


def test_search_finds_a_known_explanation_by_a_paraphrase(indexed, tmp_path, capsys):
    """Explanations written into a copy of the index by hand; a paraphrase finds the right one first, by meaning."""
    import shutil

    from core.autointerp.search import store_embeddings

    db = tmp_path / "copy.duckdb"
    shutil.copy(indexed[0], db)
    con = connect(db)
    con.execute("DELETE FROM explanations")  # only the hand-written ones
    texts = {20: "Python keywords such as def, return and import", 21: "numbers and digits in dates and years",
             22: "words about cats, dogs and other pets", 23: "closing brackets and parentheses"}
    for u, t in texts.items():
        X.put(con, {"run_id": 1, "layer": 1, "unit": u, "status": "ok", "explanation": t, "prompt": "p",
                    "explainer": "hand", "settings": {}, "scores": {"detection": {"bacc": 0.8}}})
    assert store_embeddings(con, 1) >= 4
    con.close()
    for query, unit in (("reserved words of a programming language", 20), ("years like 1905", 21),
                        ("animals people keep at home", 22)):
        assert main(["search", "--db", str(db), "--query", query, "--json"]) == 0
        top = json.loads(capsys.readouterr().out)[0]
        assert (top["layer"], top["unit"]) == (1, unit) and top["similarity"] > 0.3 and top["detection_bacc"] == 0.8


def test_top_token_share_and_demo_picks_equal_brute_force(indexed):
    """queries.top_token_share against counting each unit's top examples read one by one with their token windows
    (core.units.sources.unit_view, as the pages read them); the demo's picks are ordered as its docstring says, from
those tokens."""
    from collections import Counter

    from core.autointerp import lexical
    from core.autointerp.demo import explain_picks
    from core.index import queries
    from core.units.sources import unit_view

    db, _, run = indexed
    con = connect(db, read_only=True)
    try:
        info = queries.get_run(con, run)
        vocab = queries.vocab(con, info.model_id)
        for group in (1, -1):
            share = queries.top_token_share(con, run, group, k=2, min_active=3)
            stats = {u: c for u, c in con.execute("SELECT unit, count_active FROM unit_stats WHERE run_id = ? AND "
                                                  "layer = ?", [run, group]).fetchall()}
            want = {}
            for u, c in stats.items():
                view = unit_view(con, info, group, u, group, 10**6, 1)
                toks = [vocab[e.seq[e.focus]].strip(" ").lower() for e in view.top if e.activation > 0]
                if c >= 3 and toks:
                    want[u] = sum(n for _, n in Counter(toks).most_common(2)) / len(toks)
            assert share.keys() == want.keys() and len(want) > 3
            assert all(abs(share[u] - want[u]) < 1e-12 for u in want)
        feats, nrns = explain_picks(con, run, 1, 1, 6)
        for got, group, m, dens in ((feats, -1, 4, 0.05), (nrns, 1, 6 - len(feats), 1.0)):
            count = dict(con.execute("SELECT unit, count_active FROM unit_stats WHERE run_id = ? AND layer = ?",
                                     [run, group]).fetchall())
            dense = dict(con.execute("SELECT unit, density FROM unit_stats WHERE run_id = ? AND layer = ?",
                                     [run, group]).fetchall())
            peaks = {}  # each unit's top-example tokens, read one by one as the pages read them
            for u in count:
                view = unit_view(con, info, group, u, group, 10**6, 1)
                toks = [vocab[e.seq[e.focus]] for e in view.top if e.activation > 0]
                if count[u] >= 50 and dense[u] <= dens and toks:
                    peaks[u] = toks
            share = {u: sum(n for _, n in Counter(t.strip(" ").lower() for t in ts).most_common(5)) / len(ts)
                     for u, ts in peaks.items()}
            named = {u: lexical.name(ts) for u, ts in peaks.items()}
            pure = {u: round(named[u][2], 2) if named[u] and len(named[u][1]) == 1 else 0.0 for u in peaks}
            by_class = {}  # ranked, then grouped by main class; the picks take turns over the classes
            for u in sorted(peaks, key=lambda u: (-round(share[u], 1), -pure[u], -count[u], u)):
                by_class.setdefault(named[u][1][0] if named[u] else None, []).append(u)
            turns = []
            for i in range(max(map(len, by_class.values()))):
                turns += [units[i] for units in by_class.values() if i < len(units)]
            assert got and got == turns[:m]
            assert all(count[u] >= 50 for u in got)
    finally:
        con.close()
