"""`neuroboard explain`: explain units from the index's examples, score each explanation, store both.

Phase 1, per unit: the unit's top examples and interval samples (from the index alone, windows where it is active),
split once into an explaining and a scoring set (core.autointerp.prompts.split). The explainer answers `candidates`
prompts, each over its own share of the explaining windows; the candidate kept is the one whose embedding score
(core.autointerp.scoring.embedding_auc) on the explaining windows against random ones is highest, so the held-out
scoring set never chooses. The explanation is stored with its prompt, every candidate's reply and selection score,
the explainer's name and the settings. Units already explained with the same explainer and settings are skipped
(resume). Units that never fire are stored as skipped with the reason.
Phase 2 (unless --no-score), per unit: detection and fuzzing on the held-out activating windows and as many
non-activating ones (random windows of the run's documents away from every stored example of the unit), with the
unit's explanation and with its control (another unit's explanation), and the embedding score of both on the same
windows. An endpoint judges in calls of five (a list of 0/1 answers); the built-in model judges one window at a
time by logit(Yes) − logit(No).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from core.autointerp import prompts as P
from core.autointerp import scoring as S
from core.autointerp.backends import AutointerpError, chat
from core.errors import UserError

BATCH = 5


@dataclass
class ExplainConfig:
    db: str
    """The index."""
    run: int
    """The run whose units to explain."""
    units: str
    """Units: 'L:U,L:U2' (layer:unit; U may be a range a-b), or feature ids '17,100,5-9' with --sae."""
    sae: int | None = None
    """Explain this SAE's features (its number in the run) instead of neurons."""
    explainer: str = "builtin"
    """'builtin' (smollm2-135m, SmolLM2-135M-Instruct, through transformers) or an OpenAI-compatible server's URL
    (llama.cpp server, vLLM, Ollama: http://127.0.0.1:8080)."""
    scorer: str = ""
    """The judge for scoring (default: the explainer)."""
    model_name: str = ""
    """The model name to send to an endpoint (default: 'default')."""
    examples: int = 36
    """Examples shown to the explainer at most, over all candidates (the rest of each interval is held out for
    scoring)."""
    candidates: int = 3
    """Explainer prompts per unit, each over its own share of the examples; the best by embedding score is kept."""
    window: int = 12
    """Tokens each side of an example's peak."""
    score: bool = True
    """Score each explanation (detection, fuzzing) and its control (--no-score: explain only)."""
    score_windows: int = 10
    """Held-out activating windows to score on at most (spread over the intervals), and as many non-activating."""
    redo: bool = False
    """Explain again units already explained with these settings."""
    seed: int = 0
    """Seed of the non-activating windows, the judge batches and the control pairing."""


class ExplainError(UserError):
    """Units that cannot be explained as asked (one line)."""


def parse_units(spec: str, sae: int | None) -> list[tuple[int, int]]:
    """[(group, unit)]: group = the layer, or -sae for SAE features."""
    out = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        try:
            if sae is not None:
                group, rest = -sae, part
            else:
                L, _, rest = part.partition(":")
                if not rest:
                    raise ValueError
                group = int(L)
            a, _, b = rest.partition("-")
            out += [(group, u) for u in range(int(a), int(b or a) + 1)]
        except ValueError:
            raise ExplainError(f"--units {spec!r}: expected layer:unit items like 5:17,5:100 (or feature ids with "
                               "--sae)") from None
    if not out:
        raise ExplainError("--units names no unit")
    return out


def _windows(con, run, group: int, unit: int, window: int, kind: str, vocab: list[str]
             ) -> tuple[list[list[P.Window]], dict]:
    """([top examples, top interval, ..., lowest interval] as windows of token strings and activations, the unit's
    stats)."""
    from core.units.sources import source

    src = source(kind)
    layer = -group if group < 0 else group
    view = src.gather(con, run.run_id, layer, unit, int(run.config.get("top_k", 64)), window)

    def win(ex, where):
        return P.Window([vocab[t] for t in ex.shown_ids()], ex.shown_values(), where, ex.doc_id, ex.position)
    return [[win(e, "top") for e in view.top]] + [[win(e, f"interval {iv['interval']}") for e in iv["examples"]]
                                                   for iv in reversed(view.intervals)], view.stats


