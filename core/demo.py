"""What `make demo` builds: an index of the demo corpus for each built-in model and their head scores, each job
skipped when its result is already in the index (an interrupted extraction resumes)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class DemoConfig:
    db: str = "data/demo.duckdb"
    """The demo index (created if missing)."""
    max_tokens: int = 100_000
    """Demo-corpus tokens indexed per model."""
    models: list[str] = field(default_factory=lambda: ["smollm2-135m", "gemma3-270m"])
    """Models to index, in order (repeat the flag, or separate names by commas)."""
    ablation_tokens: int = 128
    """Corpus tokens for each head's ablation effect (a small sample keeps the demo quick)."""
    serve: bool = True
    """Serve the dashboard when the index is ready."""
    port: int = 8501
    """TCP port of the dashboard."""
    host: str = "127.0.0.1"
    """Address the dashboard listens on (127.0.0.1: this machine only)."""

    def __post_init__(self) -> None:
        self.models = [m.strip() for item in self.models for m in item.split(",") if m.strip()]


def extract_jobs(cfg: DemoConfig) -> list[tuple[object, bool]]:
    """(ExtractConfig, resume) for each model without a complete demo run in the index, in order."""
    from core.index import queries
    from core.index.db import connect
    from core.units.extract import ExtractConfig

    os.makedirs(os.path.dirname(os.path.abspath(cfg.db)), exist_ok=True)
    runs = []
    if os.path.exists(cfg.db):
        con = connect(cfg.db)  # a writing open: brings an older index up to the current schema
        try:
            runs = queries.list_runs(con)
        finally:
            con.close()
    jobs = []
    for model in cfg.models:
        ecfg = ExtractConfig(model=model, db=cfg.db, corpus="demo", max_tokens=cfg.max_tokens)
        same = [r for r in runs if r.model == model and r.config == ecfg.identity()]
        if not any(r.status == "complete" for r in same):
            jobs.append((ecfg, any(r.status == "running" for r in same)))
    return jobs


def heads_jobs(cfg: DemoConfig) -> list[object]:
    """A HeadsConfig for each demo model without head scores in the index."""
    from core.heads.score import HeadsConfig
    from core.index.db import connect
    from core.index.heads import head_sets

    con = connect(cfg.db)
    try:
        have = {s.model for s in head_sets(con)}
    finally:
        con.close()
    return [HeadsConfig(model=m, db=cfg.db, ablation_tokens=cfg.ablation_tokens) for m in cfg.models if m not in have]


def build(cfg: DemoConfig, on_extract: Callable[[object], Callable] | None = None,
          on_heads: Callable[[object], Callable] | None = None, say: Callable[[str], None] = lambda s: None) -> None:
    """Run every missing demo job; `on_extract(ExtractConfig)` and `on_heads(HeadsConfig)` return the job's
    progress callback, `say` gets one line per job."""
    from core.heads.score import score_heads
    from core.units.extract import extract

    jobs = extract_jobs(cfg)
    for model in [m for m in cfg.models if m not in {j.model for j, _ in jobs}]:
        say(f"demo: {model} already indexed in {cfg.db}")
    for ecfg, resume in jobs:
        say(f"demo: indexing {cfg.max_tokens} tokens of the demo corpus with {ecfg.model}")
        extract(ecfg, resume=resume, on_progress=on_extract(ecfg) if on_extract else None)
    for hcfg in heads_jobs(cfg):
        say(f"demo: scoring the attention heads of {hcfg.model}")
        score_heads(hcfg, on_progress=on_heads(hcfg) if on_heads else None)
