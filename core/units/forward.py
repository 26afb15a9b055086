"""The extraction forward pass: every window of a chunk through the model once, hooks folding the MLP neurons (and
the --sae features) into the run's reducers, each token's residual norm per layer, and the --capture rows; the
--sae files loaded and checked against the model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from core.data.corpus import Chunk, batches
from core.faults import point
from core.model.intervene import Edit
from core.model.load import LoadedModel
from core.model.run import forward_until, pad_batch
from core.model.sites import Site
from core.units.reduce import LayerReducer
from core.units.run_state import RunState


def load_saes(paths: list[str], lm: LoadedModel) -> list[tuple]:
    """[(SAE, input Site)] for --sae, each checked against this model (SAEError, one line, before any write). A
    transcoder set folder (core.saes.transcoders) gives one SAE per layer; each SAE's meta["source"] is the path
    that reloads it (a set's layer_L.safetensors). Memory per SAE: its weights and a reducer of ~17 KB per feature at
    the default settings (smollm2, all 30 layers of 4,608 features: 2.4 GB of reducers + 0.64 GB of weights)."""
    from core.saes import formats, transcoders
    from core.saes.sae import check_for_model

    out = []
    for path in paths:
        is_set = transcoders.is_transcoder_set(path)
        for sae in formats.load_saes(path) if is_set else [formats.load_sae(path)]:
            sae.meta["source"] = sae.meta["path"] if is_set else str(path)
            site = check_for_model(sae, lm)[0]
            out.append((sae.to(lm.device), site))
    return out


def forward_chunk(lm: LoadedModel, chunk: Chunk, reducers: dict[int, LayerReducer], *, batch_tokens: int = 4096,
                  include_special: bool = False, saes: dict[int, tuple] | None = None):
    """The extraction forward pass alone (no index writes, no checkpoint): folds `chunk` into `reducers`
    ({layer: LayerReducer}, and {-s: ...} for `saes` {-s: (SAE, input Site)}) exactly as `extract` does and returns
    the chunk's (tokens, norms). For benchmarks and for Ray tasks (core.units.shards)."""
    special = set() if include_special else set(lm.tokenizer.all_special_ids)
    run = RunState(run_id=0, corpus_id=0, layers=sorted(g for g in reducers if g >= 0), target=0, reducers=reducers,
                   special=special, saes=saes or {})
    return fold_chunk(lm, chunk, run, batch_tokens, include_special)


@torch.inference_mode()
def fold_chunk(lm: LoadedModel, chunk: Chunk, run: RunState, batch_tokens: int, include_special: bool,
               on_batch: Callable[[int], None] | None = None):
    """Every window of the chunk through the model once; hooks fold MLP activations into the reducers.

    Returns the chunk's token rows (document order) and their residual norms (n_tokens, n_layers).
    """
    layers = run.layers
    any_red = next(iter(run.reducers.values()))
    W = any_red.cfg.ctx_window if any_red.cfg.ctx_examples else None
    n = chunk.n_tokens
    norms = np.zeros((n, len(layers)), np.float32)
    sel: dict[str, torch.Tensor] = {}

    def fold(layer: int) -> Edit:  # neurons: (B, T, d_mlp) -> the layer's reducer
        def fn(x: torch.Tensor) -> None:
            a = x.reshape(-1, x.shape[-1])  # (B*T, d_mlp); the reducer takes it as float32 on its device
            ctx = (a, sel["ctx"]) if "ctx" in sel else None
            run.reducers[layer].update(a if sel["all"] else a[sel["rows"]], sel["tok"], ctx)
        return fn

    def norm(j: int) -> Edit:  # resid_post: (B, T, d_model) -> each real token's L2 norm
        def fn(h: torch.Tensor) -> None:
            norms[sel["dst"], j] = torch.linalg.vector_norm(h.float(), dim=-1).reshape(-1).cpu()[sel["valid"]].numpy()
        return fn

    def fold_sae(group: int) -> Edit:  # an SAE's input site (B, T, ...) -> its features (B*T, d_sae) -> reducer
        sae = run.saes[group][0]

        def fn(x: torch.Tensor) -> None:
            f = sae.encode(x.reshape(-1, sae.d_in).float())  # (B*T, d_sae); padding rows are never selected
            ctx = (f, sel["ctx"]) if "ctx" in sel else None
            run.reducers[group].update(f if sel["all"] else f[sel["rows"]], sel["tok"], ctx)
        return fn

    edits: dict[Site, list[Edit]] = {}
    for layer in layers:
        edits.setdefault(Site("neurons", layer), []).append(fold(layer))
    for j, layer in enumerate(layers):
        edits.setdefault(Site("resid_post", layer), []).append(norm(j))
    for group, (_, site) in run.saes.items():
        edits.setdefault(site, []).append(fold_sae(group))
    extra = [site.layer for _, site in run.saes.values()]
    if run.capture:  # an activation cache: the counted tokens' rows (float16) and whether their window is held out
        from core.saes.acts import held_out

        cap_site = run.capture[0]
        run.cap_rows = []

        def keep(x: torch.Tensor) -> None:
            a = x.reshape(x.shape[0] * x.shape[1], -1).cpu()[sel["rows"]].to(torch.float16)  # (n, d)
            run.cap_rows.append((a, sel["held"][sel["rows"] // x.shape[1]]))

        edits.setdefault(cap_site, []).append(keep)
        extra.append(cap_site.layer)
    last = max(list(layers) + extra)
    red_dev = any_red.device
    done = 0
    for batch in batches(chunk.windows, batch_tokens):
        ids, valid, counted, tok = _pack(batch, run.special, include_special)
        sel["valid"] = valid.reshape(-1).nonzero().squeeze(1)
        sel["dst"] = (tok.reshape(-1)[sel["valid"]] - chunk.tok0).numpy()
        rows = counted.reshape(-1).nonzero().squeeze(1)
        sel["all"] = rows.numel() == counted.numel()
        sel["rows"], sel["tok"] = rows, tok.reshape(-1)[rows]
        if run.capture:
            sel["held"] = torch.tensor([held_out(w.doc_id, w.start) for w in batch], dtype=torch.uint8)
        if W is not None:
            sel["ctx"] = _context_rows(valid, rows, W)
        if red_dev.type != "cpu":  # once per batch, not once per layer
            sel["tok"] = sel["tok"].to(red_dev)
            if W is not None:
                sel["ctx"] = sel["ctx"].to(red_dev)
        forward_until(lm, ids, last, edits=edits)  # no unembedding: it is not needed here
        done += int(valid.sum())
        point("batch")  # the fault matrix: killed mid-chunk
        if on_batch:
            on_batch(done)
    token_ids = np.concatenate([np.asarray(ids, np.int32) for _, _, ids in chunk.docs])
    tokens = {"doc_id": np.concatenate([np.full(len(ids), d, np.int32) for d, _, ids in chunk.docs]),
              "position": np.concatenate([np.arange(len(ids), dtype=np.int32) for _, _, ids in chunk.docs]),
              "token_id": token_ids,
              "counted": np.ones(n, bool) if include_special else ~np.isin(token_ids, list(run.special))}
    return tokens, norms


def _context_rows(valid: torch.Tensor, rows: torch.Tensor, W: int) -> torch.Tensor:
    """(n, 2W+1) flat (B*T) row of each counted token's neighbours at offsets -W..W; -1 outside its window."""
    B, T = valid.shape
    lens = valid.sum(1)  # (B,) right padding: window b holds positions 0..lens[b]-1
    t = (rows % T)[:, None] + torch.arange(-W, W + 1)  # (n, 2W+1) position within the window
    inside = (t >= 0) & (t < lens[rows // T][:, None])
    return torch.where(inside, (rows // T * T)[:, None] + t, -1)


def _pack(batch, special: set[int], include_special: bool):
    """Right-padded (B, T) ids and valid mask (core.model.run.pad_batch), each token's global index (B, T) and
    whether it is counted in unit statistics (B, T)."""
    ids, valid = pad_batch([w.ids for w in batch])
    tok = torch.zeros(ids.shape, dtype=torch.long)
    for i, w in enumerate(batch):
        tok[i, : len(w.ids)] = torch.arange(w.tok0, w.tok0 + len(w.ids))
    counted = valid if include_special or not special else valid & ~torch.isin(ids, torch.tensor(sorted(special)))
    return ids, valid, counted, tok