def _negatives(con, run, n: int, length: int, avoid: set[tuple[int, int]], rng: random.Random,
               vocab: list[str]) -> list[P.Window]:
    """n random windows of `length` tokens from the run's documents, none within `length` of an example."""
    from core.index import queries

    docs = con.execute("SELECT doc_id, n_tokens FROM run_docs WHERE run_id = ? AND n_tokens >= ? ORDER BY doc_id",
                       [run.run_id, length]).fetchall()
    if not docs:
        return []
    spans = []
    for _ in range(n * 20):
        if len(spans) >= n:
            break
        d, nt = rng.choice(docs)
        lo = rng.randrange(0, nt - length + 1)
        if any(doc == d and lo - length <= p <= lo + 2 * length for doc, p in avoid):
            continue
        spans.append((len(spans), d, lo, lo + length - 1))
    seqs = queries.span_tokens(con, run.run_id, spans)
    return [P.Window([vocab[t] for t in seqs.get(i, [])], [0.0] * len(seqs.get(i, [])), "random", d, lo)
            for i, d, lo, _ in spans]


def _judge(judge, explanation: str, pos: list[P.Window], neg: list[P.Window], fuzz: bool, rng: random.Random) -> dict:
    """Metrics of one explanation on these windows (detection, or fuzzing with marks)."""
    items = []
    for w in pos:
        spans = P.marked_spans(w)
        items.append((1, P.render(w.tokens, spans if fuzz else [])))
    for i, w in enumerate(neg):  # as many tokens marked at random as its activating counterpart has marked
        k = sum(b - a for a, b in P.marked_spans(pos[i % len(pos)])) if (fuzz and pos) else 0
        idx = sorted(rng.sample(range(len(w.tokens)), min(k, len(w.tokens)))) if fuzz else []
        items.append((0, P.render(w.tokens, [(i, i + 1) for i in idx])))
    rng.shuffle(items)
    truth, pred = [t for t, _ in items], []
    if hasattr(judge, "yes_scores"):  # each excerpt asked alone, the answer's score (AUC too)
        scores = judge.yes_scores([P.judge_one_messages(explanation, x, fuzz) for _, x in items])
        return S.metrics(truth, [int(v > 0) for v in scores], scores)
    for i in range(0, len(items), BATCH):
        batch = [x for _, x in items[i:i + BATCH]]
        answers = P.parse_answers(judge.complete(P.judge_messages(explanation, batch, fuzz), 24), len(batch))
        pred += answers if answers is not None else [None] * len(batch)
    return S.metrics(truth, pred)


def _plain(ws: list[P.Window]) -> list[str]:
    return [P.render(w.tokens, []) for w in ws]


