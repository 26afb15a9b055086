"""The one place hooks are registered: read or replace activations at named sites during forward passes.

    with intervene(lm, {"resid_post.6": store(saved, "h6"), "z.3.1": zero()}):
        lm.parts.base(input_ids=ids)

An edit is a function of the activation at its site (shapes in core.model.sites). Returning None reads (the pass
goes on unchanged); returning a tensor of the same shape replaces the activation for the rest of the pass. Several
edits at one site run in order, each seeing the previous one's result. Hooks are removed in `finally`, also when the
pass raises, and the model's lock (ModelParts.lock) is held for the whole block, so two sessions' hooked passes on
a shared model never mix.

Three more things only this module does to a model: `stop_after=L` ends the pass after block L (core.model.run
catches the StopForward it raises), `replay=(L, h)` makes blocks 0..L-1 return `h` (block L-1's output
stream from an earlier pass, resid_post.(L-1)) without computing anything, so a pass whose edits start at block L
pays only for blocks L on, and `skip_mlp={L: y}` makes the MLP of block L return `y` (its output from an earlier
pass, (1 or B, T, d_model), broadcast over the batch) without computing: a pass whose MLP outputs are constants
(an attribution graph's frozen replacement model, core.circuits) pays only for attention. Hooks on a skipped or
replayed module still run, so edits at its sites still see and replace what it returns.

The edit makers below return such functions: `store` (read), `keep` (read, attached to autograd), `detach`, `zero`, `fill` (e.g. a mean), `add` (a steering
vector), `patch` (an activation cached from another pass) and `project_out` (directional ablation). `positions`
(an int, a slice, a list or a bool/long tensor over T) limits an edit to those positions of every sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager

import torch

from core.model.device import module_device
from core.model.sites import Site, SiteError, check_site

Edit = Callable[[torch.Tensor], torch.Tensor | None]


class StopForward(Exception):
    """Raised after block `stop_after` to end a forward pass early (caught by core.model.run.forward_until)."""


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _with_first(out, x):
    return (x, *out[1:]) if isinstance(out, tuple) else x


def _apply(site: Site, fns: Sequence[Edit], x: torch.Tensor) -> torch.Tensor | None:
    """Run the site's edits in order; the replacement (same shape and dtype as x), or None if none replaced it."""
    cur, changed = x, False
    for fn in fns:
        y = fn(cur)
        if y is None:
            continue
        if not site.editable:
            raise SiteError(f"site {site} can be read, not replaced")
        if y.shape != x.shape:
            raise SiteError(f"an edit at {site} returned shape {tuple(y.shape)}, expected {tuple(x.shape)}")
        cur, changed = y.to(x.device, x.dtype), True
    return cur if changed else None


def _module(parts, site: Site):
    """(module, hook type: 'pre' on its input or 'out' on its output) for a site."""
    L, kind = site.layer, site.kind
    if kind in ("resid_mid", "attn_out", "mlp_out"):
        norms = parts.norms(L)
        if kind == "resid_mid":
            if norms.mlp_in is None:
                raise SiteError(f"site {site}: this model has no norm before its MLP, so no stream between "
                                "attention and MLP to read")
            return norms.mlp_in, "pre"
        if kind == "attn_out":
            return (norms.post_attn, "out") if norms.post_attn is not None else (parts.attn[L], "out")
        return (norms.post_mlp, "out") if norms.post_mlp is not None else (parts.mlp[L], "out")
    if kind in ("q", "k"):
        return parts.qk_proj(L, kind), "out"
    return {"resid_pre": (parts.layers[L], "pre"), "resid_post": (parts.layers[L], "out"),
            "attn_in": (parts.attn[L], "pre"),
            "z": (parts.o_proj(L) if kind == "z" else None, "pre"), "pattern": (parts.attn[L], "pattern"),
            "mlp_in": (parts.mlp[L], "pre"), "neurons": (parts.mlp_down[L], "pre")}[kind]


