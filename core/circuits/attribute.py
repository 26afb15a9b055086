"""Attribution: the direct effects A[target, source] of a prompt's graph, from batched backward passes through the
frozen replacement model (core.circuits.replacement), in circuit-tracer's order and with its choices.

Nodes (core.circuits.graph): every active transcoder feature (activation > 0, position 0 left out), an error node
per (layer, position) holding the MLP output minus the transcoder's output (0 at position 0), a token node per
position, and the logit targets: the most probable next tokens until their probabilities sum to `logit_prob` (at
most `max_logits`), or the tokens asked for; target k reads `W_U[k] − mean_v W_U[v]` from the final norm's output.

A row is one target. Its scalar is injected as a gradient: a feature target reads `W_enc[f] · mlp_in_L[p]` (its
pre-activation without b_enc), a logit target `(W_U[k] − mean W_U) · final_norm(h)[T−1]`. One backward pass over B
copies gives B rows: with g = ∂scalar/∂M_L (M_L the MLP output at layer L) and g_E = ∂scalar/∂E,

    feature source s (layer l, position p)   A = a_s · (g_l[p] · W_dec_l[s])
    error source (l, p)                      A = g_l[p] · error_l[p]
    token source p                           A = g_E[p] · E[p]

Sources at or above a feature target's layer get zero (an MLP's output comes after its input). Work: one forward
pass of the attention sublayers over B copies (MLPs are not computed), then one backward pass per B rows through
attention's value and output maps only; so the time grows with (features + logits) / B × layers × T × d², i.e.
linearly in the number of active features and about quadratically in prompt length (more positions, more active
features). With `max_features` below the number of active features, rows are computed in circuit-tracer's order:
logits first, then features by their influence on the rows computed so far, refreshed every 4 batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from core.circuits.graph import Graph, normalize
from core.circuits.prompt import GraphError, graph_tokens, target_ids
from core.circuits.replacement import Clean, Frozen, check_supported, clean_pass, frozen_pass


@dataclass
class AttributionConfig:
    max_logits: int = 10
    """At most this many logit targets (the most probable next tokens)."""
    logit_prob: float = 0.95
    """Logit targets are added until their probabilities sum to this."""
    max_features: int | None = 7500
    """At most this many feature nodes, the most influential first (None: every active feature)."""
    batch_size: int = 64
    """Targets per backward pass (copies of the prompt in the forward pass)."""


@dataclass(frozen=True)
class Active:
    """The active transcoder features of a prompt, in (layer, position, feature) order."""

    index: torch.Tensor  # (n, 3) int64 layer, position, feature
    values: torch.Tensor  # (n,) float32 activations
    encoders: torch.Tensor  # (n, d) float32 W_enc rows (what a feature target reads)
    decoders: torch.Tensor  # (n, d) float32 activation × W_dec rows (what a feature source writes)
    errors: torch.Tensor  # (L, T, d) MLP output minus the transcoder's output, 0 at position 0


def active_features(transcoders, clean: Clean) -> Active:
    """Encode each layer's MLP input with its transcoder; the error is the MLP output minus the reconstruction."""
    idx, vals, encs, decs, errs = [], [], [], [], []
    for layer, tc in enumerate(transcoders):
        x = clean.mlp_in[layer]  # (T, d)
        acts = tc.encode(x)  # (T, d_tc)
        acts[0] = 0
        recon = acts @ tc.W_dec + tc.b_dec  # (T, d)
        if getattr(tc, "W_skip", None) is not None:
            recon = recon + x @ tc.W_skip
        err = clean.mlp_out[layer] - recon
        err[0] = 0
        pos, feat = acts.nonzero(as_tuple=True)  # row-major: by position, then feature
        idx.append(torch.stack([torch.full_like(pos, layer), pos, feat], dim=1))
        vals.append(acts[pos, feat])
        encs.append(tc.W_enc[:, feat].T)
        decs.append(tc.W_dec[feat] * acts[pos, feat, None])
        errs.append(err)
    return Active(torch.cat(idx), torch.cat(vals), torch.cat(encs), torch.cat(decs), torch.stack(errs))


