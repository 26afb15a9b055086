"""The real smollm2 on the demo corpus: `neuroboard top` values equal a recomputation from (doc_id, position)."""

import json

import duckdb
import pytest
from helpers.raw import neurons

from core.cli import main
from core.model.load import load_model

pytestmark = pytest.mark.slow


def test_top_matches_recomputation(tmp_path, capsys):
    db = str(tmp_path / "real.duckdb")
    assert main(["extract", "--model", "smollm2-135m", "--corpus", "demo", "--max-tokens", "3000", "--layers",
                 "3,29", "--db", db, "--context-len", "128", "--no-progress"]) == 0
    capsys.readouterr()
    lm = load_model("smollm2-135m")
    con = duckdb.connect(db, read_only=True)
    for layer, unit in [(3, 17), (29, 1000)]:
        assert main(["top", "--db", db, "--run", "1", "--layer", str(layer), "--unit", str(unit), "--k", "3",
                     "--json"]) == 0
        top = json.loads(capsys.readouterr().out)
        assert len(top) == 3
        for ex in top:
            ids = [r[0] for r in con.execute("SELECT token_id FROM tokens WHERE run_id = 1 AND doc_id = ? "
                                             "ORDER BY position", [ex["doc_id"]]).fetchall()]
            start = (ex["position"] // 128) * 128  # the window the run saw
            act = neurons(lm, ids[start: ex["position"] + 1], layer)[-1, unit].item()
            assert act == pytest.approx(ex["activation"], abs=1e-4, rel=1e-4)
            assert ex["token"] == lm.tokenizer.decode([ids[ex["position"]]])
