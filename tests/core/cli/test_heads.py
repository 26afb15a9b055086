"""`neuroboard heads`: scores stored in the index equal a direct computation; --json rows; one-line errors that leave
the index as it was."""

import json

import numpy as np
import pytest

from core.cli import main
from core.heads.roles import head_scores
from core.index.db import connect
from core.index.heads import head_score_arrays, head_sets
from core.model.load import load_model


def test_heads_json_and_index(tiny_lm_dir, tmp_path, capsys):
    db = tmp_path / "h.duckdb"
    args = ["heads", "--model", str(tiny_lm_dir), "--db", str(db), "--seqs", "3", "--half-len", "6",
            "--ablation-tokens", "48", "--no-progress", "--json"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["layer"], r["head"]) for r in rows] == [(layer, h) for layer in range(3) for h in range(4)]
    roles = {"prev_token", "duplicate_token", "induction", "sink", "current_token", "local_window", "entropy",
             "ov_copying", "ablation_zero", "ablation_mean"}
    assert roles <= set(rows[0])
    direct = head_scores(load_model(str(tiny_lm_dir), attn="eager"), n_seqs=3, half_len=6)
    con = connect(db, read_only=True)
    (hs,) = head_sets(con)
    stored = head_score_arrays(con, hs.model_id)
    con.close()
    assert (hs.n_layers, hs.n_heads, hs.n_kv_heads) == (3, 4, 2) and hs.config["ablation_tokens"] == 48
    for role, v in direct.scores.items():
        np.testing.assert_allclose(stored[role], v, rtol=1e-12)
        assert rows[5][role] == pytest.approx(v[1, 1])
    assert main(args) == 0  # scoring again replaces, never duplicates
    capsys.readouterr()
    con = connect(db, read_only=True)
    assert con.execute("SELECT count(*) FROM head_scores").fetchall()[0][0] == 3 * 4 * len(roles)
    con.close()


def test_heads_bad_input_is_one_line(tiny_lm_dir, tmp_path, capsys):
    db = tmp_path / "h.duckdb"
    connect(db).close()
    before = db.read_bytes()
    for args, needle in [(["--model", "nope"], "not a built-in name"),
                         (["--model", str(tiny_lm_dir), "--seqs", "0"], "--seqs must be"),
                         (["--model", str(tiny_lm_dir), "--ablation-tokens", "-1"], "--ablation-tokens")]:
        assert main(["heads", "--db", str(db), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("neuroboard: error: ") and "\n" not in err and needle in err, err
    assert db.read_bytes() == before


@pytest.mark.slow  # a subprocess or a lock wait of ~10 s
def test_demo_scores_heads_once(tiny_lm_dir, tmp_path, capsys):
    """`neuroboard demo --no-serve` indexes the model and scores its heads; a second demo does neither again."""
    db = tmp_path / "demo.duckdb"
    args = ["demo", "--db", str(db), "--models", str(tiny_lm_dir), "--max-tokens", "300", "--sae-site", "", "--no-serve"]
    assert main(args) == 0
    con = connect(db, read_only=True)
    (hs,) = head_sets(con)
    assert hs.model == str(tiny_lm_dir) and "ablation_mean" in head_score_arrays(con, hs.model_id)
    con.close()
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "already indexed" in err and "scoring" not in err
