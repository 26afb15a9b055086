"""Named, parameterised read queries over the index. Each takes a connection (or cursor) and returns plain data."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from core.errors import UserError


class QueryError(UserError):
    """A request the index cannot answer (unknown run, unit out of range); one line."""


@dataclass
class RunInfo:
    run_id: int
    model: str
    model_id: int
    corpus: str
    status: str
    tokens: int
    tokens_target: int | None
    docs: int
    layers: list[int]
    n_layers: int
    d_mlp: int
    created_at: str
    updated_at: str
    config: dict
    results_tokens: int | None = None
    """Tokens the stored per-unit results cover: all of them for a complete run, a first part for a running run
    that published results early, None while there are none."""

    @property
    def has_results(self) -> bool:
        return self.results_tokens is not None

    @property
    def partial(self) -> bool:
        """Results that cover only the first tokens of a run still extracting."""
        return self.has_results and self.status != "complete"

    def to_dict(self) -> dict:
        return asdict(self)


def list_runs(con) -> list[RunInfo]:
    rows = con.execute(
        "SELECT r.run_id, m.name, m.model_id, c.spec, r.status, r.tokens_done, r.tokens_target, r.docs_done, r.layers, "
        "m.n_layers, m.d_mlp, r.created_at::TEXT, r.updated_at::TEXT, r.config, r.results_tokens "
        "FROM runs r JOIN models m USING (model_id) JOIN corpora c USING (corpus_id) ORDER BY r.run_id").fetchall()
    return [RunInfo(*r[:13], config=json.loads(r[13]), results_tokens=r[14]) for r in rows]


def get_run(con, run_id: int) -> RunInfo:
    for r in list_runs(con):
        if r.run_id == run_id:
            return r
    raise QueryError(f"no run {run_id} in this index")


def check_unit(con, run_id: int, layer: int, unit: int) -> RunInfo:
    run = get_run(con, run_id)
    if layer not in run.layers:
        raise QueryError(f"run {run_id} has no layer {layer} (indexed layers: {layer_ranges(run.layers)})")
    if not 0 <= unit < run.d_mlp:
        raise QueryError(f"unit {unit} out of range: layer {layer} has units 0-{run.d_mlp - 1}")
    if not run.has_results:
        raise QueryError(f"run {run_id} is {run.status}; per-unit results appear when it completes")
    return run


def layer_ranges(layers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    from itertools import groupby

    groups = [[x for _, x in g] for _, g in groupby(enumerate(sorted(layers)), key=lambda p: p[1] - p[0])]
    return ",".join(str(g[0]) if len(g) == 1 else f"{g[0]}-{g[-1]}" for g in groups)


def unit_record(con, run_id: int, layer: int, unit: int, k: int) -> tuple[dict, list[tuple], list[tuple]]:
    """Everything a unit page reads, in three queries: (stats, example rows, intervals). Example rows are
    (interval, rank, doc_id, position, activation, context) with interval -1 for the top-k examples (context: the
    stored activations around them, or None), then each interval's samples; intervals are (interval, lo, hi,
    frac_est, exact)."""
    cur = con.execute("SELECT n_tokens, count_active, density, mean, max, min, hist_exp, hist FROM unit_stats "
                      "WHERE run_id = ? AND layer = ? AND unit = ?", [run_id, layer, unit])
    names = [d[0] for d in cur.description]
    stats = dict(zip(names, cur.fetchall()[0], strict=True))
    rows = con.execute(
        "SELECT -1 AS interval, rank, doc_id, position, activation, context FROM top_examples "
        "WHERE run_id = ? AND layer = ? AND unit = ? AND rank < ? UNION ALL "
        "SELECT interval, rank, doc_id, position, activation, NULL FROM interval_samples "
        "WHERE run_id = ? AND layer = ? AND unit = ? ORDER BY 1, 2",
        [run_id, layer, unit, k, run_id, layer, unit]).fetchall()
    ivs = con.execute("SELECT interval, lo, hi, frac_est, exact FROM intervals WHERE run_id = ? AND layer = ? "
                      "AND unit = ? ORDER BY interval", [run_id, layer, unit]).fetchall()
    return stats, rows, ivs


def span_tokens(con, run_id: int, spans: list[tuple[int, int, int, int]]) -> dict[int, list[int]]:
    """spans: (i, doc_id, lo, hi) -> {i: token ids at positions lo..hi of that document}, in one query."""
    rows = con.execute(
        "SELECT s.i, t.position, t.token_id FROM (SELECT unnest(?) AS i, unnest(?) AS doc, unnest(?) AS lo, "
        "unnest(?) AS hi) s JOIN tokens t ON t.run_id = ? AND t.doc_id = s.doc AND t.position BETWEEN s.lo AND s.hi "
        "ORDER BY s.i, t.position",
        [[s[0] for s in spans], [s[1] for s in spans], [s[2] for s in spans], [s[3] for s in spans],
         run_id]).fetchall()
    seqs: dict[int, list[int]] = {}
    for i, _, tok in rows:
        seqs.setdefault(i, []).append(tok)
    return seqs


def context(con, run_id: int, doc_id: int, lo: int, hi: int) -> list[tuple[int, int, str]]:
    """(position, token_id, display) of positions lo..hi (inclusive) of one document."""
    return con.execute(
        "SELECT t.position, t.token_id, v.display FROM tokens t "
        "JOIN runs r ON r.run_id = t.run_id JOIN vocab v ON v.model_id = r.model_id AND v.token_id = t.token_id "
        "WHERE t.run_id = ? AND t.doc_id = ? AND t.position BETWEEN ? AND ? ORDER BY t.position",
        [run_id, doc_id, lo, hi]).fetchall()


def top_examples(con, run_id: int, layer: int, unit: int, k: int = 10, window: int = 8) -> list[dict]:
    """The unit's top-k examples: doc_id, position, activation, token and `window` tokens of context each side."""
    check_unit(con, run_id, layer, unit)
    rows = con.execute("SELECT rank, doc_id, position, activation FROM top_examples "
                       "WHERE run_id = ? AND layer = ? AND unit = ? AND rank < ? ORDER BY rank",
                       [run_id, layer, unit, k]).fetchall()
    out = []
    for rank, doc_id, pos, act in rows:
        ctx = context(con, run_id, doc_id, pos - window, pos + window)
        tok = next(d for p, _, d in ctx if p == pos)
        out.append({"rank": rank, "doc_id": doc_id, "position": pos, "activation": act, "token": tok,
                    "token_id": next(t for p, t, _ in ctx if p == pos),
                    "left": "".join(d for p, _, d in ctx if p < pos), "right": "".join(d for p, _, d in ctx if p > pos),
                    "context_tokens": [d for _, _, d in ctx], "context_positions": [p for p, _, _ in ctx]})
    return out


