"""The TopK SAE / transcoder trainer: its parameters and one optimisation step, the method of Gao et al. (2024) as
sparsify runs it.

    pre = (x − b_dec) W_enc + b_enc        (a transcoder does not subtract b_dec)
    f   = ReLU(top-k(pre))                 k latents per token
    ŷ   = f W_dec + b_dec                  decoded sparsely (embedding_bag over the k latents)
    loss = FVU + auxk_alpha · AuxK         FVU = Σ‖y − ŷ‖² / Σ‖y − ȳ‖² over the batch
    AuxK = min(n_dead / k_aux, 1) · Σ‖e − ê‖² / Σ‖y − ȳ‖², e = y − ŷ (no gradient), ê = the error's reconstruction
           from the top k_aux = d_out/2 ReLU'd pre-activations of dead latents only (no b_dec: it models the error)

Decoder rows are unit norm at init and after every step, and the gradient's component parallel to each row is
removed before the step. W_enc starts as W_decᵀ; b_dec starts at the mean of y over the first buffer (a transcoder's
b_enc at −mean(x) W_enc, as sparsify). Adam with lr 2e-4/√(latents/2^14) unless given, linear warm-up over the first
5% of steps and linear decay to 0 (sparsify's Adam schedule). A latent is dead when it has not fired in the last
`dead_tokens` training tokens.

Why AuxK is on by default (1/32, Gao et al.'s value) while sparsify now defaults to 0: runs here are short (hundreds
of thousands of tokens, not billions), too short for dead latents to recover by themselves; AuxK gives them a
gradient. `--auxk-alpha 0` turns it off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from core.errors import UserError
from core.saes.sae import SAE


@dataclass(kw_only=True)
class TrainSettings:
    """What every TopK training run takes (train-sae and train-transcoders add their own fields); a docstring per
    field, as each is a flag of both commands."""

    corpus: str = "demo"
    """'demo', a .txt/.jsonl/.csv/.parquet file, or a Hugging Face dataset name."""
    tokens: int = 1_000_000
    """Training tokens (the corpus is read again, reshuffled, when it has fewer)."""
    latents: int = 0
    """Width (0: --expansion × the input's width; 512 factors for a semi-NMF)."""
    expansion: int = 8
    """Width as a multiple of the input's width when --latents is 0."""
    k: int = 32
    """Active latents per token."""
    lr: float | None = None
    """Adam learning rate (default 2e-4 / sqrt(latents / 2^14))."""
    auxk_alpha: float = 1 / 32
    """AuxK loss coefficient for dead latents (0: off)."""
    dead_tokens: int = 0
    """A latent is dead after this many training tokens without firing (0: a quarter of --tokens, at most 10M)."""
    batch: int = 4096
    """Tokens per training step."""
    context_len: int = 128
    """Window length of the corpus."""
    model_batch_tokens: int = 4096
    """Padded tokens per model pass."""
    eval_tokens: int = 16_384
    """Held-out tokens for the quality numbers (at most)."""
    seed: int = 0
    """Seed of the initialisation and the shuffles."""
    threads: int | None = None
    """torch threads (default: torch's choice)."""
    device: str = "cpu"
    """Where the model runs and the training happens: cpu, cuda, cuda:N or mps."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """The model's weights (training runs in float32 on float32 copies of the activations)."""
    trust_remote_code: bool = False
    """Allow a hub model's own Python code to run."""


def check_settings(cfg) -> None:
    """TrainError (one line) for settings no run trains with; `cfg` a TrainSettings with a buffer_tokens field."""
    if cfg.tokens < 1:
        raise TrainError("--tokens must be positive")
    if cfg.k < 1 or cfg.batch < 1 or cfg.buffer_tokens < 2 * cfg.batch:
        raise TrainError("--k and --batch must be positive and --buffer-tokens at least twice --batch")
    if cfg.latents < 0 or cfg.expansion < 1:
        raise TrainError("--latents must be >= 0 and --expansion >= 1")
    if cfg.auxk_alpha < 0 or (cfg.lr is not None and cfg.lr <= 0):
        raise TrainError("--auxk-alpha must be >= 0 and --lr positive")


class TrainError(UserError):
    """Bad training input; one line."""


@dataclass
class Step:
    tokens: int
    target: int
    fvu: float
    l0: float
    dead_frac: float
    elapsed_s: float


def default_lr(latents: int) -> float:
    return 2e-4 / math.sqrt(latents / 2 ** 14)


class PickPre(torch.autograd.Function):
    """Pre-activations at chosen latents (vals (N, j) at idx (N, j), computed outside autograd from the dense
    x_in W_enc + b_enc) with sparse gradients: only the N·j chosen entries reach W_enc, b_enc and x_in, never a
    dense (N, latents) gradient or a second dense matmul."""

    @staticmethod
    def forward(ctx, x_in, W_enc, b_enc, idx, vals):  # x_in (N, d_in), W_enc (d_in, M), b_enc (M,), idx/vals (N, j)
        ctx.save_for_backward(x_in, W_enc, idx)
        return vals.clone()

    @staticmethod
    def backward(ctx, g):  # g (N, j)
        x_in, W_enc, idx = ctx.saved_tensors
        N, M = x_in.shape[0], W_enc.shape[1]
        flat_idx, flat_g = idx.reshape(-1), g.reshape(-1).contiguous()
        rows = torch.arange(N, device=idx.device).repeat_interleave(idx.shape[1])
        G_t = torch.sparse_coo_tensor(torch.stack([flat_idx, rows]), flat_g, (M, N))  # (M, N) sparse
        grad_W = torch.sparse.mm(G_t, x_in).T if ctx.needs_input_grad[1] else None  # (d_in, M)
        grad_b = torch.zeros(M, device=g.device).index_add_(0, flat_idx, flat_g) if ctx.needs_input_grad[2] else None
        grad_x = F.embedding_bag(idx, W_enc.T, per_sample_weights=g, mode="sum") if ctx.needs_input_grad[0] else None
        return grad_x, grad_W, grad_b, None, None


class TopKTrainer:
    """The parameters and one optimisation step; `sae()` is the SAE as trained so far."""

    def __init__(self, d_in: int, d_out: int, latents: int, k: int, transcoder: bool, lr: float, auxk_alpha: float,
                 dead_tokens: int, total_steps: int, seed: int = 0, device: str | torch.device = "cpu") -> None:
        if k > latents:
            raise TrainError(f"--k {k} is more than the SAE's {latents} latents")
        g = torch.Generator().manual_seed(seed)  # drawn on the CPU: the same start on any device
        W_dec = torch.randn(latents, d_out, generator=g)
        W_dec /= W_dec.norm(dim=-1, keepdim=True)
        W_enc = W_dec.T.clone() if d_in == d_out else torch.randn(d_in, latents, generator=g) / math.sqrt(d_in)
        self.device = torch.device(device)
        self.W_enc = W_enc.to(self.device).requires_grad_()  # (d_in, latents)
        self.W_dec = W_dec.to(self.device).requires_grad_()  # (latents, d_out)
        self.b_enc = torch.zeros(latents, device=self.device, requires_grad=True)
        self.b_dec = torch.zeros(d_out, device=self.device, requires_grad=True)
        self.k, self.transcoder, self.alpha, self.dead_tokens = k, transcoder, auxk_alpha, dead_tokens
        self.since = torch.zeros(latents, dtype=torch.long, device=self.device)  # tokens since each last fired
        self.opt = torch.optim.Adam([self.W_enc, self.b_enc, self.W_dec, self.b_dec], lr=lr)
        warm = max(1, total_steps // 20)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min((s + 1) / warm, max(0.0, (total_steps - s) / max(1, total_steps - warm))))
        self.started = False

    def start(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """b_dec at the mean of y (and a transcoder's b_enc at −mean(x) W_enc), from the first buffer."""
        x, y = x.to(self.device), y.to(self.device)
        with torch.no_grad():
            self.b_dec.copy_(y.mean(0))
            if self.transcoder:
                self.b_enc.copy_(-(x.mean(0) @ self.W_enc))
        self.started = True

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
        """One Adam step on a batch x (B, d_in) -> y (B, d_out); returns (FVU, L0, dead share) of the batch."""
        x, y = x.to(self.device), y.to(self.device)
        x_in = x if self.transcoder else x - self.b_dec  # (B, d_in)
        with torch.no_grad():
            pre = torch.addmm(self.b_enc, x_in, self.W_enc)  # (B, latents), the one dense product
        vals, idx = pre.topk(self.k, dim=-1, sorted=False)  # (B, k)
        vals = PickPre.apply(x_in, self.W_enc, self.b_enc, idx, vals).relu()
        y_hat = F.embedding_bag(idx, self.W_dec, per_sample_weights=vals, mode="sum") + self.b_dec  # (B, d_out)
        e = y - y_hat
        total = ((y - y.mean(0)) ** 2).sum()
        fvu = (e ** 2).sum() / total
        dead = self.since > self.dead_tokens
        loss = fvu
        n_dead = int(dead.sum())
        if self.alpha and n_dead:
            k_aux = min(y.shape[1] // 2, n_dead)
            av, ai = pre.masked_fill(~dead, -math.inf).topk(k_aux, dim=-1, sorted=False)  # (B, k_aux)
            av = PickPre.apply(x_in, self.W_enc, self.b_enc, ai, av).relu()
            e_hat = F.embedding_bag(ai, self.W_dec, per_sample_weights=av, mode="sum")  # (B, d_out)
            aux = min(n_dead / k_aux, 1.0) * ((e.detach() - e_hat) ** 2).sum() / total
            loss = loss + self.alpha * aux
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            g, w = self.W_dec.grad, self.W_dec
            g -= (g * w).sum(-1, keepdim=True) * w  # no change along each (unit) row
        self.opt.step()
        self.sched.step()
        with torch.no_grad():
            self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True)
            fired = torch.zeros_like(self.since, dtype=torch.bool)
            fired[idx[vals > 0]] = True
            self.since += len(x)
            self.since[fired] = 0
        return float(fvu.detach()), float((vals > 0).sum()) / len(x), n_dead / len(self.since)

    def sae(self, **kw) -> SAE:
        W_enc, b_enc, W_dec, b_dec = (t.detach().cpu().clone() for t in (self.W_enc, self.b_enc, self.W_dec, self.b_dec))
        return SAE(W_enc, b_enc, W_dec, b_dec, activation="topk", k=self.k, b_dec_in=not self.transcoder, **kw)
