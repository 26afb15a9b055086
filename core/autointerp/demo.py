"""The demo's explanations (core.demo runs this job): the demo SAE's and its layer's most selective units, explained
and scored with the built-in model, so search works at once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DemoExplain:
    db: str
    model: str
    layer: int
    units: int
    scored: int


def explain_job(cfg, notes: list[str]) -> DemoExplain | None:
    """The explain job of a core.demo.DemoConfig (None when explanations are stored already)."""
    from core.index.db import connect
    from core.index.explanations import count

    con = connect(cfg.db, read_only=True)
    try:
        done = count(con)
    finally:
        con.close()
    if done:
        notes.append(f"demo: {done} unit explanations are already stored")
        return None
    layer = int(cfg.sae_site.rsplit(".", 1)[-1])
    return DemoExplain(cfg.db, cfg.models[0], layer, cfg.explain_units, cfg.explain_scored)


def explain_picks(con, run_id: int, layer: int, sae_id: int, n: int) -> tuple[list[int], list[int]]:
    """The demo's units to explain: 2/3 of n from the SAE's features (active on ≥ 50 tokens and ≤ 5% of them), the
    rest from the layer's neurons (active on ≥ 50). Each group is ranked by how much their top examples sit on a
    handful of tokens (queries.top_token_share, to one decimal), then by the share of one token class among them
    (core.autointerp.lexical: numbers, Python keywords, line breaks, …), then by how often they fire: units a small
    explainer can name, that a user meets often, with enough examples to score. The picks take turns over the
    units' main classes (and units of no class), best first in each, so a demo shows many kinds of unit, not twelve
    kinds of line break."""
    from core.autointerp import lexical
    from core.index import queries

    def pick(group, m, max_density):
        tokens = queries.top_tokens(con, run_id, group, min_active=50, max_density=max_density)
        share = queries.top_token_share(con, run_id, group, tokens=tokens)
        count = dict(con.execute("SELECT unit, count_active FROM unit_stats WHERE run_id = ? AND layer = ?",
                                 [run_id, group]).fetchall())
        by_class: dict = {}
        named = {u: lexical.name([t for t, k in tokens[u].items() for _ in range(k)]) for u in share}
        pure = {u: round(named[u][2], 2) if named[u] and len(named[u][1]) == 1 else 0.0 for u in share}
        for u in sorted(share, key=lambda u: (-round(share[u], 1), -pure[u], -count[u], u)):
            by_class.setdefault(named[u] and named[u][1][0], []).append(u)  # by its main class
        turns = [u for i in range(max(map(len, by_class.values()), default=0))
                 for units in by_class.values() if i < len(units) for u in units[i:i + 1]]
        return turns[:m]
    feats = pick(-sae_id, 2 * n // 3, 0.05)
    return feats, pick(layer, n - len(feats), 1.0)


def run_explain(job: DemoExplain, on_unit=None) -> None:
    """The demo's explanations (explain_picks) in the run of `job.layer` that indexed the demo SAE; the first
    `scored` of them scored too."""
    from core.autointerp.run import ExplainConfig, explain
    from core.index import queries
    from core.index.db import connect

    con = connect(job.db, read_only=True)
    try:
        saes = queries.run_saes(con)
        runs = [r for r in queries.list_runs(con) if r.model == job.model and r.status == "complete"
                and job.layer in r.layers and any(s.run_id == r.run_id for s in saes)]
        if not runs:
            return
        run = runs[-1]
        sae = next(s for s in saes if s.run_id == run.run_id)
        feats, nrns = explain_picks(con, run.run_id, job.layer, sae.sae_id, job.units)
    finally:
        con.close()
    total, done = len(feats) + len(nrns), 0
    k_f = min(len(feats), max(job.scored // 2, job.scored - len(nrns)))  # half each, or what the other lacks
    k_n = min(len(nrns), job.scored - k_f)
    calls = [(feats[:k_f], True, True), (nrns[:k_n], False, True)]  # scored, each group in one call (controls)
    calls += [(feats[i:i + 4], True, False) for i in range(k_f, len(feats), 4)]  # the rest in small groups, so
    calls += [(nrns[i:i + 4], False, False) for i in range(k_n, len(nrns), 4)]  # progress shows as they finish
    for ids, is_feat, scored in calls:
        if not ids:
            continue
        spec = ",".join(str(u) if is_feat else f"{job.layer}:{u}" for u in ids)
        explain(ExplainConfig(db=job.db, run=run.run_id, units=spec, sae=sae.sae_id if is_feat else None,
                              score=scored, candidates=2))  # 2 chat prompts (+ completion, token list): minutes
        done += len(ids)
        if on_unit:
            on_unit(done, total)