def layer_units(con, run_id: int, layer: int) -> list[dict]:
    """Every unit of a layer: density, max, mean, `dominance` — the share of its top examples that are its most
    common token (a selectivity measure: 1.0 means every top example is the same token) — and its explanation with
    its detection and fuzzing balanced accuracy (None where it has none)."""
    rows = con.execute(
        "WITH tk AS (SELECT e.unit, v.display, count(*) AS c, sum(count(*)) OVER (PARTITION BY e.unit) AS n "
        "  FROM top_examples e JOIN tokens t ON t.run_id = e.run_id AND t.doc_id = e.doc_id AND t.position = e.position "
        "  JOIN runs r ON r.run_id = e.run_id JOIN vocab v ON v.model_id = r.model_id AND v.token_id = t.token_id "
        "  WHERE e.run_id = ? AND e.layer = ? GROUP BY e.unit, v.display), "
        "best AS (SELECT unit, arg_max(display, c) AS token, max(c) / max(n) AS dominance FROM tk GROUP BY unit) "
        "SELECT s.unit, s.density, s.max, s.mean, b.token, b.dominance, x.explanation, "
        "  TRY_CAST(json_extract(x.scores, '$.detection.bacc') AS DOUBLE), "
        "  TRY_CAST(json_extract(x.scores, '$.fuzzing.bacc') AS DOUBLE) "
        "FROM unit_stats s LEFT JOIN best b USING (unit) "
        "LEFT JOIN explanations x ON x.run_id = s.run_id AND x.layer = s.layer AND x.unit = s.unit AND x.status = 'ok' "
        "WHERE s.run_id = ? AND s.layer = ? ORDER BY s.unit", [run_id, layer, run_id, layer]).fetchall()
    return [dict(zip(["unit", "density", "max", "mean", "token", "dominance", "explanation", "detection", "fuzzing"],
                     r, strict=True)) for r in rows]


def search_token(con, run_id: int, token: str, limit: int = 50) -> list[dict]:
    """Units whose top examples are dominated by `token` (exact display string, e.g. ' Paris'), most first."""
    rows = con.execute(
        "SELECT e.layer, e.unit, count(*) AS hits, max(e.activation) AS max_act FROM top_examples e "
        "JOIN tokens t ON t.run_id = e.run_id AND t.doc_id = e.doc_id AND t.position = e.position "
        "JOIN runs r ON r.run_id = e.run_id JOIN vocab v ON v.model_id = r.model_id AND v.token_id = t.token_id "
        "WHERE e.run_id = ? AND v.display = ? GROUP BY e.layer, e.unit ORDER BY hits DESC, max_act DESC LIMIT ?",
        [run_id, token, limit]).fetchall()
    k = con.execute("SELECT max(rank) + 1 FROM top_examples WHERE run_id = ?", [run_id]).fetchall()[0][0] or 1
    return [{"layer": a, "unit": b, "share": c / k, "max": d} for a, b, c, d in rows]


def vocab(con, model_id: int) -> list[str]:
    """Display strings of a model's tokens, indexed by token id."""
    rows = con.execute("SELECT token_id, display FROM vocab WHERE model_id = ? ORDER BY token_id", [model_id]).fetchall()
    out = [""] * (rows[-1][0] + 1 if rows else 0)
    for i, d in rows:
        out[i] = d
    return out


