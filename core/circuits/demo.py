"""What `make demo` adds for circuits (core.demo runs these jobs after the others): a transcoder set for the first
model trained on the demo corpus, its features indexed (so every graph node has a feature page), and the
attribution graphs of a few prompts where smollm2 is right for a reason a reader can check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

PROMPTS = [
    ("The capital of Germany is", " Berlin",
     "a capital city: the country's name, carried to the last position, promotes its capital"),
    ("x = (a + b", ")", "a closing bracket: the open parenthesis earlier in the line calls for its partner"),
    ("one two three four five one two three four", " five",
     "an induction copy: the sequence seen before is continued from where the repeat stands"),
    ("import numpy as", " np", "a code convention: the module's customary alias"),
]
"""(prompt, target, why) of the demo's graphs; smollm2-135m ranks each target first."""


@dataclass
class DemoGraphs:
    db: str
    model: str
    transcoders: str
    prompts: list[tuple[str, str, str]] = field(default_factory=lambda: list(PROMPTS))
    out_dir: str = ""
    """Where the graph files go (beside the index, in demo-graphs/)."""


def set_dir(db: str, model: str) -> str:
    """Where the demo's transcoder set of `model` is written (beside the index)."""
    safe = "".join(c if c.isalnum() or c in "_.-" else "_" for c in model)
    return os.path.join(os.path.dirname(os.path.abspath(db)), "demo-transcoders", safe)


def stored_prompts(db: str, model: str) -> set[str]:
    from core.index.db import connect
    from core.index.graphs import list_graphs

    con = connect(db, read_only=True)
    try:
        return {g.prompt for g in list_graphs(con, model)}
    finally:
        con.close()


def circuit_jobs(cfg, runs, notes: list[str]) -> list[tuple[str, str, object]]:
    """(name, kind, config) of the circuit jobs still to do for `cfg` (a core.demo.DemoConfig): train the set
    (unless its files exist), index its features (unless a complete run did), store the graphs not stored yet."""
    from core.saes.train_transcoders import TrainTranscodersConfig
    from core.units.config import ExtractConfig

    model, jobs = cfg.models[0], []
    out = set_dir(cfg.db, model)
    if os.path.exists(os.path.join(out, "config.yaml")):
        notes.append(f"demo: the transcoder set {out} is already trained")
    else:
        jobs.append((f"train transcoders for every layer of {model}", "train-transcoders",
                     TrainTranscodersConfig(model=model, out=out, layers="all", corpus="demo",
                                            tokens=cfg.transcoder_tokens, latents=cfg.transcoder_latents,
                                            k=cfg.transcoder_k, batch=cfg.transcoder_batch, lr=cfg.transcoder_lr,
                                            eval_tokens=4096)))
    ecfg = ExtractConfig(model=model, db=cfg.db, corpus="demo", max_tokens=cfg.max_tokens, layers="0", sae=[out],
                         sae_map=False)
    want = ecfg.identity()
    same = [r for r in runs if r.model == model and all(r.config.get(k) == want.get(k)
                                                         for k in ("corpus", "max_tokens", "layers", "sae"))]
    if any(r.status == "complete" for r in same):
        notes.append(f"demo: the transcoder features of {model} are already indexed")
    else:
        resume = any(r.status == "running" and r.config == want for r in same)
        jobs.append((f"index the transcoder features of {model}", "extract-resume" if resume else "extract", ecfg))
    done = stored_prompts(cfg.db, model)
    todo = [p for p in PROMPTS if p[0] not in done]
    if todo:
        out_dir = os.path.join(os.path.dirname(os.path.abspath(cfg.db)), "demo-graphs")
        jobs.append((f"attribution graphs of {len(todo)} prompts", "graphs",
                     DemoGraphs(cfg.db, model, out, todo, out_dir)))
    else:
        notes.append(f"demo: the graphs of {model} are already stored")
    return jobs


def run_graphs(job: DemoGraphs, on_graph=None) -> None:
    """Each prompt's graph, written to a file and stored in the index (one model load for all)."""
    from core.circuits.run import GraphConfig, build, load_inputs, slug_of, write_and_store

    os.makedirs(job.out_dir, exist_ok=True)
    lm = ts = None
    for i, (prompt, target, why) in enumerate(job.prompts):
        cfg = GraphConfig(model=job.model, transcoders=job.transcoders, prompt=prompt, target=[target],
                          out=os.path.join(job.out_dir, f"{slug_of(prompt)}.json"), db=job.db, slug=slug_of(prompt))
        if lm is None:
            lm, ts = load_inputs(cfg)
        if len(lm.tokenizer(target, add_special_tokens=False)["input_ids"]) != 1:
            cfg.target = []  # another model's tokenizer: its most probable next tokens instead
        write_and_store(cfg, lm, build(lm, ts, cfg), note=why, ts=ts)
        if on_graph:
            on_graph(i + 1, len(job.prompts))
