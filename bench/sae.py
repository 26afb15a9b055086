"""SAE benchmarks, one JSON object:

1. Training against a peer trainer, in one run on the same activations: smollm2-135m's residual stream at
   --site over the demo corpus is captured once (training windows and held-out windows, core.saes.acts.split_corpus);
   then our TopK trainer (core.saes.trainer.TopKTrainer) and eai-sparsify's SparseCoder (its own fused encoder, eager
   sparse decoder, AuxK, decoder-norm and parallel-gradient utilities; Adam with sparsify's learning rate formula, as
   its `adam` optimizer option) train on the same batches in the same order, with the same width, k, batch and
   threads. Reported: tokens/s of each (SAE steps only), `ratio_vs_peer` (ours / peer; target >= 1.0, goal 1.5),
   held-out FVU of each at equal tokens (`fvu_minus_peer`, target <= 0.01).
2. Extraction with an SAE's features indexed in the same pass: bench/extract.py's timing (bare forward, then
   extraction of all layers' neurons with and without the SAE's features), as the added cost per 1,000 latents in
   units of the bare forward pass.
3. Features-on-my-text for 64 tokens with the model loaded; the feature map (UMAP) of a 16,384-latent SAE.

    .venv/bin/python bench/sae.py --json [--tokens 131072] [--latents 4608] [--k 32] [--batch 4096]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = {"ratio_vs_peer": 1.0, "fvu_minus_peer": 0.01, "features_on_text_64_s": 0.5}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def capture(lm, site, windows, n_tokens: int) -> torch.Tensor:
    from core.saes import acts

    rows, n = [], 0
    for (x,) in acts.site_batches(lm, windows, [site]):
        rows.append(x)
        n += len(x)
        if n >= n_tokens:
            break
    return torch.cat(rows)[:n_tokens].contiguous()


def fvu(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    x64, h64 = x.double(), x_hat.double()
    return float(((x64 - h64) ** 2).sum() / ((x64 - x64.mean(0)) ** 2).sum())


def train_ours(X, order, latents, k, batch, lr, dead_tokens):
    from core.saes.trainer import TopKTrainer

    steps = len(order)
    tr = TopKTrainer(X.shape[1], X.shape[1], latents, k, False, lr, 1 / 32, dead_tokens, steps, seed=0)
    tr.start(X[: min(len(X), 65536)], X[: min(len(X), 65536)])
    t = time.perf_counter()
    for idx in order:
        b = X[idx]
        tr.step(b, b)
    return time.perf_counter() - t, tr.sae()


def train_peer(X, order, latents, k, batch, lr, dead_tokens):
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):  # sparsify prints a line on import; stdout carries the JSON only
        from sparsify import SparseCoder, SparseCoderConfig

    coder = SparseCoder(X.shape[1], SparseCoderConfig(num_latents=latents, k=k), device="cpu", dtype=torch.float32)
    steps = len(order)
    opt = torch.optim.Adam(coder.parameters(), lr=lr)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    with torch.no_grad():
        coder.b_dec.copy_(X[: min(len(X), 65536)].mean(0))
    since = torch.zeros(latents, dtype=torch.long)
    t = time.perf_counter()
    for idx in order:
        b = X[idx]
        out = coder(b, dead_mask=since > dead_tokens)
        loss = out.fvu + out.auxk_loss / 32
        opt.zero_grad(set_to_none=True)
        loss.backward()
        coder.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        sched.step()
        coder.set_decoder_norm_to_unit_norm()
        with torch.no_grad():
            fired = torch.zeros(latents, dtype=torch.bool)
            fired[out.latent_indices.flatten()] = True
            since += len(b)
            since[fired] = 0
    dt = time.perf_counter() - t
    return dt, coder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--site", default="resid_post.15")
    ap.add_argument("--tokens", type=int, default=131_072, help="training tokens (each trainer)")
    ap.add_argument("--latents", type=int, default=4608)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--held-out", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-extract", action="store_true", help="skip the extraction-cost part")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from core.model.load import load_model
    from core.model.sites import Site
    from core.saes import acts
    from core.saes.trainer import default_lr

    lm = load_model("smollm2-135m")
    site = Site.parse(a.site)
    split = acts.split_corpus("demo", lm.tokenizer, context_len=128)
    log(f"capturing {a.site} activations")
    X = capture(lm, site, split.train, a.tokens)
    H = capture(lm, site, split.held_out, a.held_out)
    n_tok = len(X)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(n_tok, generator=g)
    order = [perm[i: i + a.batch] for i in range(0, n_tok - a.batch + 1, a.batch)]
    lr, dead_tokens = default_lr(a.latents), max(a.batch, n_tok // 4)
    result = {"model": "smollm2-135m", "site": a.site, "train_tokens": len(order) * a.batch,
              "held_out_tokens": len(H), "latents": a.latents, "k": a.k, "batch": a.batch, "threads": a.threads,
              "lr": lr, "peer": "eai-sparsify SparseCoder (fused encoder, eager decoder), Adam"}
    log("training: ours")
    t_ours, sae = train_ours(X, order, a.latents, a.k, a.batch, lr, dead_tokens)
    log("training: peer (sparsify)")
    t_peer, coder = train_peer(X, order, a.latents, a.k, a.batch, lr, dead_tokens)
    with torch.no_grad():
        fvu_ours = fvu(H, sae(H))
        fvu_peer = fvu(H, coder(H).sae_out)
    n = len(order) * a.batch
    result |= {"ours_tokens_per_s": n / t_ours, "peer_tokens_per_s": n / t_peer, "ratio_vs_peer": t_peer / t_ours,
               "fvu_ours": fvu_ours, "fvu_peer": fvu_peer, "fvu_minus_peer": fvu_ours - fvu_peer}
    log(f"ours {n / t_ours:.0f} tok/s, peer {n / t_peer:.0f} tok/s; FVU {fvu_ours:.4f} vs {fvu_peer:.4f}")

    from core.saes.query import token_features

    text = " ".join(["The capital of France is Paris, and the river Seine runs through it."] * 8)
    ids = lm.tokenizer(text)["input_ids"][:64]
    text64 = lm.tokenizer.decode(ids[1:] if ids[0] in lm.tokenizer.all_special_ids else ids)
    sae.site = a.site
    times = []
    for _ in range(7):
        t = time.perf_counter()
        token_features(lm, sae, text64)
        times.append(time.perf_counter() - t)
    result["features_on_text_64_s"] = statistics.median(times)
    from core.saes.features import feature_map
    from core.saes.sae import SAE

    big = SAE(torch.randn(576, 16384), torch.zeros(16384), torch.randn(16384, 576), torch.zeros(576),
              activation="topk", k=32)
    t = time.perf_counter()
    feature_map(big)
    result["umap_16k_s"] = time.perf_counter() - t
    if not a.no_extract:
        result |= extraction_cost(lm, sae, a)
    result["targets"] = TARGETS
    result["meets"] = {"ratio_vs_peer": result["ratio_vs_peer"] >= TARGETS["ratio_vs_peer"],
                       "fvu_minus_peer": result["fvu_minus_peer"] <= TARGETS["fvu_minus_peer"],
                       "features_on_text_64_s": result["features_on_text_64_s"] <= TARGETS["features_on_text_64_s"]}
    print(json.dumps(result, separators=(",", ":")) if a.json else json.dumps(result, indent=2))


def extraction_cost(lm, sae, a) -> dict:
    """Bare forward vs extraction of all layers' neurons, with and without the SAE's features, on the same
    batches (core.units.forward.forward_chunk), interleaved rounds; the added cost per 1k latents."""
    from core.data.corpus import Corpus, iter_chunks
    from core.units.forward import fold_chunk
    from core.units.reduce import LayerReducer, ReduceConfig
    from core.units.run_state import RunState

    chunk = next(iter_chunks(Corpus("demo").documents(), lm.tokenizer, max_tokens=16384, context_len=128,
                             chunk_tokens=16384))
    rcfg = ReduceConfig()
    site = Site_parse(a.site)

    def run(with_sae: bool) -> float:
        reds = {layer: LayerReducer(lm.parts.d_mlp, layer, rcfg) for layer in range(lm.n_layers)}
        saes = {}
        if with_sae:
            reds[-1] = LayerReducer(sae.d_sae, -1, rcfg)
            saes = {-1: (sae, site)}
        r = RunState(0, 0, list(range(lm.n_layers)), 0, reds, special=set(lm.tokenizer.all_special_ids), saes=saes)
        t = time.perf_counter()
        fold_chunk(lm, chunk, r, 4096, False)
        return time.perf_counter() - t

    def bare() -> float:
        from core.data.corpus import batches
        from core.model.run import pad_batch

        t = time.perf_counter()
        with torch.inference_mode():
            for b in batches(chunk.windows, 4096):
                ids, valid = pad_batch([w.ids for w in b])
                lm.model(input_ids=ids, attention_mask=valid)
        return time.perf_counter() - t

    run(False), run(True)  # warm-up (compiled kernels, allocator)
    tb, tn, ts = [], [], []
    for _ in range(3):
        tb.append(bare())
        tn.append(run(False))
        ts.append(run(True))
    b, n, s = statistics.median(tb), statistics.median(tn), statistics.median(ts)
    return {"extract_tokens": chunk.n_tokens, "bare_s": b, "neurons_s": n, "neurons_plus_sae_s": s,
            "sae_added_ratio_per_1k_latents": (s - n) / b / (sae.d_sae / 1000),
            "ratio_vs_bare_neurons": n / b, "ratio_vs_bare_with_sae": s / b}


def Site_parse(name):
    from core.model.sites import Site

    return Site.parse(name)


if __name__ == "__main__":
    main()
