"""Hook points found by structure, and a capture context manager.

No list of model types: the decoder blocks are the `nn.ModuleList` whose length is the config's layer count; in each
block the attention module is the child holding the query/key/value projections (>= 2 linear maps reading the
residual stream) and the MLP is the other child holding linear maps; the MLP's down projection is its linear map
from d_mlp back to d_model, whose *input* is the neuron activation (after activation and gating). Layers are
numbered 0..L-1 by block. `HookSpec` overrides any of this for odd models.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class HookSpec:
    """Explicit module paths for models whose structure the finder cannot read (all optional)."""

    layers: str | None = None
    """Path of the decoder-block ModuleList, e.g. "model.layers"."""
    mlp_down: str | None = None
    """Path of the down projection inside a block, e.g. "mlp.down_proj"."""
    attn: str | None = None
    """Path of the attention module inside a block, e.g. "self_attn"."""


@dataclass
class HookPoints:
    layers: list[nn.Module]
    attn: list[nn.Module]
    mlp_down: list[nn.Module]
    final_norm: nn.Module | None
    base: nn.Module = field(repr=False)
    """The model without its unembedding (what `model.base_model` returns)."""
    d_model: int = 0
    d_mlp: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    """Held by `capture` for its whole block: hooks on a shared model fire for every thread, so two hooked passes
    (two dashboard sessions) must not overlap."""


def io_dims(m: nn.Module) -> tuple[int, int] | None:
    """(in, out) of a linear map: nn.Linear or GPT-2's Conv1D (weight (in, out))."""
    if isinstance(m, nn.Linear):
        return m.in_features, m.out_features
    if type(m).__name__ == "Conv1D" and hasattr(m, "nf"):
        return m.weight.shape[0], m.nf
    return None


def _linears(m: nn.Module) -> list[tuple[str, nn.Module, tuple[int, int]]]:
    return [(n, x, d) for n, x in m.named_modules() if (d := io_dims(x)) is not None]


def _get(root: nn.Module, path: str) -> nn.Module:
    return root.get_submodule(path)


def find_layers(model: nn.Module, spec: HookSpec | None = None) -> tuple[str, nn.ModuleList]:
    if spec and spec.layers:
        return spec.layers, _get(model, spec.layers)
    cfg = model.config
    n = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
    cands = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0
             and (n is None or len(m) == n) and len({type(b) for b in m}) == 1]
    if not cands:
        raise ValueError("no decoder-block ModuleList found; pass HookSpec(layers=...)")
    return max(cands, key=lambda c: sum(p.numel() for p in c[1].parameters()))


def _is_mlp(lin: list[tuple[str, nn.Module, tuple[int, int]]], d_model: int) -> bool:
    """An MLP: 2-3 linear maps, every map reading d_model writes the same d_mlp, one map d_mlp -> d_model."""
    if not 2 <= len(lin) <= 3:
        return False
    outs = {d[1] for _, _, d in lin if d[0] == d_model}
    downs = [d for _, _, d in lin if d[1] == d_model and d[0] != d_model]
    return len(outs) == 1 and len(downs) == 1 and downs[0][0] == next(iter(outs))


def _split_block(block: nn.Module, d_model: int, spec: HookSpec | None) -> tuple[nn.Module, nn.Module]:
    """(attention module, down projection) of one block."""
    attn = _get(block, spec.attn) if spec and spec.attn else None
    down = _get(block, spec.mlp_down) if spec and spec.mlp_down else None
    for _, child in block.named_children():
        lin = _linears(child)
        if not lin:
            continue
        if _is_mlp(lin, d_model):
            if down is None:
                down = next(x for _, x, d in lin if d[1] == d_model and d[0] != d_model)
        elif attn is None:
            attn = child
    if attn is None or down is None:
        raise ValueError(f"could not find attention and MLP in block {type(block).__name__}; pass a HookSpec")
    return attn, down


