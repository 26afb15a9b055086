"""A transcoder set's quality on held-out tokens: each layer's transcoder alone, and the replacement model.

Per layer L (on the clean pass: the transcoder reads the model's own mlp_in.L):
    FVU        Σ‖y − ŷ‖² / Σ‖y − μ‖² of the MLP output y = mlp_out.L, μ its held-out mean, sums in float64
    L0         mean number of non-zero latents per token
    dead_frac  share of latents that never fire on the held-out tokens (and counts with density < 1e-5, < 1e-6)
The replacement model: EVERY layer of the set has its MLP output replaced at once by its transcoder's output, each
transcoder reading the MLP input of that same replaced pass (errors compound through the layers, as in a replacement
model), edits at mlp_out.L through core.model.intervene:
    CE recovered  (CE_zero − CE_repl) / (CE_zero − CE_clean), the baseline CE_zero with every set layer's MLP output
                  zeroed at once
    KL            mean over tokens of KL(p_clean ‖ p_repl), nats
Special tokens (BOS/EOS) and padding keep the model's own MLP output in every pass and count no loss: no loss is
counted for predicting from or to them (as core.saes.quality does for one SAE). Memory: one model batch's logits
three times (clean, replaced, zeroed) plus each layer's (n, d) inputs and outputs of the batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from core.data.corpus import Window, batches
from core.model.intervene import store
from core.model.run import logits, pad_batch
from core.model.sites import Site
from core.saes.acts import counted_mask, flat
from core.saes.quality import Accumulator, ce_recovered, token_losses
from core.saes.transcoders import TranscoderSet


@dataclass
class SetQuality:
    layers: dict[int, dict]
    """Per layer: fvu, l0, dead_frac, dead, density_lt_1e5, density_lt_1e6, tokens."""
    ce_clean: float
    ce_replaced: float
    ce_zero: float
    ce_recovered: float
    kl: float
    tokens: int
    """Held-out tokens the numbers come from (special tokens excluded)."""
    pairs: int
    """Next-token predictions the CE and KL numbers average over."""

    def as_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = {str(L): v for L, v in self.layers.items()}
        return d


def _replace(tc, inputs: dict, layer: int, keep: torch.Tensor):
    """Edit at mlp_out.L: the transcoder's output from this pass's mlp_in.L at the kept positions, the MLP's own
    output elsewhere."""
    def fn(a: torch.Tensor) -> torch.Tensor:  # a (B, T, d_model)
        x = flat(inputs[layer]).float()  # (B, T, d_in) stored earlier in this same pass
        out = a.clone()
        out[keep] = tc(x[keep]).to(a.dtype)  # (n, d_out)
        return out
    return fn


def _zeroed(keep: torch.Tensor):
    def fn(a: torch.Tensor) -> torch.Tensor:
        return torch.where(keep[..., None], torch.zeros((), dtype=a.dtype, device=a.device), a)
    return fn


class _Sums:
    """CE and KL sums over a run, in float64."""

    def __init__(self) -> None:
        self.clean = self.repl = self.zero = self.kl = 0.0
        self.pairs = 0

    def add(self, ids, pair, clean, repl, zero) -> None:
        loss_c, lp_c = token_losses(clean, ids, pair)
        loss_r, lp_r = token_losses(repl, ids, pair)
        loss_z, _ = token_losses(zero, ids, pair)
        self.clean += float(loss_c.double().sum())
        self.repl += float(loss_r.double().sum())
        self.zero += float(loss_z.double().sum())
        self.kl += float((lp_c.exp() * (lp_c - lp_r)).sum(-1).double().sum())
        self.pairs += int(pair.sum())

    def means(self) -> dict:
        n = self.pairs
        return {k: (getattr(self, k) / n if n else float("nan")) for k in ("clean", "repl", "zero", "kl")}


@torch.inference_mode()
def evaluate_set(ts: TranscoderSet, lm, windows: list[Window], *, batch_tokens: int = 2048) -> SetQuality:
    """Every number above on `windows` (held-out windows of core.saes.acts.split_corpus)."""
    special = set(lm.tokenizer.all_special_ids)
    dev = lm.device
    tcs = {L: tc.to(dev) for L, tc in ts.by_layer().items()}
    accs = {L: Accumulator(tc.d_sae, tc.d_out) for L, tc in tcs.items()}
    sums = _Sums()
    for batch in batches(windows, batch_tokens):
        ids, valid = pad_batch([w.ids for w in batch])
        keep = counted_mask(ids, valid, special)  # (B, T)
        ids, valid, keep = ids.to(dev), valid.to(dev), keep.to(dev)
        got: dict = {}
        reads = {Site("mlp_in", L): store(got, ("x", L)) for L in tcs} | \
                {Site("mlp_out", L): store(got, ("y", L)) for L in tcs}
        clean = logits(lm, ids, edits=reads, attention_mask=valid)
        for L, tc in tcs.items():
            x, y = flat(got["x", L]).float()[keep], flat(got["y", L]).float()[keep]  # (n, d)
            f, y_hat = tc.forward(x)
            accs[L].add(y, y_hat, f)
        inputs: dict = {}
        repl_edits = {Site("mlp_in", L): store(inputs, L) for L in tcs} | \
                     {Site("mlp_out", L): _replace(tc, inputs, L, keep) for L, tc in tcs.items()}
        repl = logits(lm, ids, edits=repl_edits, attention_mask=valid)
        zero = logits(lm, ids, edits={Site("mlp_out", L): _zeroed(keep) for L in tcs}, attention_mask=valid)
        sums.add(ids, keep[:, :-1] & keep[:, 1:], clean, repl, zero)
    m = sums.means()
    per_layer = {L: acc.numbers() for L, acc in accs.items()}
    tokens = next(iter(per_layer.values()))["tokens"]
    return SetQuality(per_layer, m["clean"], m["repl"], m["zero"], ce_recovered(m["clean"], m["repl"], m["zero"]),
                      m["kl"], tokens, sums.pairs)
