"""Logit-lens speed on a loaded model: a 64-token prompt through every block, target <= 0.5 s on 2 cores.

    .venv/bin/python bench/lens.py --json [--model smollm2-135m] [--tokens 64] [--repeats 7]

Times, after the model is loaded (and one warm-up), the forward pass that captures every block's output
(core.lens.logit.stream), the lens over it (core.lens.logit.lens_of: final norm + unembedding + softmax statistics for every
block and position), the whole `lens` (every position: the page's grid), the lens at the last position only (what
`neuroboard lens` computes), and the residual geometry; medians over --repeats. Also the bare `model(input_ids)`
forward on the same tokens, so `ratio_vs_forward` says what the lens adds, and the machine's rate on the grid's one
unembedding product (L*T rows x d_model x vocab), the floor under the full grid's time. One JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from core.geometry.residual import residual_geometry
from core.lens.logit import lens, lens_of, stream
from core.model.load import load_model

TARGET_S = 0.5
TEXT = ("The capital of France is Paris, and the capital of Italy is Rome. In 1905 the physicist published four "
        "papers that changed how people think about space, time, light and matter. The river runs through the old "
        "town, past the cathedral and under seven stone bridges before it reaches the sea.")


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t = time.perf_counter()
    lm = load_model(a.model)
    load_s = time.perf_counter() - t
    ids = lm.tokenizer(TEXT * 4)["input_ids"][: a.tokens]
    if len(ids) < a.tokens:
        sys.exit(f"bench/lens.py: error: the text has only {len(ids)} tokens")
    x = torch.tensor([ids])
    s = stream(lm, ids)
    out = {"model": a.model, "tokens": len(ids), "layers": lm.n_layers, "threads": torch.get_num_threads(),
           "model_load_s": load_s, "target_s": TARGET_S}
    with torch.inference_mode():
        out["bare_forward_s"] = timed(lambda: lm.model(input_ids=x), a.repeats)
    out["stream_s"] = timed(lambda: stream(lm, ids), a.repeats)
    out["lens_over_stream_s"] = timed(lambda: lens_of(lm, s), a.repeats)
    out["logit_lens_s"] = timed(lambda: lens(lm, ids), a.repeats)
    out["logit_lens_one_position_s"] = timed(lambda: lens(lm, ids, positions=[-1]), a.repeats)  # `neuroboard lens`
    V, d = lm.model.get_output_embeddings().weight.shape
    out["unembed_gflop"] = 2 * lm.n_layers * len(ids) * d * V / 1e9
    t = torch.randn(len(ids) * lm.n_layers, d)
    w = lm.model.get_output_embeddings().weight
    out["matmul_gflops"] = out["unembed_gflop"] / timed(lambda: t @ w.T, a.repeats)  # this machine's rate
    out["residual_geometry_s"] = timed(lambda: residual_geometry(s), a.repeats)
    out["ratio_vs_target"] = out["logit_lens_s"] / TARGET_S
    out["ratio_vs_forward"] = out["logit_lens_s"] / out["bare_forward_s"]
    out["meets"] = out["logit_lens_s"] <= TARGET_S
    out["meets_one_position"] = out["logit_lens_one_position_s"] <= TARGET_S
    print(json.dumps(out) if a.json else json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
