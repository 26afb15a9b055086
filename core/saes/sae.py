"""One SAE object for every format: encoder, decoder, biases, an activation, optional input normalisation; an SAE
(reconstructs its input site) or a transcoder (reads one site, writes another).

Math (x: one token's activation at `site`, flattened to d_in; every format's loader maps onto these fields):

    x' = norm(x)                 'none' | 'constant_norm_rescale' (x·√d_in/‖x‖) | 'layer_norm' ((x−μ)/(σ+1e-5))
    x' = x'·scale                if `scale` (an input scaling factor not folded into the weights; SAELens's
                                 `expected_average_only_in` once folded is 'none')
    x' = x' − b_dec              if `b_dec_in` (SAELens: apply_b_dec_to_input; sparsify: always for an SAE, never
                                 for a transcoder; Gemma Scope: never)
    pre = x' W_enc + b_enc       W_enc (d_in, d_sae)
    f = act(pre)                 relu: max(pre, 0)
                                 topk: the k largest pre kept, then ReLU (SAELens's order; sparsify's ReLU-then-top-k
                                       gives the same non-zero values), the rest 0
                                 jumprelu: relu(pre)·[pre > threshold] (strict >)
                                 batchtopk: with a threshold (inference), as jumprelu; without, the k·n largest
                                       ReLU'd pre-activations over the n tokens of the call
                                 nnls: a semi-NMF's factors (core.saes.snmf): W_enc = W_decᵀ, b_enc = 0, and
                                       f = argmin_{f ≥ 0} ‖x' − f W_dec‖², non-negative least squares from pre
    x̂ = (f W_dec + b_dec)        W_dec (d_sae, d_out), rows are the features' output directions
    x̂ = x̂ / scale, then norm⁻¹   the inverse of the input normalisation, with that token's own factors
    x̂ = x̂ + x W_skip             a skip transcoder (Paulo et al. 2025) only: W_skip (d_in, d_out) applied to the
                                 RAW input x (before normalisation, scaling and b_dec), i.e. decode(f, x) =
                                 f W_dec + b_dec + x W_skip for an SAE without normalisation. circuit-tracer stores
                                 the same matrix transposed, [d_out, d_in], and computes x @ W_skip.T

Everything runs in float32, on the CPU unless moved (`SAE.to`, beside a model on a GPU); `encode`/`decode` accept
any leading shape (..., d_in).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from core.errors import UserError
from core.model.sites import Site

ACTIVATIONS = ("relu", "topk", "batchtopk", "jumprelu", "nnls")
NORMS = ("none", "constant_norm_rescale", "layer_norm")
TENSORS = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "density", "W_skip")


class SAEError(UserError):
    """An SAE that cannot be used as given (shapes, values, settings, a site this model lacks); one line."""


@dataclass
class SAE:
    W_enc: torch.Tensor  # (d_in, d_sae)
    b_enc: torch.Tensor  # (d_sae,)
    W_dec: torch.Tensor  # (d_sae, d_out)
    b_dec: torch.Tensor  # (d_out,)
    activation: str = "relu"
    """relu | topk | batchtopk | jumprelu | nnls"""
    k: int | None = None
    """Active latents per token (topk) or on average (batchtopk without a threshold)."""
    threshold: torch.Tensor | None = None  # (d_sae,) jumprelu, and batchtopk at inference
    b_dec_in: bool = True
    """Subtract b_dec from the (normalised) input before encoding (SAEs only)."""
    normalize: str = "none"
    """Per-token input normalisation: none | constant_norm_rescale | layer_norm."""
    scale: float | None = None
    """Input multiplied by this before encoding, output divided by it (None: no scaling)."""
    site: str = ""
    """Input site, our name (core.model.sites), e.g. resid_post.6; '' when the file does not say."""
    out_site: str | None = None
    """Output site of a transcoder (None: an SAE, which reconstructs `site`)."""
    model: str | None = None
    """The model it was trained on, as its file says."""
    meta: dict = field(default_factory=dict)
    """Everything else worth keeping: the format it came from, its hook names, training settings, quality."""
    density: torch.Tensor | None = None  # (d_sae,) share of tokens each latent fired on, where known (training)
    W_skip: torch.Tensor | None = None  # (d_in, d_out) a skip transcoder's linear path, input -> output

    def __post_init__(self) -> None:
        for name in TENSORS:
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, torch.as_tensor(t).detach().to(torch.float32).contiguous())
        self.validate()

    def to(self, device: torch.device | str) -> SAE:
        """This SAE with its tensors on `device` (itself when they are there already)."""
        device = torch.device(device)
        if self.W_enc.device == device:
            return self
        moved = {n: getattr(self, n).to(device) for n in TENSORS if getattr(self, n) is not None}
        return dataclasses.replace(self, **moved)

    # ---- shape and value checks -------------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    @property
    def d_out(self) -> int:
        return self.W_dec.shape[1]

    @property
    def transcoder(self) -> bool:
        return self.out_site is not None and self.out_site != self.site

    def validate(self) -> None:
        """SAEError (one line) unless every shape and setting is consistent and every weight finite."""
        if self.W_enc.ndim != 2 or self.W_dec.ndim != 2:
            raise SAEError(f"W_enc and W_dec must be matrices (got {tuple(self.W_enc.shape)}, "
                           f"{tuple(self.W_dec.shape)})")
        d_in, d_sae = self.W_enc.shape
        want = {"b_enc": (d_sae,), "W_dec": (d_sae, self.W_dec.shape[1]), "b_dec": (self.W_dec.shape[1],)}
        if self.threshold is not None:
            want["threshold"] = (d_sae,)
        if self.density is not None:
            want["density"] = (d_sae,)
        if self.W_skip is not None:
            want["W_skip"] = (d_in, self.W_dec.shape[1])
        for name, shape in want.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise SAEError(f"{name} has shape {got}, expected {shape} for an SAE with d_in={d_in}, d_sae={d_sae}")
        if self.activation not in ACTIVATIONS:
            raise SAEError(f"unknown SAE activation {self.activation!r}; known: {', '.join(ACTIVATIONS)}")
        if self.normalize not in NORMS:
            raise SAEError(f"unknown activation normalisation {self.normalize!r}; known: {', '.join(NORMS)}")
        if self.activation == "topk" or (self.activation == "batchtopk" and self.threshold is None):
            if self.k is None or not 0 < self.k <= d_sae:
                raise SAEError(f"k={self.k}: a {self.activation} SAE needs 1 <= k <= {d_sae} (its latents)")
        if self.activation == "jumprelu" and self.threshold is None:
            raise SAEError("a jumprelu SAE needs a threshold for each latent")
        if self.activation == "nnls" and (self.d_in != self.d_out or self.b_enc.abs().amax() > 0 or
                                          not torch.allclose(self.W_enc, self.W_dec.T, rtol=1e-5, atol=1e-6)):
            raise SAEError("a semi-NMF (nnls) needs W_enc = W_decᵀ and b_enc = 0 (its encoding is least squares)")
        if self.b_dec_in and self.d_in != self.d_out:
            raise SAEError(f"b_dec ({self.d_out}) cannot be subtracted from a {self.d_in}-wide input")
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise SAEError(f"input scaling factor {self.scale} must be a positive finite number")
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "W_skip"):
            t = getattr(self, name)
            if t is not None and not torch.isfinite(t).all():
                raise SAEError(f"{name} holds NaN or Inf values")
        for s in filter(None, (self.site, self.out_site)):
            Site.parse(s)

    # ---- the math --------------------------------------------------------------------------------------------
    def _norm_in(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """(normalised x, what undoing it needs) for x (..., d_in)."""
        undo: tuple = ()
        if self.normalize == "constant_norm_rescale":
            c = math.sqrt(self.d_in) / x.norm(dim=-1, keepdim=True)  # (..., 1)
            x, undo = x * c, ("rescale", c)
        elif self.normalize == "layer_norm":
            mu, sd = x.mean(-1, keepdim=True), x.std(-1, keepdim=True)  # (..., 1) unbiased std, as SAELens
            x, undo = (x - mu) / (sd + 1e-5), ("layer_norm", mu, sd)
        if self.scale is not None:
            x = x * self.scale
        return x, undo

    def _norm_out(self, y: torch.Tensor, undo: tuple) -> torch.Tensor:
        if self.scale is not None:
            y = y / self.scale
        if undo and undo[0] == "rescale":
            y = y / undo[1]
        elif undo and undo[0] == "layer_norm":
            y = y * undo[2] + undo[1]
        return y

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., d_sae) pre-activations."""
        x, _ = self._norm_in(x.float())
        if self.b_dec_in:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """(..., d_sae) pre-activations -> (..., d_sae) latent activations."""
        if self.activation == "relu":
            return pre.relu()
        if self.activation == "nnls":
            from core.saes.snmf import nnls

            if "_gram" not in self.__dict__:
                gram = self.W_dec @ self.W_dec.T
                self.__dict__["_gram"] = (gram, float(torch.linalg.eigvalsh(gram.double())[-1]))
            gram, L = self.__dict__["_gram"]
            return nnls(pre, gram, lipschitz=L)
        if self.activation == "jumprelu" or (self.activation == "batchtopk" and self.threshold is not None):
            return pre.relu() * (pre > self.threshold)
        if self.activation == "topk":
            vals, idx = pre.topk(self.k, dim=-1, sorted=False)  # (..., k)
            return torch.zeros_like(pre).scatter_(-1, idx, vals.relu())
        flat = pre.relu().reshape(-1, pre.shape[-1])  # batchtopk, training form: (n, d_sae)
        n_keep = min(flat.numel(), int(self.k * flat.shape[0]))
        vals, idx = flat.flatten().topk(n_keep, sorted=False)
        return torch.zeros_like(flat).flatten().scatter_(0, idx, vals).reshape(pre.shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., d_sae)."""
        return self.activate(self.pre_acts(x))

    def decode(self, f: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """(..., d_sae) -> (..., d_out). With a per-token normalisation, `x` (the input) supplies the factors to undo;
        without `x` the result stays in the normalised space. A skip transcoder adds x W_skip, so it needs `x`."""
        y = f @ self.W_dec + self.b_dec
        if x is None:
            if self.W_skip is not None:
                raise SAEError("a skip transcoder's output needs its input (decode(f, x))")
            return y / self.scale if self.scale is not None else y
        return self._skip(self._norm_out(y, self._norm_in(x.float())[1]), x)

    def _skip(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """y (..., d_out) plus the skip path x W_skip (x the raw input (..., d_in)); y itself without W_skip."""
        return y if self.W_skip is None else y + x.float() @ self.W_skip

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., d_in) -> (latents (..., d_sae), reconstruction (..., d_out))."""
        xn, undo = self._norm_in(x.float())
        pre = (xn - self.b_dec if self.b_dec_in else xn) @ self.W_enc + self.b_enc
        f = self.activate(pre)
        return f, self._skip(self._norm_out(f @ self.W_dec + self.b_dec, undo), x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[1]

    # ---- transformations -------------------------------------------------------------------------------------
    def folded(self) -> SAE:
        """The same function with `scale` folded into the weights (W_enc·s, W_dec/s, b_dec/s), as SAELens stores an
        SAE trained on scaled inputs; equal outputs (tested)."""
        if self.scale is None:
            return self
        s = self.scale
        return SAE(self.W_enc * s, self.b_enc, self.W_dec / s, self.b_dec / s, self.activation, self.k,
                   self.threshold, self.b_dec_in, self.normalize, None, self.site, self.out_site, self.model,
                   dict(self.meta), self.density, self.W_skip)

    def decoder_norms(self) -> torch.Tensor:
        """(d_sae,) L2 norm of each decoder row."""
        return self.W_dec.norm(dim=-1)

    def describe(self) -> str:
        kind = "transcoder" if self.transcoder else "semi-NMF" if self.activation == "nnls" else "SAE"
        kind = "skip " + kind if self.W_skip is not None else kind
        k = f", k={self.k}" if self.k else ""
        where = f" {self.site}" + (f" -> {self.out_site}" if self.transcoder else "") if self.site else ""
        return f"{self.activation} {kind}{where}: {self.d_in} -> {self.d_sae} latents{k}"


def site_width(site: Site, lm) -> int:
    """The flattened width of an activation at `site` on this model (what an SAE there reads)."""
    p = lm.parts
    if site.kind == "neurons":
        return p.d_mlp
    if site.kind == "z":
        H, _, d_head = p.heads
        return d_head if site.head is not None else H * d_head
    if site.kind == "pattern":
        raise SAEError("attention patterns cannot be read by an SAE")
    return p.d_model


def check_for_model(sae: SAE, lm, site: str | None = None) -> tuple[Site, Site]:
    """(input site, output site) of `sae` on this model, `site` overriding the file's; SAEError (one line) when the
    site is missing or unknown here or a width does not match."""
    from core.model.sites import check_site

    name = site or sae.site
    if not name:
        raise SAEError("this SAE's files do not say which site it reads; give it with --site (e.g. resid_post.6)")
    s_in = check_site(Site.parse(name), lm.n_layers, lm.parts.heads[0])
    s_out = check_site(Site.parse(sae.out_site), lm.n_layers, lm.parts.heads[0]) if sae.transcoder else s_in
    if s_out.kind in ("resid_mid", "pattern"):
        raise SAEError(f"site {s_out} can be read, not replaced: an SAE's output cannot go there")
    for s, d, what in ((s_in, sae.d_in, "d_in"), (s_out, sae.d_out, "d_out")):
        w = site_width(s, lm)
        if w != d:
            raise SAEError(f"the SAE's {what} is {d} but {s} on {lm.name} is {w} wide")
    return s_in, s_out
