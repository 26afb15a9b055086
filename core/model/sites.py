"""Sites: the named places in a forward pass where an activation can be read or replaced.

Our names are `<kind>.<layer>` (and `z.<layer>.<head>` for one head); layers are 0-based blocks. Each kind, the
activation its functions see (B batch, T positions), and the names other tools give it:

  kind        activation                                    TransformerLens / SAELens        sparsify
  resid_pre   (B, T, d_model) the stream entering the block  blocks.L.hook_resid_pre          -
  attn_in     (B, T, d_model) attention's input (normed)     blocks.L.ln1.hook_normalized **  -
  q, k        (B, T, H*d_head), (B, T, H_kv*d_head) the       blocks.L.attn.hook_q / hook_k    -
              query and key projections' outputs (before any
              rotary embedding or q/k norm)
  resid_mid   (B, T, d_model) the stream after attention     blocks.L.hook_resid_mid          -
  resid_post  (B, T, d_model) the block's output             blocks.L.hook_resid_post         layers.L
  attn_out    (B, T, d_model) what attention adds            blocks.L.hook_attn_out           layers.L.self_attn *
  z           (B, T, H, d_head) each head's output, before   blocks.L.attn.hook_z             -
              the output projection; z.L.h: (B, T, d_head)
  pattern     (B, H, T, T) attention weights (eager only)    blocks.L.attn.hook_pattern       -
  mlp_in      (B, T, d_model) the MLP's input (normed)       blocks.L.ln2.hook_normalized **  layers.L.mlp (input)
  neurons     (B, T, d_mlp) after activation and gating      blocks.L.mlp.hook_post           -
  mlp_out     (B, T, d_model) what the MLP adds              blocks.L.hook_mlp_out            layers.L.mlp *

Aliases read as the same site: TransformerLens's blocks.L.hook_attn_in (= resid_pre, before the norm) and
blocks.L.hook_mlp_in (= resid_mid, before the norm), and our `mlp_post` (= neurons).
 *  sparsify hooks a module's output; for attention and MLP modules that is what the sublayer adds unless the model
    norms it afterwards (Gemma 2/3): `check_foreign` refuses such a name on such a model instead of guessing.
 ** TransformerLens's hook_normalized comes before the norm's gain (its default weight processing folds the gain
    into the next matrix); ours is the sublayer module's actual input, gain applied. TransformerLens's hook_q/hook_k
    are split by head, (B, T, H, d_head); ours are the projections' flat outputs.

`resid_mid` and `pattern` can be read, not replaced: the block keeps its own reference to the stream (and has
already used the weights) when their hooks run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import UserError

KINDS = ("resid_pre", "attn_in", "q", "k", "resid_mid", "resid_post", "attn_out", "z", "pattern", "mlp_in", "neurons",
         "mlp_out")
READ_ONLY = ("resid_mid", "pattern")
TL_HOOKS = {"resid_pre": "hook_resid_pre", "attn_in": "ln1.hook_normalized", "q": "attn.hook_q", "k": "attn.hook_k",
            "resid_mid": "hook_resid_mid", "resid_post": "hook_resid_post",
            "attn_out": "hook_attn_out", "z": "attn.hook_z", "pattern": "attn.hook_pattern",
            "mlp_in": "ln2.hook_normalized", "neurons": "mlp.hook_post", "mlp_out": "hook_mlp_out"}
TL_ALIASES = {"hook_attn_in": "resid_pre", "hook_mlp_in": "resid_mid"}
SPARSIFY = {"resid_post": "", "attn_out": ".self_attn", "mlp_out": ".mlp"}
"""Our kind -> the suffix after `layers.L` in sparsify's hookpoint names (module outputs)."""


class SiteError(UserError):
    """A site name nobody uses, or a site this model does not have; one line."""


