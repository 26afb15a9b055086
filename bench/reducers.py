"""How fast the reducers alone fold smollm2's activations on this CPU (the ceiling of CPU-side reduction).

    .venv/bin/python bench/reducers.py [--tokens 16384] [--threads 2]

Were a GPU run's activations brought back to reducers on the CPU, their rate would be a floor under its time:
10M tokens would take at least 10M / that rate (which is why `extract --device cuda` keeps its reducers on the GPU).
This runs the real extraction pass (core.units.forward.forward_chunk, all 30 layers' neurons) on the CPU and times,
inside it, only the reducers' updates; the rest is the forward pass. One JSON object goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.corpus import Corpus, iter_chunks  # noqa: E402
from core.model.load import load_model  # noqa: E402
from core.units.forward import forward_chunk  # noqa: E402
from core.units.reduce import LayerReducer, ReduceConfig  # noqa: E402


class Timed(LayerReducer):
    """A LayerReducer that adds the seconds spent in its updates to a shared counter."""

    spent = [0.0]

    def update(self, *a, **kw) -> None:
        t = time.perf_counter()
        super().update(*a, **kw)
        Timed.spent[0] += time.perf_counter() - t

    def flush(self, *a, **kw) -> None:
        t = time.perf_counter()
        super().flush(*a, **kw)
        Timed.spent[0] += time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    lm = load_model("smollm2-135m")
    chunks = list(iter_chunks(Corpus("demo").documents(), lm.tokenizer, max_tokens=a.tokens, context_len=128,
                              chunk_tokens=4096))
    reducers = {layer: Timed(lm.parts.d_mlp, layer, ReduceConfig()) for layer in range(lm.n_layers)}
    warm = chunks[0]  # the first chunk fills the top-K lists (costlier than the steady state): timed apart
    t0 = time.perf_counter()
    forward_chunk(lm, warm, reducers)
    first_wall, first_red = time.perf_counter() - t0, Timed.spent[0]
    Timed.spent[0] = 0.0
    t0, n = time.perf_counter(), 0
    for c in chunks[1:]:
        forward_chunk(lm, c, reducers)
        for r in reducers.values():
            r.flush()
        n += c.n_tokens
    wall, red = time.perf_counter() - t0, Timed.spent[0]
    rate = n / red
    print(json.dumps({"model": lm.name, "layers": lm.n_layers, "d_mlp": lm.parts.d_mlp, "threads": a.threads,
                      "steady_tokens": n, "reducers_tok_s": round(rate), "forward_tok_s_cpu": round(n / (wall - red)),
                      "reducer_share_of_cpu_extraction": round(red / wall, 3),
                      "first_chunk": {"tokens": warm.n_tokens, "reducers_tok_s": round(warm.n_tokens / first_red),
                                      "wall_s": round(first_wall, 1)},
                      "floor_minutes_for_10M_tokens_on_this_host": round(10_000_000 / rate / 60, 1),
                      "goal_minutes_on_one_h100": 5}))


if __name__ == "__main__":
    main()
