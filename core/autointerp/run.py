"""`neuroboard explain`: explain units from the index's examples, score each explanation, store both.

Phase 1, per unit: the unit's top examples and interval samples (from the index alone, windows where it is active),
split once into an explaining and a scoring set (core.autointerp.prompts.split). The explainer answers `candidates`
prompts, each over its own share of the explaining windows; the candidate kept is the one whose embedding score
(core.autointerp.scoring.embedding_auc) on the explaining windows against random ones is highest, so the held-out
scoring set never chooses. The explanation is stored with its prompt, every candidate's reply and selection score,
the explainer's name and the settings. Units already explained with the same explainer and settings are skipped
(resume). Units that never fire are stored as skipped with the reason.
Phase 2 (unless --no-score), per unit: detection and fuzzing on the held-out activating windows and as many
non-activating ones (random windows of the run's documents away from every stored example of the unit, each as
long as its activating counterpart or as its document allows: _negatives), with the unit's explanation and with its
control (another unit's explanation), and the embedding score of both on the same windows. Where no score can be
made (no held-out activating window, no non-activating one), the row's reason says why. An endpoint judges in calls
of five (a list of 0/1 answers); the built-in model judges one window at a time by logit(Yes) − logit(No).
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
    from core.units.kinds import source

    src = source(kind)
    layer = -group if group < 0 else group
    view = src.gather(con, run.run_id, layer, unit, int(run.config.get("top_k", 64)), window)

    def win(ex, where):
        return P.Window([vocab[t] for t in ex.shown_ids()], ex.shown_values(), where, ex.doc_id, ex.position,
                        ex.position - (ex.focus - ex.first_shown))
    return [[win(e, "top") for e in view.top]] + [[win(e, f"interval {iv['interval']}") for e in iv["examples"]]
                                                   for iv in reversed(view.intervals)], view.stats


def _stored(groups: list[list[P.Window]], window: int) -> tuple[dict[int, set[int]], dict[int, set[int]]]:
    """({doc: positions shown around the unit's activating examples}, {doc: the examples' own positions and every
    position where the index knows the unit active}) over every stored example with a positive peak."""
    near: dict[int, set[int]] = {}
    known: dict[int, set[int]] = {}
    for w in (w for g in groups for w in g if w.peak > 0):
        start = w.start if w.start >= 0 else w.position - window
        near.setdefault(w.doc_id, set()).update(range(start, max(start + len(w.tokens), w.position + window + 1)))
        known.setdefault(w.doc_id, set()).update([w.position] + [start + j for j, a in enumerate(w.acts) if a > 0])
    return near, known


def _negatives(con, run, lengths: list[int], groups: list[list[P.Window]], window: int, rng: random.Random,
               vocab: list[str]) -> tuple[list[P.Window], str | None]:
    """Non-activating windows, one per wanted length, each cut to fit its document (short documents give short
    windows) and at least half as long as the shortest wanted; and why there are none, if none. Drawn first from
    the run's documents outside every activating example's shown window (its `window` tokens each side), then,
    when those run out (documents about as short as a shown window), from stretches holding no stored example and
    no token where the index knows the unit active. The model saw each document alone (core.data.corpus: windows
    never cross a document), so neither do these."""
    from core.index import queries

    if not lengths:
        return [], None
    docs = con.execute("SELECT doc_id, n_tokens FROM run_docs WHERE run_id = ? ORDER BY doc_id",
                       [run.run_id]).fetchall()
    min_len = max(1, -(-min(lengths) // 2))
    near, known = _stored(groups, window)
    spans = S.negative_spans(S.free_runs(docs, near, min_len), lengths, min_len, rng)
    if len(spans) < len(lengths):
        taken = {d: set(range(lo, hi + 1)) for d, lo, hi in spans}
        blocked = {d: known.get(d, set()) | taken.get(d, set()) for d in known.keys() | taken.keys()}
        spans += S.negative_spans(S.free_runs(docs, blocked, min_len), lengths[len(spans):], min_len, rng)
    seqs = queries.span_tokens(con, run.run_id, [(i, d, lo, hi) for i, (d, lo, hi) in enumerate(spans)])
    out = [P.Window([vocab[t] for t in seqs.get(i, [])], [0.0] * len(seqs.get(i, [])), "random", d, lo, lo)
           for i, (d, lo, _) in enumerate(spans)]
    why = None if out else (f"no non-activating window: every stretch of {min_len} tokens or more of the run's "
                            "documents holds a stored example of the unit or a token where it is active")
    return out, why


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
            sel_neg = [] if kept else _negatives(con, run, [len(w.tokens) for w in sp.explain], groups, cfg.window,
                                                 random.Random(f"{cfg.seed}:select:{(g, u)}"), vocab)[0]
        held[(g, u)] = sp, groups
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
            sp, groups = held[key]
            pos = sp.score[:: max(1, -(-len(sp.score) // cfg.score_windows))][: cfg.score_windows]
            with _opened(cfg.db) as con:
                neg, why = _negatives(con, run, [len(w.tokens) for w in pos], groups, cfg.window, rng, vocab)
            if not pos:
                why = (f"no held-out activating window to score on: the unit's {len(sp.explain)} activating examples "
                       "were all shown to the explainer")
            scores = {}
            judged = [(label, expl) for label, expl in (
                ("", done[key]["explanation"]),
                ("control_", done[pairs[key]]["explanation"] if key in pairs else None))
                if expl is not None and pos and neg]
            for label, expl in judged:
                scores[f"{label}detection"] = _judge(judge, expl, pos, neg, False, random.Random(rng.random()))
                scores[f"{label}fuzzing"] = _judge(judge, expl, pos, neg, True, random.Random(rng.random()))
            aucs = S.embedding_aucs([e for _, e in judged], _plain(pos), _plain(neg), embed)  # windows embedded once
            scores |= {f"{label}embedding": {"auc": a} for (label, _), a in zip(judged, aucs, strict=True)}
            scores |= {"judge": judge.name, "positives": len(pos), "negatives": len(neg),
                       "control_unit": list(pairs[key]) if key in pairs else None,
                       "negative_windows": [[w.doc_id, w.start, w.start + len(w.tokens) - 1] for w in neg]}
            with _opened(cfg.db, write=True) as con:
                X.set_scores(con, cfg.run, key[0], key[1], scores, why)
            done[key] |= {"scores": scores, "reason": why}
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
