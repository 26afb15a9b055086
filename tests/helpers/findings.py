"""A tiny extracted index (neurons of layer 1, a TopK SAE's features, head scores) for findings tests."""

import torch

from core.model.load import load_model
from core.saes.formats import save_saelens
from core.saes.sae import SAE
from core.units.config import ExtractConfig
from core.units.extract import extract
from helpers.tiny import write_corpus


def tiny_extracted(tiny_lm_dir, tmp) -> tuple[str, object, int]:
    """(index path, the loaded tiny model, run id)."""
    corpus = write_corpus(tmp / "c.txt", n_docs=10)
    g = torch.Generator().manual_seed(3)
    sae = SAE(torch.randn(64, 32, generator=g) * 0.3, torch.zeros(32), torch.randn(32, 64, generator=g),
              torch.zeros(64), activation="topk", k=4, site="resid_post.1")
    sae_path = save_saelens(sae, tmp / "sae")
    cfg = ExtractConfig(model=str(tiny_lm_dir), db=str(tmp / "i.duckdb"), corpus=corpus, max_tokens=10**9,
                        context_len=32, top_k=8, samples=2, hist_bins=64, batch_tokens=96, layers="1",
                        sae=[str(sae_path)])
    lm = load_model(str(tiny_lm_dir))
    run_id = extract(cfg, lm=lm)
    from core.cli import main

    assert main(["heads", "--model", str(tiny_lm_dir), "--db", cfg.db, "--seqs", "2", "--half-len", "8",
                 "--ablation-tokens", "64", "--text-tokens", "64", "--no-progress"]) == 0
    return cfg.db, lm, run_id
