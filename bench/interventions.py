"""Intervention speed on smollm2-135m with the model loaded, 2 threads, each against a plain loop of single patched
forward passes (or, for generation, a loop without a KV cache) in the same run, as a ratio:

1. Residual-stream patching heatmap (layer × position) of a prompt pair: ours batches a layer's cells into one pass
   and replays the unchanged prefix of blocks, unembedding only the last position; the loop runs one full forward
   per cell. Target <= 3 s for a 10-token pair.
2. All heads (layer × head): target <= 5 s.
3. A steered 32-token greedy continuation beside the default (one batch of two rows with a KV cache); target <= 2 s.
   The full `steer` call (greedy and sampled, default and steered: one batch of four rows, plus the next-token
   shift) is timed too.
4. A 7 α × 30 layer sweep over 32 prompts (core.interventions.sweep; time stated), unless --skip-sweep.

    .venv/bin/python bench/interventions.py --json [--skip-sweep] [--sweep-prompts 32]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLEAN, CORRUPT, ANSWER, FOIL = "The Eiffel Tower is in Paris. It is in", "The Colosseum is in Rome. It is in", \
    " Paris", " Rome"
TARGETS = {"resid_grid_s": 3.0, "heads_grid_s": 5.0, "steer_greedy_32_s": 2.0}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


@torch.inference_mode()
def loop_resid(lm, c_ids, x_ids, a, f):
    """One full forward (all logits) per (layer, position) cell: the plain route."""
    from core.interventions.patching import capture
    from core.model.intervene import patch
    from core.model.run import logits

    _, c_act = capture(lm, c_ids, ("resid_pre",))
    T = c_ids.shape[1]
    for L in range(lm.n_layers):
        for p in range(T):
            logits(lm, x_ids, edits={f"resid_pre.{L}": patch(c_act[("resid_pre", L)], positions=p)})[0, -1, a]


@torch.inference_mode()
def loop_heads(lm, c_ids, x_ids):
    from core.interventions.patching import capture
    from core.model.run import logits

    _, c_act = capture(lm, c_ids, ("z",))
    H = lm.parts.heads[0]
    for L in range(lm.n_layers):
        for h in range(H):
            src = c_act[("z", L)]

            def one(x, h=h, src=src):
                y = x.clone()
                y[:, :, h] = src[:, :, h]
                return y
            logits(lm, x_ids, edits={f"z.{L}": one})


@torch.inference_mode()
def loop_generate(lm, ids, vec, layer, n):
    """Greedy without a KV cache, default then steered, one row at a time."""
    from core.model.run import logits

    for v in (None, vec):
        seq = ids
        for _ in range(n):
            edits = {f"resid_post.{layer}": (lambda x, v=v: x + v)} if v is not None else None
            nxt = logits(lm, seq, edits=edits)[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--sweep-prompts", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(2)
    from core.interventions.directions import from_spec
    from core.interventions.patching import one_token, patch_grid, prompt_pair
    from core.interventions.steer import steer, steer_edit, stream_norm
    from core.model.load import load_model

    lm = load_model(a.model)
    c_ids, x_ids = prompt_pair(lm, CLEAN, CORRUPT)
    at, ft = one_token(lm, ANSWER, "answer"), one_token(lm, FOIL, "foil")
    out: dict = {"model": a.model, "prompt_tokens": int(c_ids.shape[1]), "layers": lm.n_layers,
                 "heads": lm.n_layers * lm.parts.heads[0], "targets": TARGETS}
    patch_grid(lm, CLEAN, CORRUPT, ANSWER, FOIL, kinds=("resid_pre",))  # warm-up
    res, out["resid_grid_s"] = timed(lambda: patch_grid(lm, CLEAN, CORRUPT, ANSWER, FOIL, kinds=("resid_pre",)))
    _, out["resid_loop_s"] = timed(lambda: loop_resid(lm, c_ids, x_ids, at, ft))
    out["resid_speedup_vs_loop"] = out["resid_loop_s"] / out["resid_grid_s"]
    log(f"resid: {out['resid_grid_s']:.2f} s vs loop {out['resid_loop_s']:.2f} s")
    _, out["heads_grid_s"] = timed(lambda: patch_grid(lm, CLEAN, CORRUPT, ANSWER, FOIL, kinds=("heads",)))
    _, out["heads_loop_s"] = timed(lambda: loop_heads(lm, c_ids, x_ids))
    out["heads_speedup_vs_loop"] = out["heads_loop_s"] / out["heads_grid_s"]
    log(f"heads: {out['heads_grid_s']:.2f} s vs loop {out['heads_loop_s']:.2f} s")
    _, out["full_grid_s"] = timed(lambda: patch_grid(lm, CLEAN, CORRUPT, ANSWER, FOIL))
    d = from_spec(lm, "diffmeans:sentiment", 15)
    prompt = "I watched the film last night and"
    stream_norm(lm, 15)
    ids = torch.tensor([lm.tokenizer(prompt)["input_ids"]])
    vec = 0.5 * stream_norm(lm, 15) * d.unit
    from core.model.run import decode

    def edit():
        return {"resid_post.15": steer_edit(vec, torch.tensor([1]), None, ids.shape[1])}
    with torch.inference_mode():
        _, out["steer_greedy_32_s"] = timed(lambda: decode(lm, ids.expand(2, -1), 32, edits=edit()))
        _, out["steer_greedy_loop_s"] = timed(lambda: loop_generate(lm, ids, vec, 15, 32))
    out["steer_speedup_vs_loop"] = out["steer_greedy_loop_s"] / out["steer_greedy_32_s"]
    _, out["steer_call_32_s"] = timed(lambda: steer(lm, prompt, 15, d.vector, 0.5, 32))
    log(f"steer: {out['steer_greedy_32_s']:.2f} s (call {out['steer_call_32_s']:.2f} s) vs loop "
        f"{out['steer_greedy_loop_s']:.2f} s")
    if not a.skip_sweep:
        from core.data.prompt_sets import load_prompt_set
        from core.interventions.sweep import sweep

        texts = load_prompt_set("sentiment").texts[-a.sweep_prompts:]
        r, out["sweep_7x30_s"] = timed(lambda: sweep(lm, d, texts, list(range(lm.n_layers)),
                                                     [-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0], tokens=12))
        out["sweep_prompts"], out["sweep_tokens"] = len(texts), 12
        log(f"sweep: {out['sweep_7x30_s']:.0f} s")
    del res
    out["meets"] = {k: out[k] <= v for k, v in TARGETS.items()}
    print(json.dumps(out, separators=(",", ":")) if a.json else json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