@dataclass
class SaeInfo:
    run_id: int
    sae_id: int
    name: str
    path: str
    site: str
    out_site: str | None
    d_in: int
    d_sae: int
    activation: str
    k: int | None
    format: str | None
    quality: dict | None
    has_umap: bool

    @property
    def group(self) -> int:
        """The `layer` value of this SAE's features in the per-unit tables."""
        return -self.sae_id


def run_saes(con, run_id: int | None = None) -> list[SaeInfo]:
    """The SAEs of one run (or of every run), by (run_id, sae_id)."""
    rows = con.execute("SELECT run_id, sae_id, name, path, site, out_site, d_in, d_sae, activation, k, format, "
                       "quality, umap IS NOT NULL FROM run_saes WHERE ? IS NULL OR run_id = ? ORDER BY 1, 2",
                       [run_id, run_id]).fetchall()
    return [SaeInfo(*r[:11], json.loads(r[11]) if r[11] else None, bool(r[12])) for r in rows]


def sae_umap(con, run_id: int, sae_id: int) -> list[float] | None:
    row = con.execute("SELECT umap FROM run_saes WHERE run_id = ? AND sae_id = ?", [run_id, sae_id]).fetchall()
    return row[0][0] if row else None


def check_feature(con, run_id: int, sae_id: int, feature: int) -> tuple[RunInfo, SaeInfo]:
    """(run, SAE) if the run is readable and has this SAE and feature; QueryError otherwise."""
    run = get_run(con, run_id)
    if run.results_tokens is None:
        raise QueryError(f"run {run_id} has no results yet (it is still extracting)")
    saes = {s.sae_id: s for s in run_saes(con, run_id)}
    if sae_id not in saes:
        have = ", ".join(map(str, saes)) or "none"
        raise QueryError(f"run {run_id} has no SAE {sae_id} (its SAEs: {have})")
    if not 0 <= feature < saes[sae_id].d_sae:
        raise QueryError(f"feature {feature} out of range: SAE {sae_id} has features 0-{saes[sae_id].d_sae - 1}")
    return run, saes[sae_id]


def feature_labels(con, run_id: int, sae_id: int, n: int = 3) -> dict[int, str]:
    """{feature: its top `n` examples' tokens, 'a | b | c'} for the feature map's hover text."""
    rows = con.execute(
        "SELECT e.unit, string_agg(v.display, ' | ' ORDER BY e.rank) FROM top_examples e "
        "JOIN tokens t ON t.run_id = e.run_id AND t.doc_id = e.doc_id AND t.position = e.position "
        "JOIN runs r ON r.run_id = e.run_id JOIN vocab v ON v.model_id = r.model_id AND v.token_id = t.token_id "
        "WHERE e.run_id = ? AND e.layer = ? AND e.rank < ? GROUP BY e.unit", [run_id, -sae_id, n]).fetchall()
    return dict(rows)


def group_density(con, run_id: int, group: int) -> list[float]:
    """Each unit's density in a unit group (a layer, or -s for SAE s's features), by unit."""
    rows = con.execute("SELECT density FROM unit_stats WHERE run_id = ? AND layer = ? ORDER BY unit",
                       [run_id, group]).fetchall()
    return [r[0] for r in rows]


def top_tokens(con, run_id: int, group: int, min_active: int = 1, max_density: float = 1.0
               ) -> dict[int, dict[str, int]]:
    """{unit: {token text as shown: how many of its top examples (activation > 0) peak on it}} for a unit group's
    units active on ≥ min_active tokens, density ≤ max_density."""
    rows = con.execute(
        "SELECT e.unit, v.display, count(*) FROM top_examples e "
        "JOIN unit_stats s ON s.run_id = e.run_id AND s.layer = e.layer AND s.unit = e.unit "
        "JOIN tokens t ON t.run_id = e.run_id AND t.doc_id = e.doc_id AND t.position = e.position "
        "JOIN runs r ON r.run_id = e.run_id JOIN vocab v ON v.model_id = r.model_id AND v.token_id = t.token_id "
        "WHERE e.run_id = ? AND e.layer = ? AND e.activation > 0 AND s.count_active >= ? AND s.density <= ? "
        "GROUP BY 1, 2", [run_id, group, min_active, max_density]).fetchall()
    out: dict[int, dict[str, int]] = {}
    for unit, text, n in rows:
        out.setdefault(unit, {})[text] = n
    return out


def top_token_share(con, run_id: int, group: int, k: int = 5, min_active: int = 1, max_density: float = 1.0,
                    tokens: dict[int, dict[str, int]] | None = None) -> dict[int, float]:
    """{unit: the share of its top examples (activation > 0) whose token is one of its k most frequent tokens (text
    trimmed of spaces, lower-cased)} for a unit group's units active on ≥ min_active tokens, density ≤ max_density
    (or of `tokens`, top_tokens' answer): how few tokens a unit's strongest activations sit on."""
    from collections import Counter

    tokens = top_tokens(con, run_id, group, min_active, max_density) if tokens is None else tokens
    out = {}
    for u, by in tokens.items():
        c: Counter = Counter()
        for text, n in by.items():
            c[text.strip(" ").lower()] += n
        out[u] = sum(n for _, n in c.most_common(k)) / sum(c.values())
    return out