def _choose(explainer, windows: list[P.Window], k: int, neg: list[P.Window]) -> dict:
    """The explanation row's fields. Candidates: the explainer's replies to k chat prompts over disjoint shares of
    the windows (P.candidate_prompts); a plain completion naming what the most frequent marked tokens have in
    common (P.common_prompt; explainers that can continue text: the built-in one); and the top-token list no model
    writes (P.token_list). With k > 1: when most marked spans of the windows are of one token class (the list is
    named by it: core.autointerp.lexical), that list is kept, a fact counted on the windows; else the candidate
    with the highest embedding score on (windows, neg), the first on a tie. A reply that only repeats a worked
    example's answer is left out (P.echoes_a_shot). With k = 1 the one chat reply. 'unparsed' when nothing parses.
    Why the class wins: the embedding score reads meaning, and punctuation, whitespace and digits carry little in
    all-MiniLM-L6-v2, so on the demo it kept "the number of digits" for a quotation-mark feature over the list of
    its quotation marks."""
    from core.autointerp.search import embed

    cands = []
    for msgs in P.candidate_prompts(windows, k):
        reply = explainer.complete(msgs, 48, prefix=P.EXPLAIN_PREFIX)
        cands.append({"kind": "chat", "prompt": "\n\n".join(m["content"] for m in msgs), "reply": reply,
                      "text": P.parse_explanation(reply)})
    if k > 1:
        for c in cands:
            if c["text"] and P.echoes_a_shot(c["text"], embed):
                c["text"], c["reply"] = None, f"(echoes a worked example, left out) {c['reply']}"
        if hasattr(explainer, "continue_text"):
            q = P.common_prompt(windows)
            reply = explainer.continue_text(q)
            text = P.parse_common(reply)
            cands.append({"kind": "completion", "prompt": q, "reply": reply,
                          "text": None if text and P.echoes_a_shot(text, embed) else text})
        listed = P.token_list(windows)
        cands.append({"kind": "token class" if P.names_a_class(listed) else "token list", "prompt": "", "reply": "",
                      "text": listed})
        ok = [c for c in cands if c["text"]]
        for c, sel in zip(ok, S.embedding_aucs([c["text"] for c in ok], _plain(windows), _plain(neg), embed),
                          strict=True):
            c["sel"] = sel
    ok = [c for c in cands if c["text"]]
    named = [c for c in ok if c["kind"] == "token class"]  # most marked spans are of one class: a fact, kept
    best = named[0] if named else max(ok, key=lambda c: -1.0 if c.get("sel") is None else c["sel"]) if ok else \
        cands[0]
    replies = "\n\n".join(f"[candidate {i}, {c['kind']}{' (kept)' if c is best else ''}; selection AUC "
                           f"{'-' if c.get('sel') is None else format(c['sel'], '.3f')}] {c['text'] or c['reply']}"
                           for i, c in enumerate(cands, 1)) if len(cands) > 1 else best["reply"]
    return {"prompt": best["prompt"], "reply": replies, "status": "ok" if best["text"] else "unparsed",
            "explanation": best["text"]}


@contextmanager
def _opened(db: str, write: bool = False):
    """A brief open of the index (core.index.db.connect: waits out another writer's lock)."""
    from core.index.db import connect

    con = connect(db, read_only=not write)
    try:
        yield con
    finally:
        con.close()


