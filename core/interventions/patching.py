"""Activation patching and back-patching, every patched pass an edit through core.model.intervene.

Patching (Meng et al.; TransformerLens's act-patching conventions): a clean and a corrupted prompt of equal token
length, an answer and a foil token. Metric m = logit(answer) − logit(foil) at the last position; a patched run's
value is normalised as (m_patched − m_corrupted) / (m_clean − m_corrupted): 1 = the clean behaviour restored, 0 = no
effect. One cell = the corrupted run with one activation replaced by the clean run's:

    resid  resid_pre.L at position p (layer × position)       attn  attn_out.L at p       mlp  mlp_out.L at p
    heads  head h's output z.L.h at every position (layer × head)

The cells of one layer run as one batch (a row per position or head), and blocks 0..L-1, which no cell of that layer
changes, are replayed from the corrupted run's stream instead of computed (intervene's `replay`).

Direction patching: at one site only the component along a direction d̂ is patched, x ← x + ((x_clean − x)·d̂) d̂,
with `controls` random directions of the same norm patched the same way beside it (a subspace patch can move the
metric through directions that do not carry the clean information; "Is This the Subspace You Are Looking For?").

Back-patching (after "Hopping Too Late"): one prompt, one pass; the last position's block-s output (resid_post.s)
written into block t's output (resid_post.t) and the rest of the model run again; a source × target grid of the
answer's probability and rank. Writing a block's output into itself changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.errors import UserError
from core.model.intervene import store
from core.model.run import check_length, forward_until, logits
from core.model.tokens import tokenize


class PatchError(UserError):
    """Unusable patching input (one line)."""



@dataclass
class PatchResult:
    clean_diff: float
    corrupted_diff: float
    tokens: list[str]  # the clean prompt's tokens
    resid: np.ndarray  # (L, T) normalised
    attn: np.ndarray  # (L, T)
    mlp: np.ndarray  # (L, T)
    heads: np.ndarray  # (L, H)

    def as_dict(self) -> dict:
        return {"clean_diff": self.clean_diff, "corrupted_diff": self.corrupted_diff, "tokens": self.tokens,
                "resid": self.resid.tolist(), "attn": self.attn.tolist(), "mlp": self.mlp.tolist(),
                "heads": self.heads.tolist()}


def one_token(lm, text: str, what: str) -> int:
    """The id of `text` as a single token (a leading space is the caller's choice); PatchError otherwise."""
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise PatchError(f"the {what} {text!r} is {len(ids)} tokens for {lm.name}; it must be exactly one")
    return int(ids[0])


def prompt_pair(lm, clean: str, corrupted: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, T) ids of both prompts; PatchError unless they have the same token length."""
    if not clean.strip() or not corrupted.strip():
        raise PatchError("the clean and corrupted prompts must not be empty")
    a, b = tokenize(lm.tokenizer, clean), tokenize(lm.tokenizer, corrupted)
    if len(a) != len(b):
        raise PatchError(f"the clean prompt is {len(a)} tokens and the corrupted one {len(b)}; patching needs "
                         "equal lengths")
    check_length(lm.model, len(a))
    return torch.tensor([a]), torch.tensor([b])


def _diff(out: torch.Tensor, answer: int, foil: int) -> torch.Tensor:
    """(B,) logit difference at the last position of logits (B, T, V) or last-position logits (B, V)."""
    last = (out[:, -1] if out.ndim == 3 else out).float().cpu()
    return last[:, answer] - last[:, foil]


def last_logits(lm, ids: torch.Tensor, edits: dict | None = None, replay=None) -> torch.Tensor:
    """(B, V) the logits at the last position only, with `edits`: the blocks run, then only the last position is
    unembedded (final norm, output embedding, soft-capping: core.model.run.unembed), not all T."""
    from core.model.run import unembed

    got: dict = {}
    n = lm.n_layers
    edits = dict(edits or {})
    key = f"resid_post.{n - 1}"
    edits[key] = [*([edits[key]] if key in edits and callable(edits[key]) else edits.get(key, [])), store(got, 0)]
    forward_until(lm, ids, n - 1, edits=edits, replay=replay)
    return unembed(lm, got[0][:, -1])


def _cells(src: torch.Tensor, pos: torch.Tensor):
    """Edit: row b takes the source's (1, T, ...) position pos[b]."""
    rows = torch.arange(len(pos))

    def fn(x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y[rows, pos] = src[0, pos].to(x.dtype)
        return y
    return fn


def _heads(src: torch.Tensor):
    """Edit on z viewed (B, T, H, d_head): row b takes the source's head b at every position."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        h = torch.arange(x.shape[0])
        y[h, :, h] = src[0][:, h].transpose(0, 1).to(x.dtype)  # (H, T, d_head)
        return y
    return fn


@torch.inference_mode()
def capture(lm, ids: torch.Tensor, kinds: tuple[str, ...]) -> tuple[torch.Tensor, dict]:
    """(logits (1, T, V), {(kind, layer): activation}) of one pass storing each kind at every layer."""
    got: dict = {}
    edits = {f"{k}.{L}": store(got, (k, L)) for k in kinds for L in range(lm.n_layers)}
    return logits(lm, ids, edits=edits), got


def _replay(corrupt: dict, L: int, B: int):
    return (L, corrupt[("resid_post", L - 1)].expand(B, -1, -1)) if L > 0 else None


@torch.inference_mode()
def patch_grid(lm, clean: str, corrupted: str, answer: str, foil: str, on_layer=None,
               kinds: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out", "heads")) -> PatchResult:
    """Every cell of the resid, attn, mlp (layer × position) and heads (layer × head) grids, normalised (grids not
    in `kinds` are left at zero)."""
    c_ids, x_ids = prompt_pair(lm, clean, corrupted)
    a, f = one_token(lm, answer, "answer"), one_token(lm, foil, "foil")
    c_out, c_act = capture(lm, c_ids, ("resid_pre", "attn_out", "mlp_out", "z"))
    x_out, x_act = capture(lm, x_ids, ("resid_post",))
    m_c, m_x = float(_diff(c_out, a, f)[0]), float(_diff(x_out, a, f)[0])
    if abs(m_c - m_x) < 1e-6:
        raise PatchError(f"the clean and corrupted prompts give the same logit difference ({m_c:.4g}): nothing "
                         "to restore")
    T, H = c_ids.shape[1], lm.parts.heads[0]
    grids = {k: np.zeros((lm.n_layers, T)) for k in ("resid_pre", "attn_out", "mlp_out")}
    todo = [k for k in grids if k in kinds]
    heads = np.zeros((lm.n_layers, H))
    pos = torch.arange(T)
    for L in range(lm.n_layers):
        for kind in todo:
            grid, ids = grids[kind], x_ids.expand(T, -1)
            out = last_logits(lm, ids, {f"{kind}.{L}": _cells(c_act[(kind, L)], pos)}, _replay(x_act, L, T))
            grid[L] = ((_diff(out, a, f) - m_x) / (m_c - m_x)).numpy()
        if "heads" in kinds:
            out = last_logits(lm, x_ids.expand(H, -1), {f"z.{L}": _heads(c_act[("z", L)])}, _replay(x_act, L, H))
            heads[L] = ((_diff(out, a, f) - m_x) / (m_c - m_x)).numpy()
        if on_layer:
            on_layer(L + 1, lm.n_layers)
    from core.model.tokens import token_texts

    return PatchResult(m_c, m_x, token_texts(lm.tokenizer, c_ids[0].tolist()), grids["resid_pre"],
                       grids["attn_out"], grids["mlp_out"], heads)


def store_patch(db: str, model: str, pair: dict, lm=None, on_layer=None) -> dict:
    """patch_grid of `pair` ({clean, corrupted, answer, foil}) on the model, stored in the index `db`
    (core.index.patch_grids) with the weights' SHA-256, the model's source and the package versions; the result."""
    from core.findings.manifest import versions, weights_sha256
    from core.index import patch_grids, writer
    from core.index.db import connect
    from core.model.load import load_model
    from core.model.tokens import vocab_strings

    lm = lm or load_model(model)
    res = patch_grid(lm, **pair, on_layer=on_layer).as_dict()
    prov = {"weights_sha256": weights_sha256(lm.model), "source": lm.source,
            "versions": versions() | patch_grids.package_versions()}
    con = connect(db)
    try:
        patch_grids.put(con, writer.ensure_model(con, lm.info(), vocab_strings(lm.tokenizer)), pair, res, prov)
    finally:
        con.close()
    return res


@torch.inference_mode()
def direction_patch(lm, clean: str, corrupted: str, answer: str, foil: str, site: str, direction: torch.Tensor,
                    controls: int = 8, seed: int = 0) -> dict:
    """The normalised effect of patching only the component along `direction` at `site` (every position), and of
    `controls` random directions of the same norm: {"effect", "controls": [...], "control_mean", "control_max"}."""
    c_ids, x_ids = prompt_pair(lm, clean, corrupted)
    a, f = one_token(lm, answer, "answer"), one_token(lm, foil, "foil")
    got: dict = {}
    c_out = logits(lm, c_ids, edits={site: store(got, "c")})
    x_out = logits(lm, x_ids)
    src = got["c"]  # (1, T, d)
    if direction.shape[-1] != src.shape[-1]:
        raise PatchError(f"the direction is {direction.shape[-1]} wide but {site} is {src.shape[-1]}")
    m_c, m_x = float(_diff(c_out, a, f)[0]), float(_diff(x_out, a, f)[0])
    g = torch.Generator().manual_seed(seed)
    dirs = [direction.float()] + [torch.randn(src.shape[-1], generator=g) for _ in range(controls)]
    U = torch.stack([d / d.norm() for d in dirs])  # (1 + controls, d) unit rows

    def along(x: torch.Tensor) -> torch.Tensor:  # row b moves to the clean value along U[b]
        u = U.to(x.device)[:, None, :]
        delta = ((src.float() - x.float()) * u).sum(-1, keepdim=True)  # (B, T, 1)
        return (x.float() + delta * u).to(x.dtype)

    out = last_logits(lm, x_ids.expand(len(U), -1), {site: along})
    eff = ((_diff(out, a, f) - m_x) / (m_c - m_x)).tolist()
    return {"site": site, "effect": eff[0], "controls": eff[1:], "control_mean": float(np.mean(eff[1:])),
            "control_max": float(np.max(np.abs(eff[1:]))), "clean_diff": m_c, "corrupted_diff": m_x}


@dataclass
class BackPatch:
    tokens: list[str]
    answer: str
    prob: np.ndarray  # (L source, L target) the answer's probability at the last position
    rank: np.ndarray  # (L, L) its rank (0 = top)
    base_prob: float
    base_rank: int

    def as_dict(self) -> dict:
        return {"tokens": self.tokens, "answer": self.answer, "base_prob": self.base_prob,
                "base_rank": self.base_rank, "prob": self.prob.tolist(), "rank": self.rank.tolist()}


@torch.inference_mode()
def backpatch(lm, prompt: str, answer: str, on_layer=None) -> BackPatch:
    """Grid [s, t]: block s's last-position output written over block t's, the answer's probability and rank."""
    if not prompt.strip():
        raise PatchError("the prompt must not be empty")
    ids = torch.tensor([tokenize(lm.tokenizer, prompt)])
    check_length(lm.model, ids.shape[1])
    a = one_token(lm, answer, "answer")
    out, act = capture(lm, ids, ("resid_post",))
    n = lm.n_layers
    src = torch.cat([act[("resid_post", s)][:, -1] for s in range(n)])  # (n, d) each block's last-position output
    prob, rank = np.zeros((n, n)), np.zeros((n, n), dtype=int)
    rows = torch.arange(n)

    def write(x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y[rows, -1] = src.to(x.dtype)
        return y

    for t in range(n):
        o = last_logits(lm, ids.expand(n, -1), {f"resid_post.{t}": write}, _replay(act, t, n))
        prob[:, t], rank[:, t] = _prob_rank(o, a)
        if on_layer:
            on_layer(t + 1, n)
    from core.model.tokens import token_texts

    p0, r0 = _prob_rank(out[:, -1].float(), a)
    return BackPatch(token_texts(lm.tokenizer, ids[0].tolist()), answer, prob, rank, float(p0[0]), int(r0[0]))


def _prob_rank(last: torch.Tensor, a: int) -> tuple[np.ndarray, np.ndarray]:
    """(B,) probability and rank (0 = top) of token a in logits (B, V)."""
    last = last.float().cpu()
    p = last.softmax(-1)[:, a]
    return p.numpy(), (last > last[:, a: a + 1]).sum(-1).numpy()