def logit_targets(lm, clean: Clean, cfg: AttributionConfig, targets: list[int] | None):
    """(ids, probabilities, demeaned unembedding rows (K, d)) of the logit targets (module docstring)."""
    probs = clean.logits.softmax(-1)
    if targets:
        ids = torch.tensor(targets)
    else:
        top_p, top_i = probs.topk(min(cfg.max_logits, len(probs)))
        cut = int(torch.searchsorted(top_p.cumsum(0), torch.tensor(cfg.logit_prob))) + 1
        ids = top_i[:cut]
    W_U = lm.model.get_output_embeddings().weight.detach().float()  # (V, d)
    return ids.tolist(), probs[ids], W_U[ids] - W_U.mean(0)


class Rows:
    """Computes rows of direct effects from one retained forward pass of the frozen model."""

    def __init__(self, lm, ids: list[int], clean: Clean, active: Active, skips, batch: int):
        self.clean, self.active, self.batch, self.T, self.L = clean, active, batch, len(ids), lm.n_layers
        self.frozen: Frozen = frozen_pass(lm, ids, clean, batch, skips)
        self.n_feat = len(active.values)
        self.offset = self.n_feat + (self.L + 1) * self.T  # columns: features, errors, tokens
        layer, pos = active.index[:, 0], active.index[:, 1]
        self.by_layer = [(layer == lay).nonzero().flatten() for lay in range(self.L)]  # feature indices per layer
        self.pos_of = [pos[cols] for cols in self.by_layer]

    def compute(self, layers: list[int | None], positions: list[int], vectors: torch.Tensor) -> torch.Tensor:
        """(n, offset) rows for n ≤ B targets: target i reads vectors[i] at mlp_in of layers[i] (None: the final
        norm's output) at positions[i]."""
        n, f = len(layers), self.frozen
        loss = torch.zeros(())
        for lay in sorted(set(layers), key=lambda v: -1 if v is None else v):
            rows = [i for i in range(n) if layers[i] == lay]
            b, p = torch.tensor(rows), torch.tensor([positions[i] for i in rows])
            h = f.resid_last[b, p] * self.clean.final_ratio[p] if lay is None else f.mlp_in[lay][b, p]  # (r, d)
            loss = loss + (h * vectors[rows]).sum()
        grads = torch.autograd.grad(loss, [f.embed, *f.mlp_out], retain_graph=True, allow_unused=True)
        out = torch.zeros(n, self.offset)
        for lay, g in enumerate(grads[1:]):
            if g is None:
                continue
            g = g[:n]  # (n, T, d)
            cols = self.by_layer[lay]
            if len(cols):  # every position's gradient times every decoder row of the layer, then each at its own
                full = (g.reshape(n * self.T, -1) @ self.active.decoders[cols].T).view(n, self.T, len(cols))
                out[:, cols] = full[:, self.pos_of[lay], torch.arange(len(cols))]  # (n, n_l)
            e0 = self.n_feat + lay * self.T
            out[:, e0:e0 + self.T] = torch.einsum("ntd,td->nt", g, self.active.errors[lay])
        t0 = self.n_feat + self.L * self.T
        out[:, t0:t0 + self.T] = torch.einsum("ntd,td->nt", grads[0][:n], self.clean.resid_pre[0])
        return out


def partial_influence(rows: torch.Tensor, row_nodes: torch.Tensor, probs: torch.Tensor, n_nodes: int,
                      max_iter: int = 128) -> torch.Tensor:
    """circuit-tracer's `compute_partial_influences`: influence on the logits over the rows computed so far
    (rows (r, offset) whose nodes are `row_nodes`), to rank the features not yet computed."""
    W = normalize(rows)
    cur = torch.zeros(n_nodes)
    cur[-len(probs):] = probs
    total = torch.zeros(n_nodes)
    for _ in range(max_iter):
        nxt = torch.zeros(n_nodes)
        nxt[:W.shape[1]] = cur[row_nodes] @ W
        if not nxt.any():
            return total
        total += nxt
        cur = nxt
    raise RuntimeError("partial influence did not converge")