def _z_view(parts, site: Site, fns: Sequence[Edit]) -> Callable[[torch.Tensor], torch.Tensor | None]:
    """The o-projection input (B, T, H*d_head) shown to edits as (B, T, H, d_head), or (B, T, d_head) for a head."""
    H, _, dh = parts.heads

    def run(x: torch.Tensor) -> torch.Tensor | None:
        x4 = x.view(*x.shape[:-1], H, dh)  # (B, T, H, d_head)
        part = x4 if site.head is None else x4[..., site.head, :]
        y = _apply(site, fns, part)
        if y is None:
            return None
        new = x4.clone()
        if site.head is None:
            new.copy_(y)
        else:
            new[..., site.head, :] = y
        return new.view_as(x)
    return run


def _hook(site: Site, kind: str, run: Callable[[torch.Tensor], torch.Tensor | None]):
    if kind == "pre":
        def pre(_m, args, kwargs):
            if args:
                y = run(args[0])
                return None if y is None else ((y, *args[1:]), kwargs)
            y = run(kwargs["hidden_states"])
            return None if y is None else (args, {**kwargs, "hidden_states": y})
        return pre
    if kind == "pattern":
        def pattern(_m, _inp, out):
            if not isinstance(out, tuple) or len(out) < 2 or out[1] is None:
                raise SiteError(f"site {site}: attention weights are not returned; load the model with eager "
                                "attention")
            run(out[1])
        return pattern

    def post(_m, _inp, out):
        y = run(_first(out))
        return None if y is None else _with_first(out, y)
    return post


def _stop(_m, _inp, _out):
    raise StopForward


@contextmanager
def intervene(lm, edits: Mapping[Site | str, Edit | Sequence[Edit]] | None = None, *,
              stop_after: int | None = None, replay: tuple[int, torch.Tensor] | None = None,
              skip_mlp: Mapping[int, torch.Tensor] | None = None):
    """Apply `edits` ({site: edit or [edits]}) to every forward pass run inside the block (module docstring).
    `lm`: a LoadedModel or its ModelParts. SiteError (one line) for a site this model does not have."""
    parts = getattr(lm, "parts", lm)
    plan: dict[Site, list[Edit]] = {}
    for name, fns in (edits or {}).items():
        site = check_site(Site.parse(name), parts.n_layers)
        plan.setdefault(site, []).extend([fns] if callable(fns) else list(fns))
    with parts.lock:
        # resolving sites (and how blocks return) may need ModelParts' one traced pass: before any hook is in place
        targets = [(site, fns, *_module(parts, site)) for site, fns in plan.items()]
        as_tuple = parts.block_returns_tuple if replay is not None and replay[0] > 0 else False
        if any(s.head is not None for s in plan):
            for s in plan:
                check_site(s, parts.n_layers, parts.heads[0])
        handles, replayed = [], []
        for layer in skip_mlp or {}:
            check_site(Site("mlp_out", layer), parts.n_layers)
        try:
            for site, fns, module, kind in targets:
                run = _z_view(parts, site, fns) if site.kind == "z" else (lambda x, s=site, f=fns: _apply(s, f, x))
                hook = _hook(site, kind, run)
                handles.append(module.register_forward_pre_hook(hook, with_kwargs=True) if kind == "pre"
                               else module.register_forward_hook(hook))
            if stop_after is not None:
                handles.append(parts.layers[stop_after].register_forward_hook(_stop))
            if replay is not None and replay[0] > 0:
                replayed = _replay(parts, *replay, as_tuple)
            replayed += _skip_mlps(parts, skip_mlp or {})
            yield
        finally:
            for h in handles:
                h.remove()
            for block in replayed:
                block.__dict__.pop("forward", None)


def _replay(parts, layer: int, h: torch.Tensor, as_tuple: bool) -> list:
    """Blocks 0..layer-1 return `h` (block layer-1's output stream, (B, T, d_model)) without computing, in the
    form a block returns; returns the blocks."""
    blocks = parts.layers[:layer]

    def cached(*_args, **_kwargs):
        return (h.clone(),) if as_tuple else h.clone()

    for b in blocks:
        b.forward = cached  # an instance attribute shadows the class's forward; the module's hooks still run
    return blocks


