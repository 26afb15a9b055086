"""Short labels for a graph's feature nodes, read without running the language model.

Each feature node (layer L, feature f of the graph's transcoder set) gets:
  text     its stored explanation (`neuroboard explain`, core.index.explanations) where the index has one; else the
           label `explain` writes without a model (core.autointerp.prompts.token_list over the feature's top
           examples: their marked tokens named by their token class when most share one, core.autointerp.lexical,
           else the most frequent marked tokens); '' when the index has not indexed the set's layer. The leading
           "the neuron responds to " and the final full stop are left out.
  source   'explanation' | 'token class' | 'top tokens' | '' (nothing in the index)
  writes   the tokens its decoder row promotes most: W_U (g ⊙ W_dec[f]), g the final norm's elementwise gain, the
           feature page's logit effects (core.units.logit_effects.direction_effects) for a transcoder writing
           mlp_out.L, whose output adds to the residual stream as it is.
  link     its feature page, /features?run=R&sae=S&feature=f, where the index holds the layer.

The index knows a set's layers as the SAEs `neuroboard extract --sae SET_DIR` stored for them (core.units.forward):
one per layer, named `SET/layer_L`, its path the layer's file SET_DIR/layer_L.safetensors (`set_units`). Reads, per run
that indexed the set: one query for the explanations of every node's feature, one for their top examples
(core.index.feature_labels), one for their tokens and one for the vocabulary. Writes:
one matrix product per layer of the unique (layer, feature) pairs; `Unembedding` is made once per model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from core.circuits.graph import FEATURE
from core.circuits.nodes import GraphNodes, wire_nodes
from core.circuits.prompt import GraphError

PREFIX = "the neuron responds to "


@dataclass(frozen=True)
class Label:
    text: str
    source: str
    """'explanation' | 'token class' | 'top tokens' | '' (module docstring)."""
    writes: list[str]
    """The tokens its decoder row promotes most, strongest first."""
    link: str | None = None
    """Its feature page (/features?run=R&sae=S&feature=F), where the index holds its layer."""


@dataclass(frozen=True)
class Unembedding:
    """What a residual-stream direction writes into the logits, without a forward pass: make once per model."""

    W_U: torch.Tensor  # (V, d) float32 the output embedding
    gain: torch.Tensor  # (d,) float32 the final norm's elementwise gain
    vocab: list[str]
    """Each token id's display string."""

    def top(self, directions: torch.Tensor, k: int) -> list[list[int]]:
        """The k token ids each direction (n, d) promotes most, strongest first."""
        out: list[list[int]] = []
        for chunk in directions.float().split(256):
            vals = (chunk * self.gain) @ self.W_U.T  # (c, V)
            out += vals.topk(min(k, vals.shape[1]), dim=1).indices.tolist()
        return out


def unembedding(lm) -> Unembedding:
    from core.model.tokens import vocab_strings
    from core.units.logit_effects import final_gain

    W_U = lm.model.get_output_embeddings().weight.detach().float().cpu()
    return Unembedding(W_U, final_gain(lm).cpu(), vocab_strings(lm.tokenizer))


def _mtime(path: Path) -> float:
    try:
        return max(f.stat().st_mtime for f in path.iterdir())
    except (OSError, ValueError):
        return 0.0


@lru_cache(maxsize=4)
def _load_set(path: str, _mtime: float):
    from core.saes.transcoders import load_transcoder_set

    return load_transcoder_set(path)


def transcoder_set(path: str):
    """The transcoder set in `path`, loaded once per version of its files (GraphError, one line, when unreadable)."""
    from core.saes.sae import SAEError

    p = Path(path).expanduser().resolve()
    try:
        return _load_set(str(p), _mtime(p) if p.is_dir() else 0.0)
    except SAEError as e:
        raise GraphError(str(e)) from None


