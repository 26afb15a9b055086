"""`neuroboard train-sae`: TrainSAEConfig, its checks, the activations fed to the trainer, held-out quality, saving.

Methods: a TopK SAE or transcoder (core.saes.trainer.TopKTrainer, the method of Gao et al. as sparsify runs it) or a
semi-NMF of one site's activations (core.saes.snmf). Activations stream from the model through a shuffling buffer
(core.saes.acts.ShuffleBuffer, `buffer_tokens` rows: 65,536 × d_in floats, 151 MB for smollm2's 576-wide residual
stream), or are read from an activation cache (`--acts`); the model stays in evaluation mode under inference_mode.
Quality is measured at the end on held-out windows (core.saes.quality).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch

from core.model.load import load_model
from core.saes import acts
from core.saes.quality import evaluate
from core.saes.sae import SAE, SAEError, check_for_model, site_width
from core.saes.trainer import Step, TopKTrainer, TrainError, TrainSettings, check_settings, default_lr


@dataclass(kw_only=True)
class TrainSAEConfig(TrainSettings):
    model: str
    """Built-in name, .gguf file, model folder or hub id."""
    site: str
    """Input site (resid_post.6, blocks.6.hook_resid_post, layers.6, mlp_in.6, z.3, ...)."""
    out: str
    """Folder the SAE is written to."""
    transcode: bool = False
    """Train a transcoder: read --site, predict --out-site (default: the MLP's output for mlp_in.L, the block's
    output for resid_pre.L)."""
    out_site: str | None = None
    """A transcoder's output site."""
    acts: str = ""
    """Train from an activation cache written by `extract --capture` (no model passes for training; the held-out
    windows still run through the model for CE recovered)."""
    method: Literal["topk", "snmf"] = "topk"
    """topk: a TopK SAE or transcoder; snmf: a semi-nonnegative matrix factorisation of the site's activations
    (meant for a layer's MLP activations, --site neurons.L; core.saes.snmf), full batch over --tokens tokens held in
    memory (tokens × d_in × 4 bytes)."""
    snmf_sparsity: float = 0.05
    """semi-NMF: the share of the site's units (neurons) each factor keeps (winner-take-all; 1: dense)."""
    snmf_iters: int = 100
    """semi-NMF: alternating iterations (each a least-squares F step and a multiplicative G step)."""
    buffer_tokens: int = 65_536
    """Rows in the shuffling buffer (bounds memory)."""
    format: Literal["saelens", "sparsify"] = "saelens"
    """File format written to --out."""


def out_site_for(site: str, transcode: bool, out_site: str | None) -> str | None:
    from core.model.sites import Site

    if not transcode:
        return None
    if out_site:
        return str(Site.parse(out_site))
    s = Site.parse(site)
    kind = {"mlp_in": "mlp_out", "resid_pre": "resid_post"}.get(s.kind)
    if kind is None:
        raise TrainError(f"--transcode from {s}: give --out-site (defaults exist for mlp_in.L and resid_pre.L)")
    return f"{kind}.{s.layer}"


def check(cfg: TrainSAEConfig) -> None:
    check_settings(cfg)
    if cfg.method == "snmf":
        if cfg.transcode:
            raise TrainError("--method snmf factorises one site's activations; it cannot --transcode")
        if cfg.format != "saelens":
            raise TrainError("--method snmf is saved in SAELens's layout (architecture snmf); sparsify has no "
                             "such format")
        if not 0 < cfg.snmf_sparsity <= 1 or cfg.snmf_iters < 1:
            raise TrainError("--snmf-sparsity must be in (0, 1] and --snmf-iters positive")


