"""A tiny index holding an attribution graph whose transcoder features are indexed units (the circuits page's tests):
a random TopK transcoder set for every layer of the tiny Llama, its features extracted over a small corpus, and
`neuroboard graph --db` of one prompt."""

from pathlib import Path

from core.cli import main
from core.model.load import load_model
from core.saes.transcoders import TranscoderSet, save_transcoder_set
from core.units.config import ExtractConfig
from core.units.extract import extract
from helpers.circuits import random_transcoders
from helpers.tiny import write_corpus

PROMPT = "The cat sat on"


def circuit_index(tiny_lm_dir, tmp: Path) -> dict:
    """{"db", "set", "model", "graph_id", "run"}: the index, the set's folder, the model folder, the graph and the
    run that indexed the set's features."""
    lm = load_model(str(tiny_lm_dir))
    tset = tmp / "tc"
    save_transcoder_set(TranscoderSet(random_transcoders(lm, d_tc=48, k=6), list(range(lm.n_layers))), tset)
    db = tmp / "circ.duckdb"
    cfg = ExtractConfig(model=str(tiny_lm_dir), db=str(db), corpus=write_corpus(tmp / "c.txt", n_docs=8),
                        max_tokens=10**9, context_len=32, top_k=8, samples=2, hist_bins=32, batch_tokens=96,
                        layers="0", sae=[str(tset)], sae_map=False)
    run = extract(cfg, lm=lm)
    assert main(["graph", "--model", str(tiny_lm_dir), "--transcoders", str(tset), "--prompt", PROMPT,
                 "--out", str(tmp / "g.json"), "--db", str(db), "--batch-size", "32", "--no-progress"]) == 0
    return {"db": str(db), "set": str(tset), "model": str(tiny_lm_dir), "graph_id": 1, "run": run}