def set_units(con, set_path: str) -> dict[int, tuple[int, int]]:
    """{layer: (run_id, sae_id)} of the index's SAEs for the set's layers: the SAE whose file is the set's
    layer_L.safetensors (else, for a moved folder, one named SET/layer_L), newest run with results first."""
    from core.index.feature_labels import saes_by_path

    p = Path(set_path).expanduser()
    folders = {str(p), os.path.abspath(p), str(p.resolve())}
    ts = transcoder_set(set_path)
    paths = [str(Path(f) / f"layer_{L}.safetensors") for f in folders for L in ts.layers]
    names = [f"{p.resolve().name}/layer_{L}" for L in ts.layers]
    out: dict[int, tuple[int, int]] = {}
    for ready in (True, False):  # a run with results before one still extracting
        for run_id, sae_id, path, name, has in saes_by_path(con, paths, names):
            layer = int(Path(path).stem.split("_")[-1]) if path in paths else int(name.rsplit("_", 1)[-1])
            if has == ready and layer not in out:
                out[layer] = (run_id, sae_id)
    return out


def feature_link(run_id: int, sae_id: int, feature: int) -> str:
    return f"/features?run={run_id}&sae={sae_id}&feature={feature}"


def one_line(text: str) -> str:
    """A label on one line: a line break in a token becomes a visible `\\n` (as the unit pages write it), so the label
    cannot break the markup it is placed in (a tooltip, a heading, a Markdown block)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def short(text: str) -> str:
    """An explanation without its leading 'the neuron responds to ' and final full stop."""
    t = text.strip()
    t = t[len(PREFIX):] if t.lower().startswith(PREFIX) else t
    return t[:-1] if t.endswith(".") else t


def _windows(rows: list[tuple], seqs: dict[int, list[int]], starts: list[int], vocab: list[str], window: int):
    """{(group, unit): [P.Window]} from top_rows and their tokens (from each window's start through `window`
    after)."""
    from core.autointerp.prompts import Window
    from core.units.sources import Example

    out: dict[tuple[int, int], list] = {}
    for i, (group, unit, _rank, doc, pos, act, ctx) in enumerate(rows):
        focus = pos - starts[i]
        ex = Example(doc, pos, float(act), seqs.get(i, []), max(0, focus - window), focus,
                     list(ctx) if ctx is not None else None)
        tokens = [vocab[t] if t < len(vocab) else "" for t in ex.shown_ids()]
        out.setdefault((int(group), int(unit)), []).append(Window(tokens, ex.shown_values(), "top", doc, pos))
    return out


def index_labels(con, run_id: int, pairs: list[tuple[int, int]], k: int = 10, window: int = 12
                 ) -> dict[tuple[int, int], tuple[str, str]]:
    """{(group, feature): (text, source)} of indexed SAE features, (group, feature) pairs of one run (group -s for
    SAE s): its explanation, else the token-list label over its top `k` examples (module docstring); features the
    index has nothing for are left out. A few queries for all the pairs, whatever their number of SAEs."""
    from core.autointerp.prompts import names_a_class, token_list
    from core.index import feature_labels as Q
    from core.index import queries

    stored = Q.explanations_of(con, run_id, pairs)  # an explanation's line breaks are spaces, a token's are `\n`
    out = {key: (short(" ".join(e.split())), "explanation") for key, e in stored.items()}
    rest = [key for key in pairs if key not in out]
    if not rest:
        return out
    run = queries.get_run(con, run_id)
    rows = Q.top_rows(con, run_id, rest, k)
    T = int(run.config.get("context_len", 1 << 30))
    starts = [(r[4] // T) * T for r in rows]
    spans = [(i, r[3], starts[i], min(r[4] + window, starts[i] + T - 1)) for i, r in enumerate(rows)]
    seqs = queries.span_tokens(con, run_id, spans) if spans else {}
    for key, ws in _windows(rows, seqs, starts, queries.vocab(con, run.model_id), window).items():
        listed = token_list(ws)
        if listed:
            text = one_line(short(listed).removeprefix("the tokens "))
            out[key] = (text, "token class" if names_a_class(listed) else "top tokens")
    return out


def feature_writes(ts, unemb: Unembedding, pairs: list[tuple[int, int]], k: int = 5) -> dict[tuple[int, int], list[str]]:
    """{(layer, feature): the k tokens its decoder row promotes most} for a transcoder set `ts`."""
    by_layer = ts.by_layer()
    out: dict[tuple[int, int], list[str]] = {}
    for layer in sorted({lay for lay, _ in pairs}):
        if layer not in by_layer:
            raise GraphError(f"the transcoder set has no layer {layer}")
        feats = sorted({f for lay, f in pairs if lay == layer})
        W_dec = by_layer[layer].W_dec
        if feats[-1] >= W_dec.shape[0]:
            raise GraphError(f"feature {feats[-1]} is not in layer {layer}'s transcoder ({W_dec.shape[0]} features)")
        for f, ids in zip(feats, unemb.top(W_dec[feats].detach().cpu(), k), strict=True):
            out[(layer, f)] = [unemb.vocab[i] if i < len(unemb.vocab) else f"<{i}>" for i in ids]
    return out


def graph_writes(graph, kept: list[int], ts, unemb: Unembedding, k: int = 5) -> dict[int, list[str]]:
    """{node index: the k tokens it writes} of a Graph's kept feature nodes (core.circuits.graph), for its file
    (core.circuits.wire stores them, so a page opening the graph does not compute them)."""
    feats = [i for i in kept if graph.kind(i) == FEATURE]
    at = {i: tuple(graph.active[graph.selected[i]].tolist()) for i in feats}  # (layer, position, feature)
    pairs = sorted({(a[0], a[2]) for a in at.values()})
    writes = feature_writes(ts, unemb, pairs, k) if pairs else {}
    return {i: writes[(a[0], a[2])] for i, a in at.items()}


def stored_writes(doc: dict, feats: list, k: int) -> dict[tuple[int, int], list[str]] | None:
    """{(layer, feature): its first k tokens} from a graph file's metadata.info.writes when it holds at least k for
    every feature node, else None."""
    got = (doc.get("metadata", {}).get("info") or {}).get("writes")
    if not isinstance(got, dict) or not all(isinstance(got.get(n.id), list) and len(got[n.id]) >= k for n in feats):
        return None
    return {(n.layer, n.index): [str(t) for t in got[n.id][:k]] for n in feats}


def node_labels(con, graph: dict | GraphNodes, set_path: str, unemb: Unembedding, k: int = 5
                ) -> dict[str, Label]:
    """{node id: Label} of every feature node of a graph (a graph file's dict or GraphNodes); `con`: an open index,
    or None (then only `writes`). Page use: cache the result by graph; `unemb` once per model."""
    feats = [n for n in (graph.nodes if isinstance(graph, GraphNodes) else wire_nodes(graph)) if n.kind == FEATURE]
    pairs = sorted({(n.layer, n.index) for n in feats})
    writes = stored_writes(graph, feats, k) if isinstance(graph, dict) else None
    if writes is None:
        writes = feature_writes(transcoder_set(set_path), unemb, pairs, k) if pairs else {}
    units = set_units(con, set_path) if con is not None and pairs else {}
    texts: dict[tuple[int, int], tuple[str, str]] = {}
    for run_id in sorted({r for r, _ in units.values()}):  # the set's layers indexed in one run: one read
        group = {-sae_id: layer for layer, (r, sae_id) in units.items() if r == run_id}
        got = index_labels(con, run_id, [(g, f) for g, layer in group.items() for lay, f in pairs if lay == layer])
        texts |= {(group[g], f): v for (g, f), v in got.items()}
    out = {}
    for n in feats:
        text, source = texts.get((n.layer, n.index), ("", ""))
        unit = units.get(n.layer)
        out[n.id] = Label(text, source, writes[(n.layer, n.index)],
                          feature_link(*unit, n.index) if unit else None)
    return out