def attribute(lm, transcoders, prompt: str, cfg: AttributionConfig | None = None, *, targets: list[str] | None = None,
              on_progress: Callable[[int, int], None] | None = None, model_name: str = "", scan: str = "") -> Graph:
    """The attribution graph of `prompt` on `lm` with one transcoder per layer (`transcoders[L]`, core.saes SAE
    objects reading mlp_in.L and writing mlp_out.L); GraphError (one line) for bad input."""
    cfg = cfg or AttributionConfig()
    if cfg.max_features is not None and cfg.max_features < 1:
        raise GraphError("--max-feature-nodes must be at least 1")
    if cfg.batch_size < 1:
        raise GraphError("--batch-size must be at least 1")
    check_supported(lm)
    if len(transcoders) != lm.n_layers:
        raise GraphError(f"the transcoder set has {len(transcoders)} layers; {lm.name} has {lm.n_layers}")
    t0 = time.perf_counter()
    ids = graph_tokens(lm, prompt)
    wanted = target_ids(lm, targets) if targets else None
    clean = clean_pass(lm, ids)
    active = active_features(transcoders, clean)
    logit_ids, probs, vecs = logit_targets(lm, clean, cfg, wanted)
    n_feat, K, T, L = len(active.values), len(logit_ids), len(ids), lm.n_layers
    max_feat = n_feat if cfg.max_features is None else min(cfg.max_features, n_feat)
    rows = Rows(lm, ids, clean, active, [getattr(tc, "W_skip", None) for tc in transcoders], cfg.batch_size)
    t_forward = time.perf_counter()
    n_nodes = rows.offset + K
    total_batches = -(-K // cfg.batch_size) + -(-max_feat // cfg.batch_size)
    done = 0

    def step():
        nonlocal done
        done += 1
        if on_progress:
            on_progress(done, total_batches)

    logit_rows = []
    for i in range(0, K, cfg.batch_size):
        sl = slice(i, i + cfg.batch_size)
        logit_rows.append(rows.compute([None] * len(vecs[sl]), [T - 1] * len(vecs[sl]), vecs[sl]))
        step()
    feat_rows = torch.zeros(max_feat, rows.offset)
    order: list[int] = []
    visited = torch.zeros(n_feat, dtype=torch.bool)
    lrows = torch.cat(logit_rows)
    while len(order) < max_feat:
        if max_feat == n_feat:
            pending = torch.arange(n_feat)
        else:
            have = torch.cat([lrows, feat_rows[:len(order)]])
            nodes = torch.cat([torch.arange(rows.offset, n_nodes), torch.tensor(order, dtype=torch.long)])
            infl = partial_influence(have, nodes, probs, n_nodes)
            rank = infl[:n_feat].argsort(descending=True)
            pending = rank[~visited[rank]][:min(4 * cfg.batch_size, max_feat - len(order))]
        for chunk in pending.split(cfg.batch_size):
            got = rows.compute(active.index[chunk, 0].tolist(), active.index[chunk, 1].tolist(), active.encoders[chunk])
            feat_rows[len(order):len(order) + len(chunk)] = got
            order += chunk.tolist()
            visited[chunk] = True
            step()
    selected = torch.tensor(sorted(order), dtype=torch.long)
    by_feature = feat_rows[torch.tensor(order).argsort()]  # rows in ascending feature index
    keep_cols = torch.cat([selected, torch.arange(n_feat, rows.offset)])
    N = max_feat + (L + 1) * T + K
    A = torch.zeros(N, N)
    A[:max_feat, :N - K] = by_feature[:, keep_cols]
    A[N - K:, :N - K] = lrows[:, keep_cols]
    tok = lm.tokenizer
    settings = {"max_logits": cfg.max_logits, "logit_prob": cfg.logit_prob, "max_features": cfg.max_features,
                "batch_size": cfg.batch_size, "active_features": n_feat, "targets": targets or [],
                "seconds_forward": round(t_forward - t0, 3), "seconds_total": round(time.perf_counter() - t0, 3)}
    return Graph(prompt=prompt, tokens=ids, token_strs=[tok.decode([t]) for t in ids], n_layers=L,
                 active=active.index, activations=active.values, selected=selected, adjacency=A,
                 logit_ids=logit_ids, logit_strs=[tok.decode([t]) for t in logit_ids], logit_probs=probs.float(),
                 model=model_name or lm.name, transcoders=scan, decoded=tok.decode(ids), settings=settings)
