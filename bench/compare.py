"""Comparing models: CKA of every block pair of two models over the same prompts (core.geometry.cka).

    .venv/bin/python bench/compare.py --json [--a smollm2-135m] [--b gemma3-270m] [--prompts 256]

Times the representations of each model (one pass over the prompts, every block's output at the last token), then
the CKA of all L_A × L_B block pairs from those cached representations, debiased and linear (median of 5), against a
loop computing each pair on its own with the feature-space formula, as a ratio. Target: all pairs <= 10 s once the
representations are cached. One JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET_S = 10.0


def median_time(fn, repeats: int = 5) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def pair_loop(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Linear CKA one pair at a time: ‖Yᶜᵀ Xᶜ‖²_F / (‖Xᶜᵀ Xᶜ‖_F ‖Yᶜᵀ Yᶜ‖_F) (the plain route)."""
    out = np.zeros((len(A), len(B)))
    for i, X in enumerate(A):
        Xc = X.astype(np.float64) - X.mean(0)
        for j, Y in enumerate(B):
            Yc = Y.astype(np.float64) - Y.mean(0)
            out[i, j] = np.linalg.norm(Yc.T @ Xc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", default="smollm2-135m")
    ap.add_argument("--b", default="gemma3-270m")
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from core.data.prompt_sets import layer_representations, load_prompt_set
    from core.geometry.cka import cka_matrix
    from core.model.load import load_model

    texts = (load_prompt_set("sentiment").texts + load_prompt_set("truth").texts)[: args.prompts]
    out: dict = {"a": args.a, "b": args.b, "prompts": len(texts), "target_s": TARGET_S}
    reps = []
    for key, name in (("a", args.a), ("b", args.b)):
        lm = load_model(name)
        t = time.perf_counter()
        reps.append(layer_representations(lm, texts))
        out[f"reps_{key}_s"] = round(time.perf_counter() - t, 2)
        out[f"layers_{key}"], out[f"width_{key}"] = lm.n_layers, lm.parts.d_model
        del lm
    A, B = reps
    out["pairs"] = len(A) * len(B)
    for kind in ("debiased", "linear"):
        out[f"cka_{kind}_s"] = round(median_time(lambda kind=kind: cka_matrix(A, B, kind)), 4)
    t = time.perf_counter()
    loop = pair_loop(A, B)
    out["pair_loop_s"] = round(time.perf_counter() - t, 3)
    out["speedup_vs_loop"] = round(out["pair_loop_s"] / out["cka_linear_s"], 1)
    out["max_abs_diff_vs_loop"] = float(np.abs(cka_matrix(A, B, "linear") - loop).max())
    m = cka_matrix(A, B, "debiased")
    out["best_match_debiased"] = [int(j) for j in np.nanargmax(m, axis=1)]
    out["meets"] = out["cka_debiased_s"] <= TARGET_S and out["cka_linear_s"] <= TARGET_S
    print(json.dumps(out, separators=(",", ":")) if args.json else json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