def train_sae(cfg: TrainSAEConfig, *, lm=None, on_step: Callable[[Step], None] | None = None) -> dict:
    """Train, measure quality on held-out tokens, save; returns the report (what `train-sae --json` prints)."""
    check(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out_site = out_site_for(cfg.site, cfg.transcode, cfg.out_site)
    lm = lm or load_model(cfg.model, trust_remote_code=cfg.trust_remote_code, dtype=cfg.dtype, device=cfg.device)
    from core.model.sites import Site

    s_in = Site.parse(cfg.site)
    d_in = site_width(s_in, lm)
    s_out = Site.parse(out_site) if out_site else s_in
    d_out = site_width(s_out, lm)
    latents = cfg.latents or (512 if cfg.method == "snmf" else cfg.expansion * d_in)
    if cfg.method == "topk" and cfg.k > latents:
        raise TrainError(f"--k {cfg.k} is more than the SAE's {latents} latents")
    probe = SAE(torch.zeros(d_in, 1), torch.zeros(1), torch.zeros(1, d_out), torch.zeros(d_out), b_dec_in=False,
                site=str(s_in), out_site=out_site)
    s_in, s_out = check_for_model(probe, lm)
    if cfg.acts:
        info = acts.cache_info(cfg.acts)
        if info is None:
            raise TrainError(f"--acts {cfg.acts}: no complete activation cache there (extract --capture writes one)")
        if info["site"] != str(s_in) or cfg.transcode:
            raise TrainError(f"--acts {cfg.acts} caches {info['site']}, not {s_in} (and transcoders need two sites)")
        corpus, context_len = info["corpus"], int(info["context_len"])
    else:
        corpus, context_len = cfg.corpus, cfg.context_len
    split = acts.split_corpus(corpus, lm.tokenizer, context_len=context_len,
                              max_tokens=None if cfg.acts else
                              cfg.tokens + cfg.tokens // (acts.HOLDOUT_EVERY - 1) + cfg.eval_tokens * 2)
    if not split.held_out or (not split.train and not cfg.acts):
        raise TrainError(f"corpus {corpus!r} is too small to hold out windows (it has "
                         f"{split.train_tokens() + split.held_out_tokens()} tokens)")
    if cfg.method == "snmf":
        return _train_snmf(cfg, lm, split, s_in, d_in, latents, on_step)
    steps = max(1, cfg.tokens // cfg.batch)
    dead_tokens = cfg.dead_tokens or min(10_000_000, max(cfg.batch, cfg.tokens // 4))
    lr = cfg.lr or default_lr(latents)
    tr = TopKTrainer(d_in, d_out, latents, cfg.k, cfg.transcode, lr, cfg.auxk_alpha, dead_tokens, steps, cfg.seed,
                     device=lm.device)
    target = steps * cfg.batch
    batches = _cached_batches(cfg, tr, target) if cfg.acts else _streamed_batches(cfg, lm, tr, split, s_in, s_out,
                                                                                  d_in, d_out, target)
    t0, done, last = time.monotonic(), 0, (float("nan"), 0.0, 0.0)
    for x, y in batches:
        last = tr.step(x, y)
        done += len(x)
        if on_step:
            on_step(Step(done, target, *last, time.monotonic() - t0))
    train_s = time.monotonic() - t0
    sae = tr.sae(site=str(s_in), out_site=out_site, model=lm.name)
    held = acts.take_windows(split.held_out, cfg.eval_tokens)
    dens: dict = {}
    q = evaluate(sae, lm, held, s_in, s_out, density=dens)
    sae.density = dens["density"]
    report = {"out": cfg.out, "model": lm.name, "site": str(s_in), "out_site": out_site, "method": "topk",
              "latents": latents, "k": cfg.k, "tokens": done, "train_s": round(train_s, 1),
              "tokens_per_s": round(done / train_s, 1), "train_fvu_last": last[0], "lr": lr,
              "auxk_alpha": cfg.auxk_alpha, "dead_tokens": dead_tokens, "buffer_tokens": cfg.buffer_tokens,
              "buffer_mb": round(cfg.buffer_tokens * (d_in + (d_out if cfg.transcode else 0)) * 4 / 2 ** 20, 1),
              "source": f"activation cache {cfg.acts}" if cfg.acts else "streamed from the model",
              "held_out_tokens": q.tokens, "quality": q.as_dict(), "format": cfg.format}
    sae.meta = {"neuroboard": {"trained": {k: v for k, v in asdict(cfg).items() if k not in ("out",)},
                               "quality": q.as_dict(), "tokens": done}}
    save(sae, cfg.out, cfg.format, report)
    return report


def _train_snmf(cfg: TrainSAEConfig, lm, split, s_in, d_in: int, latents: int,
                on_step: Callable[[Step], None] | None) -> dict:
    """Semi-NMF: gather --tokens training rows, factorise them (core.saes.snmf.fit), measure and save as an SAE whose
    encoding is non-negative least squares."""
    from core.saes import snmf

    X = _rows(cfg, lm, split, s_in, d_in)  # (n, d_in)
    if len(X) < latents:
        raise TrainError(f"--method snmf with {latents} factors needs at least as many training tokens "
                         f"(got {len(X)})")
    t0 = time.monotonic()

    def progress(it: int, fvu: float, l0: float, dead: float) -> None:
        if on_step:
            on_step(Step(it, cfg.snmf_iters, fvu, l0, dead, time.monotonic() - t0))

    fit = snmf.fit(X, latents, sparsity=cfg.snmf_sparsity, iters=cfg.snmf_iters, seed=cfg.seed, on_iter=progress)
    train_s = time.monotonic() - t0
    sae = SAE(fit.F.T.clone(), torch.zeros(latents), fit.F, torch.zeros(d_in), activation="nnls", b_dec_in=False,
              site=str(s_in), model=lm.name)
    dens: dict = {}
    q = evaluate(sae, lm, acts.take_windows(split.held_out, cfg.eval_tokens), s_in, s_in, density=dens)
    sae.density = dens["density"]
    report = {"out": cfg.out, "model": lm.name, "site": str(s_in), "out_site": None, "method": "snmf",
              "latents": latents, "k": None, "tokens": len(X), "train_s": round(train_s, 1),
              "tokens_per_s": round(len(X) * cfg.snmf_iters / train_s, 1), "train_fvu_last": fit.fvu[-1],
              "snmf_sparsity": cfg.snmf_sparsity, "neurons_per_factor": int((fit.F[0] != 0).sum()),
              "snmf_iters": cfg.snmf_iters, "rows_mb": round(X.numel() * 4 / 2 ** 20, 1),
              "source": f"activation cache {cfg.acts}" if cfg.acts else "streamed from the model",
              "held_out_tokens": q.tokens, "quality": q.as_dict(), "format": cfg.format}
    sae.meta = {"neuroboard": {"trained": {k: v for k, v in asdict(cfg).items() if k not in ("out",)},
                               "method": "snmf", "quality": q.as_dict(), "tokens": len(X)}}
    save(sae, cfg.out, cfg.format, report)
    return report


def _rows(cfg: TrainSAEConfig, lm, split, s_in, d_in: int) -> torch.Tensor:
    """The first --tokens training rows at s_in (float32): from the activation cache, or streamed from the model."""
    if cfg.acts:
        X, _ = acts.load_cache(cfg.acts)
        return X[torch.randperm(len(X), generator=torch.Generator().manual_seed(cfg.seed))[: cfg.tokens]]
    out, n = torch.empty(cfg.tokens, d_in), 0
    order = list(split.train)
    random.Random(cfg.seed).shuffle(order)
    for got in acts.site_batches(lm, order, [s_in], batch_tokens=cfg.model_batch_tokens):
        take = min(len(got[0]), cfg.tokens - n)
        out[n: n + take] = got[0][:take]
        n += take
        if n >= cfg.tokens:
            break
    return out[:n]


def _cached_batches(cfg: TrainSAEConfig, tr: TopKTrainer, target: int):
    """Batches from an activation cache: its training rows, reshuffled each epoch."""
    X, _ = acts.load_cache(cfg.acts)  # (n, d) float32
    if len(X) < cfg.batch:
        raise TrainError(f"--acts {cfg.acts} holds {len(X)} training rows, fewer than --batch {cfg.batch}")
    tr.start(X[: cfg.buffer_tokens], X[: cfg.buffer_tokens])
    g, done = torch.Generator().manual_seed(cfg.seed), 0
    while done < target:
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X) - cfg.batch + 1, cfg.batch):
            if done >= target:
                return
            x = X[perm[i: i + cfg.batch]]
            yield x, x
            done += cfg.batch


def _streamed_batches(cfg: TrainSAEConfig, lm, tr: TopKTrainer, split, s_in, s_out, d_in: int, d_out: int,
                      target: int):
    """Batches streamed from the model through the shuffling buffer."""
    buf = acts.ShuffleBuffer(cfg.buffer_tokens, d_in, d_out if cfg.transcode else 0, cfg.seed)
    sites = [s_in, s_out] if cfg.transcode else [s_in]
    windows, done = acts.epochs(split.train, cfg.seed), 0
    while done < target:
        chunk = acts.next_windows(windows, cfg.model_batch_tokens * 4)  # a few model batches at a time
        for got in acts.site_batches(lm, chunk, sites, batch_tokens=cfg.model_batch_tokens):
            x_rows, y_rows = got[0], (got[1] if cfg.transcode else None)
            while len(x_rows) and done < target:
                took = buf.add(x_rows, y_rows)
                x_rows, y_rows = x_rows[took:], None if y_rows is None else y_rows[took:]
                if not buf.full:
                    break
                if not tr.started:
                    tr.start(buf.x[: buf.n], buf.x[: buf.n] if buf.y is None else buf.y[: buf.n])
                for x, y in list(buf.drain(cfg.batch)):  # the buffer is compacted once the batches are taken
                    if done >= target:
                        return
                    yield x, x if y is None else y
                    done += len(x)


def save(sae: SAE, out: str, fmt: str, report: dict) -> Path:
    from core.saes.formats import save_saelens, save_sparsify

    try:
        folder = save_saelens(sae, out) if fmt == "saelens" else save_sparsify(sae, out)
    except OSError as e:
        raise SAEError(f"cannot write {out}: {e.strerror or e}") from None
    (Path(folder) / "quality.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return Path(folder)
