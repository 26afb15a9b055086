"""neuroboard graph from the command line: the file and the stored graph, and bad input as one line (exit 2) with
nothing written."""

import json

import pytest
import torch
from helpers.circuits import random_transcoders

from core.circuits.wire import read_wire
from core.cli import main
from core.index.db import connect
from core.index.graphs import graph_kept, graph_wire, list_graphs
from core.model.load import load_model
from core.saes.transcoders import TranscoderSet, save_transcoder_set


@pytest.fixture(scope="module")
def tiny_set(tiny_lm_dir, tmp_path_factory):
    lm = load_model(str(tiny_lm_dir))
    path = tmp_path_factory.mktemp("set") / "tc"
    save_transcoder_set(TranscoderSet(random_transcoders(lm, d_tc=64, k=6), list(range(lm.n_layers))), path)
    return path


def run(tiny_lm_dir, tiny_set, out, *extra):
    return main(["graph", "--model", str(tiny_lm_dir), "--transcoders", str(tiny_set), "--prompt", "The cat sat on",
                 "--out", str(out), "--no-progress", *extra])


def test_graph_file_and_index(tiny_lm_dir, tiny_set, tmp_path, capsys):
    db = tmp_path / "idx.duckdb"
    assert run(tiny_lm_dir, tiny_set, tmp_path / "g.json", "--db", str(db), "--json", "--batch-size", "16") == 0
    summary = json.loads(capsys.readouterr().out)
    doc = read_wire(tmp_path / "g.json")
    assert summary["graph_id"] == 1 and summary["kept_nodes"] == len(doc["nodes"])
    assert doc["metadata"]["prompt_tokens"][0] == "<pad>"  # circuit-tracer passes over id 0 (<bos> here)
    listed = json.loads((tmp_path / "graph-metadata.json").read_text())["graphs"]  # the viewer's list: g.json as "g"
    assert summary["viewer_index"] == str(tmp_path / "graph-metadata.json")
    assert [x["slug"] for x in listed] == [doc["metadata"]["slug"]] == ["g"]
    feats = {n["node_id"] for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder"}
    assert feats and set(doc["metadata"]["info"]["writes"]) == feats  # what each feature writes, for the page
    con = connect(db, read_only=True)
    try:
        (info,) = list_graphs(con)
        assert graph_wire(con, 1) == doc
        ids, A = graph_kept(con, 1)
    finally:
        con.close()
    assert info.prompt == "The cat sat on" and 0 < info.scores["replacement"] <= 1
    by_id = {n["node_id"] for n in doc["nodes"]}
    assert set(ids) == by_id and A.shape == (len(ids), len(ids))
    index = {n: i for i, n in enumerate(ids)}
    for link in doc["links"]:  # every kept link is in the stored adjacency with its weight
        assert A[index[link["target"]], index[link["source"]]] == pytest.approx(link["weight"])


@pytest.mark.parametrize("change,why", [
    ({"--prompt": ""}, "prompt is empty"),
    ({"--prompt": "cat " * 300}, "more than the model's 256 positions"),
    ({"--target": " catastrophe and more"}, "not one"),
    ({"--max-feature-nodes": "0"}, "at least one feature node"),
    ({"--node-threshold": "1.5"}, "must be in"),
])
def test_bad_input_one_line_nothing_written(tiny_lm_dir, tiny_set, tmp_path, capsys, change, why):
    out, db = tmp_path / "g.json", tmp_path / "idx.duckdb"
    args = {"--model": str(tiny_lm_dir), "--transcoders": str(tiny_set), "--prompt": "The cat sat on", "--out": str(out),
            "--db": str(db)} | change
    assert main(["graph", "--no-progress", *[x for kv in args.items() for x in kv]]) == 2
    err = capsys.readouterr().err
    assert why in err and err.count("\n") == 1 and err.startswith("neuroboard: error:")
    assert not out.exists() and not db.exists() and not (tmp_path / "graph-metadata.json").exists()


def _bad_set(tiny_lm_dir, tmp_path, what):
    lm = load_model(str(tiny_lm_dir))
    tcs = random_transcoders(lm, d_tc=32)
    layers = list(range(lm.n_layers))
    if what == "missing":
        tcs, layers = tcs[:-1], layers[:-1]
    path = tmp_path / what
    save_transcoder_set(TranscoderSet(tcs, layers), path)
    if what == "width":  # a set made for a wider model
        from safetensors.torch import load_file, save_file
        for f in path.glob("layer_*.safetensors"):
            t = load_file(f)
            save_file({k: torch.cat([v, v], dim=-1) if k in ("W_enc", "W_dec") else
                       torch.cat([v, v]) if k == "b_dec" else v for k, v in t.items()}, f)
    if what == "hook":
        cfg = (path / "config.yaml").read_text().replace("mlp.hook_in", "attn.hook_z")
        (path / "config.yaml").write_text(cfg)
    return path


@pytest.mark.parametrize("what,why", [("missing", "lacks layer"), ("width", "wide"), ("hook", "hook")])
def test_bad_sets_one_line(tiny_lm_dir, tmp_path, capsys, what, why):
    out = tmp_path / "g.json"
    assert run(tiny_lm_dir, _bad_set(tiny_lm_dir, tmp_path, what), out) == 2
    err = capsys.readouterr().err
    assert why in err and err.count("\n") == 1
    assert not out.exists()