def _final_norm(model: nn.Module, layers_path: str, d_model: int) -> nn.Module | None:
    parent = model.get_submodule(layers_path.rsplit(".", 1)[0]) if "." in layers_path else model
    norms = [m for name, m in parent.named_children()
             if name != layers_path.rsplit(".", 1)[-1] and isinstance(getattr(m, "weight", None), torch.Tensor)
             and m.weight.ndim == 1 and m.weight.shape[0] == d_model]
    return norms[-1] if norms else None


def find_hook_points(model: nn.Module, spec: HookSpec | None = None) -> HookPoints:
    path, layers = find_layers(model, spec)
    d_model = model.get_input_embeddings().weight.shape[1]
    attn, down = zip(*[_split_block(b, d_model, spec) for b in layers], strict=True)
    d_mlp = io_dims(down[0])[0] if io_dims(down[0]) else 0
    return HookPoints(layers=list(layers), attn=list(attn), mlp_down=list(down),
                      final_norm=_final_norm(model, path, d_model), base=model.base_model,
                      d_model=d_model, d_mlp=d_mlp)


class StopForward(Exception):
    """Raised by a hook to end a forward pass early (no layer after the last one needed runs)."""


def _first(out):
    return out[0] if isinstance(out, tuple) else out


@contextmanager
def capture(points: HookPoints, *, resid=(), resid_in=(), mlp=(), attn_out=(), attn_pattern=(),
            stop_after: int | None = None):
    """Record activations during forward passes run inside the block.

    resid: layers whose block output (B, T, d_model) to keep; resid_in: layers whose block input (B, T, d_model)
    to keep (block 0's input is the embedding stream); mlp: layers whose neuron activations (B, T, d_mlp);
    attn_out: attention output (B, T, d_model); attn_pattern: attention weights (B, H, T, T), needs eager attention.
    Yields a dict {kind: {layer: tensor}} filled by the forward passes (the last pass wins). `stop_after`: raise
    StopForward after that block; catch it around the forward call. Holds `points.lock` throughout.
    """
    store: dict[str, dict[int, torch.Tensor]] = {"resid": {}, "resid_in": {}, "mlp": {}, "attn_out": {},
                                                 "attn_pattern": {}}
    handles = []
    points.lock.acquire()

    def out_hook(kind, layer):
        def hook(_m, _inp, out):
            store[kind][layer] = _first(out).detach()
        return hook

    def pattern_hook(layer):
        def hook(_m, _inp, out):
            if not isinstance(out, tuple) or len(out) < 2 or out[1] is None:
                raise RuntimeError("attention weights are not returned; load the model with attn='eager'")
            store["attn_pattern"][layer] = out[1].detach()
        return hook

    def in_hook(layer):
        def hook(_m, args, kwargs):
            store["resid_in"][layer] = (args[0] if args else kwargs["hidden_states"]).detach()
        return hook

    def mlp_hook(layer):
        def hook(_m, inp):
            store["mlp"][layer] = inp[0].detach()
        return hook

    def stop_hook(_m, _inp, _out):
        raise StopForward

    try:
        for layer in resid:
            handles.append(points.layers[layer].register_forward_hook(out_hook("resid", layer)))
        for layer in resid_in:
            handles.append(points.layers[layer].register_forward_pre_hook(in_hook(layer), with_kwargs=True))
        for layer in attn_out:
            handles.append(points.attn[layer].register_forward_hook(out_hook("attn_out", layer)))
        for layer in attn_pattern:
            handles.append(points.attn[layer].register_forward_hook(pattern_hook(layer)))
        for layer in mlp:
            handles.append(points.mlp_down[layer].register_forward_pre_hook(mlp_hook(layer)))
        if stop_after is not None:
            handles.append(points.layers[stop_after].register_forward_hook(stop_hook))
        yield store
    finally:
        for h in handles:
            h.remove()
        points.lock.release()
