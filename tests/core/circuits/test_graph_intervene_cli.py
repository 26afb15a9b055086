"""`neuroboard graph-intervene` on a graph file and on the same graph stored in an index: the measured changes agree
with the in-process intervention (same model, same nodes), each input names what it holds, and every bad input is
one line on stderr with exit status 2 and nothing written."""

import hashlib
import json

import pytest
from helpers.circuits import random_transcoders
from helpers.tiny import tiny_tokenizer

from core.circuits.interventions import intervene_nodes, open_graph
from core.circuits.nodes import from_wire
from core.circuits.run import GraphConfig, make_graph
from core.circuits.wire import read_wire
from core.cli.main import main
from core.model.load import load_model
from core.saes.transcoders import TranscoderSet, save_transcoder_set

PROMPT = "The dog chased the cat"


@pytest.fixture(scope="module")
def made(relu_lm, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gi")
    relu_lm.model.save_pretrained(tmp / "model")
    tiny_tokenizer().save_pretrained(tmp / "model")
    tset = save_transcoder_set(TranscoderSet(random_transcoders(relu_lm, seed=1), [0, 1, 2]), tmp / "tset")
    other = save_transcoder_set(TranscoderSet(random_transcoders(relu_lm, seed=4), [0, 1, 2]), tmp / "other")
    out = make_graph(GraphConfig(model=str(tmp / "model"), transcoders=str(tset), prompt=PROMPT,
                                 out=str(tmp / "g.json"), db=str(tmp / "i.duckdb"), max_feature_nodes=None,
                                 node_threshold=0.9, edge_threshold=0.99))
    return tmp, tset, other, out


def run(capsys, *args):
    code = main(["graph-intervene", *map(str, args)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_and_stored_graph_measure_what_the_library_measures(made, capsys):
    tmp, tset, _, out = made
    doc = read_wire(tmp / "g.json")
    feats = [n["node_id"] for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder"][:2]
    code, text, _ = run(capsys, "--graph", tmp / "g.json", "--nodes", ",".join(feats), "--op", "scale:0.5",
                        "--transcoders", tset, "--json")
    assert code == 0
    by_file = json.loads(text)
    code, text, _ = run(capsys, "--graph", out["graph_id"], "--db", tmp / "i.duckdb", "--nodes", ",".join(feats),
                        "--op", "scale:0.5", "--table", "--json")
    assert code == 0
    stored = json.loads(text)
    assert (by_file["edges"], stored["edges"]) == ("the kept links only", "every edge among the kept nodes")
    assert stored["transcoders"] == str(tset) and len(stored["table"]["rows"]) == 10
    lm = load_model(str(tmp / "model"))
    e = intervene_nodes(open_graph(lm, random_transcoders(lm, seed=1), from_wire(doc)), feats, "scale:0.5")
    for got in (by_file["effect"], stored["effect"]):
        assert got["nodes"] == feats and got["op"] == "scale:0.5"
        for key in ("replacement", "linearised", "real"):
            assert got["target"][key] == pytest.approx(getattr(e.target, key), abs=1e-5)
    assert by_file["effect"]["target"]["predicted"] == pytest.approx(e.target.predicted, abs=1e-5)
    code, text, _ = run(capsys, "--graph", tmp / "g.json", "--nodes", feats[0], "--transcoders", tset)
    assert code == 0 and "real model" in text and text.count("\n") == 3


def test_bad_input_is_one_line_and_writes_nothing(made, capsys, tiny_lm_dir):
    tmp, tset, other, out = made
    bad = tmp / "bad.json"
    bad.write_text('{"metadata": {"prompt_tokens": []}, "nodes": [}', encoding="utf-8")
    doc = read_wire(tmp / "g.json")
    no_info = tmp / "no_info.json"
    no_info.write_text(json.dumps({**doc, "metadata": {**doc["metadata"], "info": {}}}), encoding="utf-8")
    feat = next(n["node_id"] for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder")
    before = {p: digest(p) for p in (tmp / "i.duckdb", tmp / "g.json")}
    g, db = tmp / "g.json", tmp / "i.duckdb"
    cases = [(("--graph", bad, "--nodes", feat), "not readable JSON"),
             (("--graph", no_info, "--nodes", feat, "--transcoders", tset), "metadata.info"),
             (("--graph", g, "--nodes", "1_2_3_4"), "not in this graph"),
             (("--graph", g, "--nodes", feat), "give --transcoders"),
             (("--graph", g, "--nodes", feat, "--transcoders", other), "another model or set"),
             (("--graph", g, "--nodes", feat, "--transcoders", tset, "--model", tiny_lm_dir), "another model or set"),
             (("--graph", g, "--nodes", feat, "--op", "scale"), "--op"),
             (("--graph", g, "--transcoders", tset), "give --nodes"),
             (("--graph", "3", "--nodes", feat), "needs --db"),
             (("--graph", "99", "--db", db, "--nodes", feat), "no graph 99"),
             (("--graph", g, "--db", db, "--nodes", feat), "a stored graph's id")]
    for args, words in cases:
        code, text, err = run(capsys, *args)
        assert code == 2 and text == "" and err.count("\n") == 1 and words in err, (args, err)
    assert before == {p: digest(p) for p in before}
