"""A model's parts found by structure: decoder blocks, attention, MLP, norms and the maps the analyses read.

No list of model types: the decoder blocks are the `nn.ModuleList` whose length is the config's layer count; in each
block the MLP is the child holding 2-3 linear maps (every map reading the residual stream writes the same d_mlp, one
map d_mlp -> d_model: the down projection, whose *input* is the neuron activation after activation and gating) and
the attention module is the other child with linear maps. Layers are numbered 0..L-1 by block. `PartPaths` names
modules explicitly for models the finder cannot read.

The norms around the sublayers are found by the order in which a block calls its children, recorded once on a
two-token pass (`ModelParts.block_order`): norms called between the attention and the MLP are a post-attention norm
(Gemma 2/3) and the MLP's input norm (the last one); a norm called after the MLP is a post-MLP norm.

Weights: nn.Linear stores (out, in); GPT-2's Conv1D stores (in, out). `in_out(m)` gives every linear map as
(in, out) so no other module needs to know.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import nn

from core.errors import UserError

O_NAMES = ("o_proj", "c_proj", "out_proj", "dense")
QK_NAMES = {"q": ("q_proj", "query", "q"), "k": ("k_proj", "key", "k")}
"""Usual names of the attention output projection (tried before the structural search)."""


class StructureError(UserError):
    """The finder cannot read this model's structure; the message says which PartPaths field to set."""


@dataclass
class PartPaths:
    """Explicit module paths for models whose structure the finder cannot read (all optional)."""

    layers: str | None = None
    """Path of the decoder-block ModuleList, e.g. "model.layers"."""
    mlp_down: str | None = None
    """Path of the down projection inside a block, e.g. "mlp.down_proj"."""
    attn: str | None = None
    """Path of the attention module inside a block, e.g. "self_attn"."""


def text_config(model: nn.Module):
    """The config of the language model itself (multimodal configs nest it as text_config)."""
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def io_dims(m: nn.Module) -> tuple[int, int] | None:
    """(in, out) of a linear map: nn.Linear or GPT-2's Conv1D; None for anything else."""
    if isinstance(m, nn.Linear):
        return m.in_features, m.out_features
    if type(m).__name__ == "Conv1D" and hasattr(m, "nf"):
        return m.weight.shape[0], m.nf
    return None


def in_out(m: nn.Module) -> torch.Tensor:
    """The weight of a linear map as (in, out): nn.Linear's transposed, GPT-2's Conv1D's as stored (a view)."""
    return m.weight if type(m).__name__ == "Conv1D" else m.weight.T


def _linears(m: nn.Module) -> list[tuple[str, nn.Module, tuple[int, int]]]:
    return [(n, x, d) for n, x in m.named_modules() if (d := io_dims(x)) is not None]


def _is_mlp(lin: list[tuple[str, nn.Module, tuple[int, int]]], d_model: int) -> bool:
    """An MLP: 2-3 linear maps, every map reading d_model writes the same d_mlp, one map d_mlp -> d_model."""
    if not 2 <= len(lin) <= 3:
        return False
    outs = {d[1] for _, _, d in lin if d[0] == d_model}
    downs = [d for _, _, d in lin if d[1] == d_model and d[0] != d_model]
    return len(outs) == 1 and len(downs) == 1 and downs[0][0] == next(iter(outs))


def _is_norm(m: nn.Module, d_model: int) -> bool:
    w = getattr(m, "weight", None)
    return isinstance(w, torch.Tensor) and w.ndim == 1 and w.shape[0] == d_model and io_dims(m) is None


def _submodule(root: nn.Module, path: str, what: str) -> nn.Module:
    try:
        return root.get_submodule(path)
    except AttributeError:
        raise StructureError(f"PartPaths({what}={path!r}): no such module in {type(root).__name__}") from None


def find_layers(model: nn.Module, paths: PartPaths | None = None) -> tuple[str, nn.ModuleList]:
    if paths and paths.layers:
        m = _submodule(model, paths.layers, "layers")
        if not isinstance(m, nn.ModuleList):
            raise StructureError(f"PartPaths(layers={paths.layers!r}) is a {type(m).__name__}, not a ModuleList")
        return paths.layers, m
    cfg = model.config
    n = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
    cands = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0
             and (n is None or len(m) == n) and len({type(b) for b in m}) == 1]
    if not cands:
        raise StructureError("no decoder-block ModuleList found; pass PartPaths(layers=...)")
    return max(cands, key=lambda c: sum(p.numel() for p in c[1].parameters()))


def _split_block(block: nn.Module, d_model: int, paths: PartPaths | None) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(attention module, MLP module, down projection) of one block."""
    attn = _submodule(block, paths.attn, "attn") if paths and paths.attn else None
    down = _submodule(block, paths.mlp_down, "mlp_down") if paths and paths.mlp_down else None
    mlp = None
    for _, child in block.named_children():
        lin = _linears(child)
        if not lin:
            continue
        if down is not None and any(x is down for _, x, _ in lin):  # the MLP holding the given down projection
            mlp = child
        elif down is None and _is_mlp(lin, d_model):
            mlp, down = child, next(x for _, x, d in lin if d[1] == d_model and d[0] != d_model)
        elif attn is None:
            attn = child
    if attn is None or down is None:
        raise StructureError(f"could not find attention and MLP in block {type(block).__name__}; pass PartPaths")
    return attn, (mlp if mlp is not None else down), down


def _final_norm(model: nn.Module, layers_path: str, d_model: int) -> nn.Module | None:
    parent = model.get_submodule(layers_path.rsplit(".", 1)[0]) if "." in layers_path else model
    norms = [m for name, m in parent.named_children()
             if name != layers_path.rsplit(".", 1)[-1] and _is_norm(m, d_model)]
    return norms[-1] if norms else None


@dataclass
class BlockNorms:
    """Norms around a block's sublayers, from the order the block calls its children (None where there is none)."""

    post_attn: nn.Module | None
    """Applied to the attention output before it joins the stream (Gemma 2/3)."""
    mlp_in: nn.Module | None
    """Applied to the stream before the MLP (its input is the stream after attention: resid_mid)."""
    post_mlp: nn.Module | None
    """Applied to the MLP output before it joins the stream (Gemma 2/3)."""


