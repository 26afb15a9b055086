"""Train a transcoder set: one TopK transcoder per chosen layer (mlp_in.L -> mlp_out.L), every layer from the same
forward passes, as sparsify trains many layers at once.

Each model batch runs the model once, stopping after the last chosen layer, reading every chosen layer's mlp_in and
mlp_out through core.model.intervene edits (core.saes.acts.site_batches), and its rows feed one shuffling buffer
shared by all layers: a row is one token, holding that token's input and output at every chosen layer side by side,
so one permutation draws the same tokens for every layer. Each layer's trainer is core.saes.trainer.TopKTrainer (the
method of Gao et al. as sparsify runs it) with train-sae's defaults, seed and data order: layer L of a set equals
`train-sae --site mlp_in.L --transcode` with the same settings, bit for bit (tested).

Memory (float32):
    buffer    buffer_tokens × n_layers × (d_in + d_out) × 4 bytes, plus half of that while it is compacted;
              e.g. 8,192 × 30 × (576 + 576) × 4 = 1.13 GB for smollm2 at all 30 layers (the default --buffer-tokens)
    trainers  n_layers × 2 × d_model × latents × 4 bytes × 4 (weights, gradients, Adam's two moments), e.g.
              30 × 2 × 576 × 4,608 × 16 = 2.5 GB for smollm2 at all layers, 8× expansion; plus one batch's dense
              pre-activations, batch × latents × 4 bytes (75 MB), at a time
    model     its weights and one model batch's activations up to the last chosen layer
The set is saved in circuit-tracer's format (core.saes.transcoders) with quality.json beside it: the per-layer and
replacement-model numbers of core.saes.set_quality on held-out windows (every 16th, never trained on).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from core.model.load import load_model
from core.model.sites import Site
from core.saes import acts
from core.saes.set_quality import evaluate_set
from core.saes.trainer import Step, TopKTrainer, TrainError, TrainSettings, check_settings, default_lr
from core.saes.transcoders import TranscoderSet, is_transcoder_set, save_transcoder_set
from core.units.config import parse_layers


@dataclass(kw_only=True)
class TrainTranscodersConfig(TrainSettings):
    model: str
    """Built-in name, .gguf file, model folder or hub id."""
    out: str
    """Folder the transcoder set is written to (circuit-tracer's format: config.yaml + layer_L.safetensors)."""
    layers: str = "all"
    """Layers to train a transcoder for: all | 5 | 0-3,7."""
    buffer_tokens: int = 8192
    """Rows in the shared shuffling buffer: buffer_tokens × n_layers × (d_in + d_out) × 4 bytes (1.1 GB for
    smollm2 at all 30 layers)."""


def check(cfg: TrainTranscodersConfig) -> None:
    check_settings(cfg)
    out = Path(cfg.out).expanduser()
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or is_transcoder_set(out))):
        raise TrainError(f"--out {out} exists and is not a transcoder set folder; give a new one")