def _skip_mlps(parts, outputs: Mapping[int, torch.Tensor]) -> list:
    """The MLP of each block L in `outputs` returns outputs[L] ((1 or B, T, d_model)) expanded to its input's batch,
    without computing; returns the MLP modules."""
    mlps = []
    for layer, y in outputs.items():
        mlp = parts.mlp[layer]

        def constant(x, *_args, y=y, **_kwargs):
            return y.to(x.device, x.dtype).expand(x.shape[0], *y.shape[1:]).clone()

        mlp.forward = constant  # an instance attribute shadows the class's forward; the module's hooks still run
        mlps.append(mlp)
    return mlps


def trace_block(parts) -> tuple[list[str], bool]:
    """(names of block 0's direct children in the order a forward pass calls them, whether the block returns a
    tuple), from one two-token pass: how core.model.parts tells the norms around the sublayers apart."""
    seen: list[str] = []
    out: list = []
    with parts.lock:
        handles = [child.register_forward_hook(lambda _m, _i, _o, n=name: seen.append(n))
                   for name, child in parts.layers[0].named_children()]
        handles.append(parts.layers[0].register_forward_hook(lambda _m, _i, o: out.append(o)))
        try:
            with torch.inference_mode():
                parts.base(input_ids=torch.zeros(1, 2, dtype=torch.long, device=module_device(parts.base)))
        finally:
            for h in handles:
                h.remove()
    return list(dict.fromkeys(seen)), isinstance(out[0], tuple)


# ----------------------------------------------------------------------------- edit makers
def _at(positions) -> tuple:
    """Index for (B, T, ...) activations selecting `positions` on T (all when None)."""
    return (slice(None),) if positions is None else (slice(None), positions)


def store(into: dict, key) -> Edit:
    """Read: keep the activation (detached) as into[key]; the last pass wins."""
    def fn(x: torch.Tensor) -> None:
        into[key] = x.detach()
    return fn


def keep(into: dict, key) -> Edit:
    """Read: keep the activation itself as into[key], still attached to the autograd graph (gradients through a
    pass, core.circuits); the last pass wins."""
    def fn(x: torch.Tensor) -> None:
        into[key] = x
    return fn


def detach() -> Edit:
    """Replace the activation by itself detached from the autograd graph: the same values, and no gradient flows
    back through this site (freezing what it depends on, e.g. attention patterns through q and k)."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        return x.detach()
    return fn


def zero(positions=None) -> Edit:
    """Replace the activation by zeros (at `positions`)."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y[_at(positions)] = 0
        return y
    return fn


def fill(value: torch.Tensor, positions=None) -> Edit:
    """Replace the activation by `value` broadcast over batch and positions (e.g. its mean: mean ablation)."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y[_at(positions)] = value.to(x.device, x.dtype)
        return y
    return fn


def add(vector: torch.Tensor, scale: float = 1.0, positions=None) -> Edit:
    """Add scale * vector (broadcast over batch and positions; e.g. a steering vector (d_model,))."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y[_at(positions)] += (scale * vector).to(x.device, x.dtype)
        return y
    return fn


def patch(source: torch.Tensor, positions=None) -> Edit:
    """Replace the activation by `source` (the same site's activation from another pass, same shape) at
    `positions` (all when None)."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        if source.shape != x.shape:
            raise SiteError(f"a patch of shape {tuple(source.shape)} cannot replace {tuple(x.shape)}")
        y = x.clone()
        y[_at(positions)] = source[_at(positions)].to(x.device, x.dtype)
        return y
    return fn


def project_out(direction: torch.Tensor, positions=None) -> Edit:
    """x <- x - (x . r) r with r = direction / |direction| (directional ablation), on the last dim."""
    r = direction.float() / direction.float().norm()

    def fn(x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        sel = y[_at(positions)]
        rd = r.to(x.device)
        y[_at(positions)] = (sel.float() - (sel.float() @ rd)[..., None] * rd).to(x.dtype)
        return y
    return fn
