"""An SAE's quality on held-out tokens, each number defined once:

    FVU            Σ‖y − ŷ‖² / Σ‖y − μ‖², μ the held-out mean of y (not zero: SAELens #659), sums in float64
    L0             mean number of non-zero latents per token
    dead_frac      share of latents that never fire on the held-out tokens; also counts with density < 1e-5, < 1e-6
    CE recovered   (CE_zero − CE_sae) / (CE_zero − CE_clean): next-token loss with the reconstruction spliced into the
                   forward pass at the output site, against zero ablation of that site as the baseline
    KL             mean over tokens of KL(p_clean ‖ p_spliced), nats

y is the site's activation (a transcoder's output site), ŷ the (transcoder's) reconstruction, both in the model's own
units (normalisation undone: inputs and outputs are never compared at different scales, SAELens #518). Special tokens
(BOS/EOS) are excluded throughout: they are not SAE inputs, keep their original activation in the spliced and ablated
passes, and no loss is counted for predicting from or to them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from core.data.corpus import Window, batches
from core.model.intervene import store
from core.model.run import logits, pad_batch
from core.model.sites import Site
from core.saes.acts import counted_mask, flat
from core.saes.sae import SAE


@dataclass
class Quality:
    fvu: float
    l0: float
    dead_frac: float
    dead: int
    density_lt_1e5: int
    density_lt_1e6: int
    ce_clean: float
    ce_sae: float
    ce_zero: float
    ce_recovered: float
    kl: float
    tokens: int
    """Held-out tokens the numbers come from (special tokens excluded)."""

    def as_dict(self) -> dict:
        return asdict(self)


class Accumulator:
    """FVU, L0 and firing counts over batches of (y, ŷ, latents), in float64."""

    def __init__(self, d_sae: int, d_out: int) -> None:
        self.err = 0.0
        self.sum = torch.zeros(d_out, dtype=torch.float64)  # Σ y
        self.sq = 0.0  # Σ ‖y‖²
        self.fired = torch.zeros(d_sae, dtype=torch.int64)
        self.active = 0
        self.n = 0

    def add(self, y: torch.Tensor, y_hat: torch.Tensor, f: torch.Tensor) -> None:
        """y, y_hat (n, d_out); f (n, d_sae), on any device (summed on the CPU)."""
        y, y_hat, f = y.cpu(), y_hat.cpu(), f.cpu()
        y64 = y.double()
        self.err += float(((y64 - y_hat.double()) ** 2).sum())
        self.sum += y64.sum(0)
        self.sq += float((y64 ** 2).sum())
        nz = f != 0
        self.fired += nz.sum(0)
        self.active += int(nz.sum())
        self.n += len(y)

    def fvu(self) -> float:
        total = self.sq - float((self.sum ** 2).sum()) / max(self.n, 1)  # Σ‖y − μ‖²
        return self.err / total if total > 0 else float("nan")

    def numbers(self) -> dict:
        dens = self.fired.double() / max(self.n, 1)
        return {"fvu": self.fvu(), "l0": self.active / max(self.n, 1),
                "dead_frac": float((self.fired == 0).double().mean()), "dead": int((self.fired == 0).sum()),
                "density_lt_1e5": int((dens < 1e-5).sum()), "density_lt_1e6": int((dens < 1e-6).sum()),
                "tokens": self.n}


def ce_recovered(ce_clean: float, ce_sae: float, ce_zero: float) -> float:
    return (ce_zero - ce_sae) / (ce_zero - ce_clean) if ce_zero != ce_clean else float("nan")


def token_losses(lg: torch.Tensor, ids: torch.Tensor, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(next-token loss at each counted pair, log-probs there (n, V))."""
    logp = lg[:, :-1].float().log_softmax(-1)[pair]  # (n, V)
    target = ids[:, 1:][pair]  # (n,)
    return -logp.gather(1, target[:, None]).squeeze(1), logp


@torch.inference_mode()
def evaluate(sae: SAE, lm, windows: list[Window], site_in: Site, site_out: Site, *, batch_tokens: int = 2048,
             ce: bool = True, density: dict | None = None) -> Quality:
    """Every number above on `windows` (held-out windows of core.saes.acts.split_corpus); `density`, when given,
    receives each latent's firing share there ("density": (d_sae,) tensor)."""
    special = set(lm.tokenizer.all_special_ids)
    dev = lm.device
    sae = sae.to(dev)
    acc = Accumulator(sae.d_sae, sae.d_out)
    sums = {"clean": 0.0, "sae": 0.0, "zero": 0.0, "kl": 0.0}
    n_pairs = 0
    for batch in batches(windows, batch_tokens):
        ids, valid = pad_batch([w.ids for w in batch])
        keep = counted_mask(ids, valid, special)  # (B, T)
        ids, valid, keep = ids.to(dev), valid.to(dev), keep.to(dev)
        got: dict = {}
        edits = {site_in: store(got, "x")} | ({site_out: store(got, "y")} if site_out != site_in else {})
        if ce:
            clean = logits(lm, ids, edits=edits, attention_mask=valid)
        else:
            from core.model.run import forward_until

            forward_until(lm, ids, max(site_in.layer, site_out.layer), edits=edits, attention_mask=valid)
        x = flat(got["x"]).float()
        y = flat(got.get("y", got["x"])).float()
        f, y_hat = sae.forward(x[keep])
        acc.add(y[keep], y_hat, f)
        if not ce:
            continue
        pair = keep[:, :-1] & keep[:, 1:]  # predicting token t+1 from t, neither special
        spliced = torch.where(keep[..., None], _full(y, keep, y_hat), y)

        def put(new: torch.Tensor):
            return lambda a: new.view_as(a).to(a.dtype)

        lg_sae = logits(lm, ids, edits={site_out: put(spliced)}, attention_mask=valid)
        lg_zero = logits(lm, ids, edits={site_out: put(torch.where(keep[..., None], 0.0, y))}, attention_mask=valid)
        loss_c, lp_c = token_losses(clean, ids, pair)
        loss_s, lp_s = token_losses(lg_sae, ids, pair)
        loss_z, _ = token_losses(lg_zero, ids, pair)
        sums["clean"] += float(loss_c.double().sum())
        sums["sae"] += float(loss_s.double().sum())
        sums["zero"] += float(loss_z.double().sum())
        sums["kl"] += float((lp_c.exp() * (lp_c - lp_s)).sum(-1).double().sum())
        n_pairs += int(pair.sum())
    nums = acc.numbers()
    if density is not None:
        density["density"] = acc.fired.double().div(max(acc.n, 1)).float()
    m = {k: v / n_pairs for k, v in sums.items()} if n_pairs else {k: float("nan") for k in sums}
    return Quality(**nums, ce_clean=m["clean"], ce_sae=m["sae"], ce_zero=m["zero"],
                   ce_recovered=ce_recovered(m["clean"], m["sae"], m["zero"]), kl=m["kl"])


def _full(y: torch.Tensor, keep: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(B, T, d) with `rows` at the kept positions (zeros elsewhere)."""
    out = torch.zeros_like(y)
    out[keep] = rows
    return out