def shared_batches(cfg: TrainTranscodersConfig, lm, windows: Iterator, layers: list[int], d_in: int, d_out: int,
                   target: int, start: Callable[[torch.Tensor, torch.Tensor], None]
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches (x (B, n, d_in), y (B, n, d_out)) over n = len(layers), the same tokens at every layer, through one
    shuffling buffer; `start(x, y)` sees the first full buffer. Each model batch is one forward pass."""
    n = len(layers)
    buf = acts.ShuffleBuffer(cfg.buffer_tokens, n * d_in, n * d_out, cfg.seed)  # rows: [x_L for L] | [y_L for L]
    sites = [s for L in layers for s in (Site("mlp_in", L), Site("mlp_out", L))]
    done, started = 0, False
    while done < target:
        chunk = acts.next_windows(windows, cfg.model_batch_tokens * 4)  # a few model batches at a time
        for got in acts.site_batches(lm, chunk, sites, batch_tokens=cfg.model_batch_tokens):
            x_rows, y_rows = torch.cat(got[0::2], 1), torch.cat(got[1::2], 1)  # (m, n·d_in), (m, n·d_out)
            while len(x_rows) and done < target:
                took = buf.add(x_rows, y_rows)
                x_rows, y_rows = x_rows[took:], y_rows[took:]
                if not buf.full:
                    break
                if not started:
                    start(buf.x[: buf.n].view(-1, n, d_in), buf.y[: buf.n].view(-1, n, d_out))
                    started = True
                for x, y in list(buf.drain(cfg.batch)):  # the buffer is compacted once the batches are taken
                    if done >= target:
                        return
                    yield x.view(-1, n, d_in), y.view(-1, n, d_out)
                    done += len(x)


def train_transcoders(cfg: TrainTranscodersConfig, *, lm=None, on_step: Callable[[Step], None] | None = None) -> dict:
    """Train every chosen layer's transcoder from shared forward passes, measure, save; returns the report (what
    `train-transcoders --json` prints, also saved as quality.json in the set's folder)."""
    check(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    lm = lm or load_model(cfg.model, trust_remote_code=cfg.trust_remote_code, dtype=cfg.dtype, device=cfg.device)
    layers = parse_layers(cfg.layers, lm.n_layers)
    d = lm.parts.d_model
    latents = cfg.latents or cfg.expansion * d
    if cfg.k > latents:
        raise TrainError(f"--k {cfg.k} is more than the transcoders' {latents} latents")
    split = acts.split_corpus(cfg.corpus, lm.tokenizer, context_len=cfg.context_len,
                              max_tokens=cfg.tokens + cfg.tokens // (acts.HOLDOUT_EVERY - 1) + cfg.eval_tokens * 2)
    if not split.held_out or not split.train:
        raise TrainError(f"corpus {cfg.corpus!r} is too small to hold out windows (it has "
                         f"{split.train_tokens() + split.held_out_tokens()} tokens)")
    steps = max(1, cfg.tokens // cfg.batch)
    dead_tokens = cfg.dead_tokens or min(10_000_000, max(cfg.batch, cfg.tokens // 4))
    lr = cfg.lr or default_lr(latents)
    trainers = [TopKTrainer(d, d, latents, cfg.k, True, lr, cfg.auxk_alpha, dead_tokens, steps, cfg.seed,
                            device=lm.device) for _ in layers]

    def start(x: torch.Tensor, y: torch.Tensor) -> None:  # x (m, n, d_in), y (m, n, d_out)
        for i, tr in enumerate(trainers):
            tr.start(x[:, i].contiguous(), y[:, i].contiguous())

    target = steps * cfg.batch
    t0, done, last = time.monotonic(), 0, []
    for x, y in shared_batches(cfg, lm, acts.epochs(split.train, cfg.seed), layers, d, d, target, start):
        last = [tr.step(x[:, i].contiguous(), y[:, i].contiguous()) for i, tr in enumerate(trainers)]
        done += len(x)
        if on_step:
            on_step(Step(done, target, *(sum(v) / len(v) for v in zip(*last, strict=True)), time.monotonic() - t0))
    train_s = time.monotonic() - t0
    ts = TranscoderSet([tr.sae(site=f"mlp_in.{L}", out_site=f"mlp_out.{L}", model=lm.name)
                        for L, tr in zip(layers, trainers, strict=True)], layers,
                       output_hook="hook_mlp_out" if lm.parts.norms(layers[0]).post_mlp is not None else "mlp.hook_out",
                       scan=Path(cfg.out).name, model=lm.name)
    q = evaluate_set(ts, lm, acts.take_windows(split.held_out, cfg.eval_tokens))
    report = {"out": cfg.out, "model": lm.name, "layers": layers, "latents": latents, "k": cfg.k, "tokens": done,
              "train_s": round(train_s, 1), "tokens_per_s": round(done / train_s, 1) if train_s else None,
              "train_fvu_last": {str(L): s[0] for L, s in zip(layers, last, strict=False)}, "lr": lr,
              "auxk_alpha": cfg.auxk_alpha, "dead_tokens": dead_tokens, "buffer_tokens": cfg.buffer_tokens,
              "buffer_mb": round(cfg.buffer_tokens * len(layers) * 2 * d * 4 / 2 ** 20, 1),
              "held_out_tokens": q.tokens, "quality": q.as_dict(), "format": "circuit-tracer transcoder_set",
              "trained": {k: v for k, v in asdict(cfg).items() if k != "out"}}
    save_transcoder_set(ts, cfg.out, extra={"quality.json": json.dumps(report, indent=2)})
    return report
