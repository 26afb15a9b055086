"""Score every head of a model (roles, OV copying, ablation) and store the scores in the index, as `neuroboard
heads` and the demo do."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from core.errors import UserError


class HeadsError(UserError):
    """Bad heads input; one line."""


@dataclass
class HeadsConfig:
    model: str
    """Built-in name (smollm2-135m, gemma3-270m), .gguf file, model folder or hub id."""
    db: str
    """DuckDB index file (created if missing)."""
    seqs: int = 16
    """Sequences of the repeated-random-token probe."""
    half_len: int = 64
    """Length n of each copy in the probe (sequences are BOS + 2n tokens)."""
    ablation_tokens: int = 512
    """Corpus tokens over which each head's ablation effect on the loss is measured (0: skip ablation)."""
    text_tokens: int = 512
    """Corpus tokens for the roles measured on natural text (0: measure them on the repeated probe)."""
    corpus: str = "demo"
    """Corpus of the text probe and the ablation sample: 'demo', a .txt/.jsonl/.csv/.parquet file, or a dataset."""
    trust_remote_code: bool = False
    """Allow a hub model's own Python code to run."""

    def validate(self) -> None:
        if self.seqs < 1 or self.half_len < 2 or self.ablation_tokens < 0 or self.text_tokens < 0:
            raise HeadsError("--seqs must be >= 1, --half-len >= 2, --ablation-tokens and --text-tokens >= 0")


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