@dataclass
class ModelParts:
    """Where each part of a loaded model is. Built by `find_parts`; read by core.model.intervene."""

    model: nn.Module = field(repr=False)
    """The causal LM (with its unembedding)."""
    layers: list[nn.Module]
    attn: list[nn.Module]
    mlp: list[nn.Module]
    mlp_down: list[nn.Module]
    final_norm: nn.Module | None
    base: nn.Module = field(repr=False)
    """The model without its unembedding (what `model.base_model` returns)."""
    d_model: int = 0
    d_mlp: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    """Held by core.model.intervene for its whole block: hooks on a shared model fire for every thread, so two
    hooked passes (two dashboard sessions) must not overlap."""

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @cached_property
    def heads(self) -> tuple[int, int, int]:
        """(H query heads, H_kv key/value heads, d_head); d_head from the output map's input width."""
        cfg = text_config(self.model)
        H = int(getattr(cfg, "num_attention_heads", None) or cfg.n_head)
        H_kv = int(getattr(cfg, "num_key_value_heads", None) or H)
        if H % H_kv:
            raise StructureError(f"{H} query heads are not a multiple of {H_kv} key/value heads")
        return H, H_kv, io_dims(self.o_proj(0))[0] // H

    def o_proj(self, layer: int) -> nn.Module:
        """The attention output projection of `layer`; its input is the heads' outputs side by side,
        (B, T, H*d_head): head h owns columns [h*d_head, (h+1)*d_head)."""
        attn, d = self.attn[layer], self.d_model
        for name in O_NAMES:
            m = getattr(attn, name, None)
            if m is not None and io_dims(m) is not None and io_dims(m)[1] == d:
                return m
        cfg = text_config(self.model)
        H = int(getattr(cfg, "num_attention_heads", None) or cfg.n_head)
        d_in = H * int(getattr(cfg, "head_dim", None) or d // H)
        cands = [m for m in attn.children() if io_dims(m) == (d_in, d)]
        if len(cands) != 1:
            raise StructureError(f"cannot tell the attention output map of {type(attn).__name__} ({len(cands)} "
                                 f"linear children map {d_in} -> {d}); name it o_proj")
        return cands[0]

    def qk_proj(self, layer: int, which: str) -> nn.Module:
        """The query (`which="q"`) or key (`"k"`) projection of `layer`: a linear child of the attention module by
        its usual names; StructureError for a fused projection (GPT-2's c_attn), which has no separate output."""
        attn = self.attn[layer]
        for name in QK_NAMES[which]:
            m = getattr(attn, name, None)
            if m is not None and io_dims(m) is not None and io_dims(m)[0] == self.d_model:
                return m
        raise StructureError(f"{type(attn).__name__} has no separate {which} projection (one of "
                             f"{', '.join(QK_NAMES[which])}); a fused query/key/value map has no {which} site")

    @cached_property
    def _trace(self) -> tuple[list[str], bool]:
        """(names of block 0's direct children in the order a forward pass calls them, whether a block returns a
        tuple), from one two-token pass (core.model.intervene.trace_block)."""
        from core.model.intervene import trace_block

        return trace_block(self)

    @property
    def block_order(self) -> list[str]:
        """Names of block 0's direct children in the order a forward pass calls them."""
        return self._trace[0]

    @property
    def block_returns_tuple(self) -> bool:
        """Whether a decoder block returns (hidden_states, ...) rather than the tensor alone."""
        return self._trace[1]

    def norms(self, layer: int) -> BlockNorms:
        """The norms around `layer`'s sublayers (module docstring)."""
        block, order = self.layers[layer], self.block_order
        kids = dict(block.named_children())
        names = {id(m): n for n, m in kids.items()}
        a, m = order.index(names[id(self.attn[layer])]), order.index(names[id(self.mlp[layer])])
        if a > m:  # MLP before attention: no such model is known; say so rather than guess
            raise StructureError(f"block {type(block).__name__} runs its MLP before attention")
        between = [kids[n] for n in order[a + 1:m] if _is_norm(kids[n], self.d_model)]
        after = [kids[n] for n in order[m + 1:] if _is_norm(kids[n], self.d_model)]
        return BlockNorms(post_attn=between[0] if len(between) == 2 else None,
                          mlp_in=between[-1] if between else None, post_mlp=after[0] if after else None)


def find_parts(model: nn.Module, paths: PartPaths | None = None) -> ModelParts:
    path, layers = find_layers(model, paths)
    d_model = model.get_input_embeddings().weight.shape[1]
    attn, mlp, down = zip(*[_split_block(b, d_model, paths) for b in layers], strict=True)
    d_mlp = io_dims(down[0])[0] if io_dims(down[0]) else 0
    return ModelParts(model=model, layers=list(layers), attn=list(attn), mlp=list(mlp), mlp_down=list(down),
                      final_norm=_final_norm(model, path, d_model), base=model.base_model, d_model=d_model,
                      d_mlp=d_mlp)