@dataclass(frozen=True, order=True)
class Site:
    kind: str
    layer: int
    head: int | None = None
    """One head of a `z` site (None: every head)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SiteError(f"unknown site kind {self.kind!r}; kinds: {', '.join(KINDS)}")
        if self.layer < 0:
            raise SiteError(f"site {self.kind}: layer {self.layer} is negative")
        if self.head is not None and (self.kind != "z" or self.head < 0):
            raise SiteError(f"only z sites take a head (got {self.kind}.{self.layer}.{self.head})")

    def __str__(self) -> str:
        return f"{self.kind}.{self.layer}" + ("" if self.head is None else f".{self.head}")

    @property
    def editable(self) -> bool:
        return self.kind not in READ_ONLY

    def tl_name(self) -> str:
        """TransformerLens / SAELens hook name (a head's z is the whole z hook; pick the head from its dim 2)."""
        return f"blocks.{self.layer}.{TL_HOOKS[self.kind]}"

    def sparsify_name(self) -> str | None:
        """sparsify's hookpoint name, or None where sparsify has none."""
        suffix = SPARSIFY.get(self.kind)
        return None if suffix is None else f"layers.{self.layer}{suffix}"

    @classmethod
    def parse(cls, name: str | Site) -> Site:
        """Our name (`resid_post.6`, `z.3.1`), a TransformerLens/SAELens hook name (`blocks.6.hook_resid_post`) or
        a sparsify hookpoint (`layers.6`, `layers.6.mlp`) -> a Site; SiteError (one line) for anything else."""
        if isinstance(name, Site):
            return name
        s = str(name).strip()
        m = re.fullmatch(r"([a-z_]+)\.(\d+)(?:\.(\d+))?", s)
        if m and m.group(1) in KINDS + ("mlp_post",):
            kind = "neurons" if m.group(1) == "mlp_post" else m.group(1)
            return cls(kind, int(m.group(2)), None if m.group(3) is None else int(m.group(3)))
        m = re.fullmatch(r"blocks\.(\d+)\.(.+)", s)
        if m:
            hook = m.group(2)
            kind = next((k for k, h in TL_HOOKS.items() if h == hook), TL_ALIASES.get(hook))
            if kind:
                return cls(kind, int(m.group(1)))
        m = re.fullmatch(r"(?:model\.|transformer\.|gpt_neox\.)?(?:layers|h)\.(\d+)(\.self_attn|\.attn|\.mlp)?", s)
        if m:
            suffix = {None: "", ".attn": ".self_attn"}.get(m.group(2), m.group(2))
            kind = next(k for k, v in SPARSIFY.items() if v == suffix)
            return cls(kind, int(m.group(1)))
        raise SiteError(f"unknown site {s!r}: expected e.g. resid_post.6, z.6.3, blocks.6.hook_resid_post "
                        f"(TransformerLens/SAELens) or layers.6, layers.6.mlp (sparsify)")


def check_site(site: Site, n_layers: int, n_heads: int | None = None) -> Site:
    """`site` if this model has it; SiteError naming the valid range otherwise."""
    if site.layer >= n_layers:
        raise SiteError(f"site {site}: this model has layers 0-{n_layers - 1}")
    if site.head is not None and n_heads is not None and site.head >= n_heads:
        raise SiteError(f"site {site}: this model has heads 0-{n_heads - 1}")
    return site


def check_foreign(name: str, site: Site, parts) -> Site:
    """`site`, parsed from a sparsify module name, if it means the same on this model (core.model.parts.ModelParts):
    sparsify reads a sublayer module's output, which is what the sublayer adds only when no norm follows it."""
    if site.kind in ("attn_out", "mlp_out") and not str(name).startswith("blocks.") and not str(name).startswith(
            site.kind):
        norms = parts.norms(site.layer)
        if (norms.post_attn if site.kind == "attn_out" else norms.post_mlp) is not None:
            raise SiteError(f"{name}: this model norms the {site.kind.split('_')[0]} output before it joins the "
                            f"stream, so a module-output hookpoint is not {site}; name the site explicitly")
    return site
