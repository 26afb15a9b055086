"""SAE features as units: what a feature page reads from the index (the same four queries as a neuron), and the
live parts that need the SAE's weights: a feature's activation on any text, its output direction, its nearest
features by decoder cosine, its attribution to attention heads, and the feature map.

The unit source for SAE s of a run is `FeatureSource(path)` with kind `feature:<path>` (core.units.kinds.source);
its "layer" argument is the SAE's number s in the run (its features are the index's unit group -s).

Output direction (for logit effects): the decoder row W_dec[f] (d_out) written into the residual stream at the
SAE's output site: as is for a residual-stream site (resid_*, attn_out, mlp_out, mlp_in), through the attention
output projection for z (all heads, or one head's block), through the MLP's down projection for neurons.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from core.index import queries
from core.model.intervene import store
from core.model.parts import in_out
from core.model.run import forward_until, pad_batch
from core.model.sites import Site
from core.saes.acts import flat
from core.saes.formats import load_sae
from core.saes.sae import SAE
from core.units.sources import UnitView, unit_view


@lru_cache(maxsize=8)
def _cached(path: str, mtime: float) -> SAE:
    return load_sae(path)


def sae_at(path: str) -> SAE:
    """The SAE in `path`, loaded once per file version."""
    try:
        mtime = max(os.path.getmtime(os.path.join(path, f)) for f in os.listdir(path)) if os.path.isdir(path) \
            else os.path.getmtime(path)
    except (OSError, ValueError):
        mtime = 0.0
    return _cached(path, mtime)


@dataclass
class FeatureSource:
    path: str
    """The SAE's files (run_saes.path)."""
    site: str = ""
    """The site it reads on this model (run_saes.site)."""

    @property
    def kind(self) -> str:
        return f"feature:{self.path}"

    def gather(self, con, run_id: int, layer: int, unit: int, k: int = 10, window: int = 12) -> UnitView:
        """`layer`: the SAE's number in the run; `unit`: the feature. QueryError for anything unknown."""
        run, _ = queries.check_feature(con, run_id, layer, unit)
        return unit_view(con, run, layer, unit, -layer, k, window)

    def _site(self, sae: SAE) -> Site:
        return Site.parse(self.site or sae.site)

    @torch.inference_mode()
    def activations(self, lm, layer: int, unit: int, seqs: list[list[int]]) -> list[np.ndarray]:
        """The feature's activation at every position of each sequence."""
        if not seqs:
            return []
        sae = sae_at(self.path)
        acts = all_features(lm, sae, self._site(sae), seqs)
        return [a[:, unit].copy() for a in acts]

    def direction(self, lm, layer: int, unit: int) -> torch.Tensor:
        sae = sae_at(self.path)
        out = Site.parse(sae.out_site) if sae.transcoder else self._site(sae)
        return residual_direction(lm, out, sae.W_dec[unit])


@torch.inference_mode()
def all_features(lm, sae: SAE, site: Site, seqs: list[list[int]]) -> list[np.ndarray]:
    """(T, d_sae) every feature's activation on each sequence (one right-padded batch)."""
    ids, _ = pad_batch(seqs)
    got: dict = {}
    forward_until(lm, ids, site.layer, edits={site: store(got, "x")})
    f = sae.encode(flat(got["x"]).float()).numpy()  # (B, T, d_sae)
    return [f[i, : len(s)] for i, s in enumerate(seqs)]


def residual_direction(lm, site: Site, row: torch.Tensor) -> torch.Tensor:
    """(d_model,) where a decoder row written at `site` lands in the residual stream."""
    row = row.detach().float()
    if site.kind == "z":
        W_O = in_out(lm.parts.o_proj(site.layer)).float()  # (H*d_head, d_model)
        if site.head is not None:
            dh = lm.parts.heads[2]
            W_O = W_O[site.head * dh:(site.head + 1) * dh]
        return row @ W_O
    if site.kind == "neurons":
        return row @ in_out(lm.parts.mlp_down[site.layer]).float()  # (d_mlp,) @ (d_mlp, d_model)
    return row


def nearest(sae: SAE, feature: int, k: int = 10) -> list[tuple[int, float]]:
    """The k other features whose decoder rows have the highest cosine with this one's."""
    W = sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # (d_sae, d_out)
    cos = W @ W[feature]
    cos[feature] = -2.0
    vals, idx = cos.topk(min(k, sae.d_sae - 1))
    return [(int(i), float(v)) for i, v in zip(idx, vals, strict=True)]


def head_attribution(sae: SAE, n_heads: int) -> np.ndarray | None:
    """(d_sae, H) norm of each feature's encoder weights on each head's block of z (Kissane et al.), for an SAE on
    all heads' z; None for any other site."""
    site = Site.parse(sae.site) if sae.site else None
    if site is None or site.kind != "z" or site.head is not None or sae.d_in % n_heads:
        return None
    W = sae.W_enc.T.reshape(sae.d_sae, n_heads, sae.d_in // n_heads)  # (d_sae, H, d_head)
    return W.norm(dim=-1).numpy()


def feature_map(sae: SAE, seed: int = 0) -> np.ndarray:
    """(d_sae, 2) UMAP of the decoder directions (cosine metric)."""
    import umap

    W = (sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)).numpy()
    n = len(W)
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), metric="cosine", random_state=seed,
                        n_jobs=1, low_memory=True)
    return reducer.fit_transform(W).astype(np.float32)