def explain(cfg: ExplainConfig, *, explainer=None, judge=None, load=None,
            on_unit: Callable[[str, int, int], None] | None = None) -> list[dict]:
    """Explain (and score) cfg.units; one result per unit (module docstring)."""
    from core.index import explanations as X
    from core.index import queries

    if min(cfg.examples, cfg.window, cfg.score_windows, cfg.candidates) < 1:
        raise ExplainError("--examples, --window, --score-windows and --candidates must be positive")
    wanted = parse_units(cfg.units, cfg.sae)
    with _opened(cfg.db, write=True) as con:  # a writing open: brings an older index to the schema
        try:
            run = queries.get_run(con, cfg.run)
        except queries.QueryError as e:
            raise ExplainError(str(e)) from None
        kind = "neuron"
        if cfg.sae is not None:
            info = next((s for s in queries.run_saes(con, cfg.run) if s.sae_id == cfg.sae), None)
            if info is None:
                raise ExplainError(f"run {cfg.run} has no SAE {cfg.sae}")
            kind = f"feature:{info.path}"
        vocab = queries.vocab(con, run.model_id)
        done = {(r["layer"], r["unit"]): r for r in X.get_all(con, cfg.run)}
    for g, _u in wanted:
        if g >= 0 and g not in run.layers:
            raise ExplainError(f"run {cfg.run} has no layer {g} (indexed: {queries.layer_ranges(run.layers)})")
    explainer = explainer or chat(cfg.explainer, load, cfg.model_name)
    judge = judge or (explainer if not cfg.scorer else chat(cfg.scorer, load, cfg.model_name))
    settings = {k: v for k, v in asdict(cfg).items()
                if k in ("examples", "window", "seed", "score_windows", "candidates")}
    held: dict = {}
    # the index is open only to read a unit's examples and to write its row: never while a model writes or judges
    # (the dashboard, e.g. beside `make demo`, reads between those moments)
    for n, (g, u) in enumerate(wanted, 1):
        with _opened(cfg.db) as con:
            groups, stats = _windows(con, run, g, u, cfg.window, kind, vocab)
            groups = [[w for w in grp if w.peak > 0] for grp in groups]  # a rare unit's top-K is padded with zeros
            sp = P.split(groups, max_explain=cfg.examples)
            prev = done.get((g, u))
            kept = prev and not cfg.redo and prev["explainer"] == explainer.name and prev["settings"] == settings
            avoid = {(w.doc_id, w.position) for w in sp.score + sp.explain}
            sel_neg = _negatives(con, run, len(sp.explain), 2 * cfg.window + 1, avoid,
                                 random.Random(f"{cfg.seed}:select:{(g, u)}"), vocab) if sp.explain and not kept else []
        held[(g, u)] = sp
        if kept:
            if on_unit:
                on_unit("explain", n, len(wanted))
            continue
        row = {"run_id": cfg.run, "layer": g, "unit": u, "explainer": explainer.name, "settings": settings}
        if not stats.get("count_active") or not sp.explain:
            row |= {"status": "skipped", "reason": "never fires in the indexed tokens" if not
                    stats.get("count_active") else "no examples to show", "prompt": ""}
        else:
            row |= _choose(explainer, sp.explain, cfg.candidates, sel_neg)
        with _opened(cfg.db, write=True) as con:
            X.put(con, row)
        done[(g, u)] = row | {"scores": None}
        if on_unit:
            on_unit("explain", n, len(wanted))
    from core.autointerp.search import embed, store_embeddings

    with _opened(cfg.db, write=True) as con:
        store_embeddings(con, cfg.run)  # searchable by meaning from now on
    if cfg.score:
        ok = [k for k in wanted if done[k]["status"] == "ok"]
        pairs = S.control_pairs(ok, cfg.seed)
        for n, key in enumerate(ok, 1):
            if done[key].get("scores") and not cfg.redo:
                continue
            rng = random.Random(f"{cfg.seed}:{key}")
            sp = held[key]
            pos = sp.score[:: max(1, -(-len(sp.score) // cfg.score_windows))][: cfg.score_windows]
            avoid = {(w.doc_id, w.position) for w in sp.score + sp.explain}
            with _opened(cfg.db) as con:
                neg = _negatives(con, run, len(pos), 2 * cfg.window + 1, avoid, rng, vocab)
            scores = {}
            judged = [(label, expl) for label, expl in (
                ("", done[key]["explanation"]),
                ("control_", done[pairs[key]]["explanation"] if key in pairs else None)) if expl is not None and pos]
            for label, expl in judged:
                scores[f"{label}detection"] = _judge(judge, expl, pos, neg, False, random.Random(rng.random()))
                scores[f"{label}fuzzing"] = _judge(judge, expl, pos, neg, True, random.Random(rng.random()))
            aucs = S.embedding_aucs([e for _, e in judged], _plain(pos), _plain(neg), embed)  # windows embedded once
            scores |= {f"{label}embedding": {"auc": a} for (label, _), a in zip(judged, aucs, strict=True)}
            scores |= {"judge": judge.name, "positives": len(pos), "negatives": len(neg),
                       "control_unit": list(pairs[key]) if key in pairs else None}
            with _opened(cfg.db, write=True) as con:
                X.set_scores(con, cfg.run, key[0], key[1], scores)
            done[key]["scores"] = scores
            if on_unit:
                on_unit("score", n, len(ok))
    from core.index.db import fold_wal

    fold_wal(cfg.db, wait_s=2.0)  # the run's explanations into the file (core.index.db: durability)
    return [result(done[k]) for k in wanted]


def result(row: dict) -> dict:
    s = row.get("scores") or {}

    def b(k, m="bacc"):
        return (s.get(k) or {}).get(m)
    unit = f"{row['layer']}:{row['unit']}" if row["layer"] >= 0 else f"sae{-row['layer']}:{row['unit']}"
    return {"unit": unit, "status": row["status"], "explanation": row.get("explanation"),
            "reason": row.get("reason"), "detection_bacc": b("detection"), "fuzzing_bacc": b("fuzzing"),
            "control_detection_bacc": b("control_detection"), "control_fuzzing_bacc": b("control_fuzzing"),
            "detection_auc": b("detection", "auc"), "fuzzing_auc": b("fuzzing", "auc"),
            "control_detection_auc": b("control_detection", "auc"), "control_fuzzing_auc": b("control_fuzzing", "auc"),
            "embedding_auc": b("embedding", "auc"), "control_embedding_auc": b("control_embedding", "auc")}


__all__ = ["ExplainConfig", "ExplainError", "AutointerpError", "explain", "parse_units"]
