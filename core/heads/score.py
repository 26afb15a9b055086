"""Score every head of a model (roles, OV copying, ablation) and store the scores in the index, as `neuroboard
heads` and the demo do."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict

from core.heads.config import HeadsConfig


def score_heads(cfg: HeadsConfig, on_progress: Callable[[str, int, int], None] | None = None
                ) -> tuple[list[dict], dict]:
    """Score every head of cfg.model and store the scores in cfg.db (replacing older ones); (rows, config).
    `on_progress(stage, done, total)`, stage "roles" or "ablation"."""
    from core.heads.ablation import corpus_windows, head_ablation
    from core.heads.roles import head_scores
    from core.index import writer
    from core.index.db import connect
    from core.index.heads import head_rows, write_head_scores
    from core.model.load import load_model
    from core.model.tokens import vocab_strings

    cfg.validate()
    connect(cfg.db).close()  # the index is usable (not locked, not too new) before any model work
    lm = load_model(cfg.model, attn="eager", trust_remote_code=cfg.trust_remote_code)
    t = time.monotonic()

    def stage(name: str):
        return (lambda done, total: on_progress(name, done, total)) if on_progress else None

    hs = head_scores(lm, n_seqs=cfg.seqs, half_len=cfg.half_len, text_tokens=cfg.text_tokens, corpus=cfg.corpus,
                     on_progress=stage("roles"))
    scores = dict(hs.scores)
    if cfg.ablation_tokens:
        windows = corpus_windows(lm, n_tokens=cfg.ablation_tokens, corpus=cfg.corpus)
        scores |= {f"ablation_{k}": v for k, v in head_ablation(lm, windows, on_progress=stage("ablation")).items()}
    config = {k: v for k, v in asdict(cfg).items() if k not in ("model", "db", "trust_remote_code")}
    config["seconds"] = round(time.monotonic() - t, 1)
    con = connect(cfg.db)
    try:
        with writer.transaction(con):
            model_id = writer.ensure_model(con, lm.info(), vocab_strings(lm.tokenizer))
        write_head_scores(con, model_id, hs.n_kv_heads, scores, config)
        return head_rows(con, model_id), config
    finally:
        con.close()
