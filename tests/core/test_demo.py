"""`neuroboard demo` with its SAE, sweep and explanation jobs: the first model's extraction caches the SAE site, the
SAE trains from that cache, its features are indexed, a steering sweep is stored, units are explained (some scored)
with the built-in model, and a second demo finds everything done."""

import pytest

from core.cli import main
from core.index import queries
from core.index.db import connect


@pytest.mark.slow  # the explain job runs the built-in explainer, smollm2-135m
def test_demo_trains_and_indexes_an_sae(tiny_lm_dir, tmp_path, capsys):
    db = tmp_path / "demo.duckdb"
    args = ["demo", "--db", str(db), "--models", str(tiny_lm_dir), "--max-tokens", "3000", "--ablation-tokens", "0",
            "--sae-site", "resid_post.1", "--sae-tokens", "2048", "--sae-latents", "64", "--sae-k", "4",
            "--sae-batch", "256", "--explain-units", "3", "--explain-scored", "2", "--transcoder-tokens", "2048",
            "--transcoder-latents", "32", "--transcoder-k", "4", "--no-serve"]
    assert main(args) == 0
    con = connect(db, read_only=True)
    saes = queries.run_saes(con)
    runs = queries.list_runs(con)
    con.close()
    assert [(s.site, s.d_sae, s.k) for s in saes[:1]] == [("resid_post.1", 64, 4)]
    assert saes[0].quality and 0 <= saes[0].quality["dead_frac"] <= 1 and saes[0].has_umap
    assert [r.status for r in runs] == ["complete"] * 3 and runs[1].layers == [1]
    # the circuits jobs: a transcoder set for every layer, its features indexed, the graphs of the demo's prompts
    assert [(s.site, s.d_sae) for s in saes[1:]] == [(f"mlp_in.{i}", 32) for i in range(3)]
    assert {s.run_id for s in saes[1:]} == {runs[2].run_id}
    from core.circuits.demo import PROMPTS
    from core.index.graphs import list_graphs

    con = connect(db, read_only=True)
    graphs = list_graphs(con)
    con.close()
    assert [g.prompt for g in graphs] == [p for p, _, _ in PROMPTS] and graphs[0].config["note"] == PROMPTS[0][2]
    assert all((tmp_path / "demo-graphs" / f"{g.config['slug']}.json").is_file() for g in graphs)
    assert (tmp_path / "demo-acts").is_dir() and (tmp_path / "demo-sae").is_dir()
    from core.index.sweeps import list_sweeps, sweep_result

    con = connect(db, read_only=True)
    (sw,) = list_sweeps(con)
    res = sweep_result(con, sw.sweep_id)
    con.close()
    assert sw.name == "demo: diffmeans:sentiment" and res["layers"] == [1] and len(res["alphas"]) == 5
    assert len(res["prompts"]) == 16 and res["direction"]["made"]["set"] == "sentiment"
    from core.index.explanations import get_all

    con = connect(db, read_only=True)
    ex = get_all(con, runs[1].run_id)
    con.close()
    assert len(ex) == 3 and {e["layer"] for e in ex} == {-1, 1}  # a feature and neurons of the SAE's layer
    assert sum(e["scores"] is not None for e in ex) >= 1 and all(e["explainer"] == "local:smollm2-135m" for e in ex)
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "already trained" in err and "features are already indexed" in err and "sweep" in err
    assert "explanations are already stored" in err
    assert "transcoder set" in err and "transcoder features" in err and "graphs" in err
