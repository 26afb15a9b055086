"""`neuroboard heads`: score every attention head's roles and ablation effects, store them in the index, print JSON."""

from __future__ import annotations

import json
import time

from core.cli.progress import Bar


class HeadsError(ValueError):
    """Bad heads input; one line."""


def heads_parser(sub) -> None:
    p = sub.add_parser("heads", help="score every attention head (roles, OV copying, ablation) into the index")
    p.add_argument("--model", required=True, help="built-in name (smollm2-135m, gemma3-270m), .gguf, folder or hub id")
    p.add_argument("--db", required=True, help="DuckDB index file (created if missing)")
    p.add_argument("--seqs", type=int, default=16, help="repeated-random-token probe sequences")
    p.add_argument("--half-len", type=int, default=64, help="length of each copy in the probe")
    p.add_argument("--ablation-tokens", type=int, default=512, help="corpus tokens for head ablation (0: skip)")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--json", action="store_true", help="print one JSON object per head")
    p.add_argument("--no-progress", action="store_true")


def score_heads(model: str, db: str, *, seqs: int = 16, half_len: int = 64, ablation_tokens: int = 512,
                progress: bool = True, trust_remote_code: bool = False) -> tuple[list[dict], dict]:
    """Score every head of `model` and store the scores in `db` (replacing older ones); (rows, config)."""
    from core.heads.ablation import corpus_windows, head_ablation
    from core.heads.roles import head_scores
    from core.index import writer
    from core.index.db import connect
    from core.index.heads import head_rows, write_head_scores
    from core.model.load import load_model
    from core.units.extract import vocab_strings

    if seqs < 1 or half_len < 2 or ablation_tokens < 0:
        raise HeadsError("--seqs must be >= 1, --half-len >= 2 and --ablation-tokens >= 0")
    connect(db).close()  # the index is usable (not locked, not too new) before any model work
    lm = load_model(model, attn="eager", trust_remote_code=trust_remote_code)
    t = time.monotonic()
    bars = [Bar(progress, f"{lm.name}: head roles")]
    try:
        hs = head_scores(lm, n_seqs=seqs, half_len=half_len, on_progress=bars[0].update)
        scores = dict(hs.scores)
        if ablation_tokens:
            bars.append(Bar(progress, f"{lm.name}: head ablation"))
            abl = head_ablation(lm, corpus_windows(lm, n_tokens=ablation_tokens), on_progress=bars[1].update)
            scores |= {f"ablation_{k}": v for k, v in abl.items()}
    finally:
        for b in bars:
            b.close()
    config = {"seqs": seqs, "half_len": half_len, "ablation_tokens": ablation_tokens,
              "seconds": round(time.monotonic() - t, 1)}
    con = connect(db)
    try:
        con.execute("BEGIN")
        model_id = writer.ensure_model(con, lm.info(), vocab_strings(lm.tokenizer))
        con.execute("COMMIT")
        write_head_scores(con, model_id, hs.n_kv_heads, scores, config)
        return head_rows(con, model_id), config
    finally:
        con.close()


def cmd_heads(a) -> int:
    rows, config = score_heads(a.model, a.db, seqs=a.seqs, half_len=a.half_len, ablation_tokens=a.ablation_tokens,
                               progress=not a.no_progress, trust_remote_code=a.trust_remote_code)
    if a.json:
        print(json.dumps(rows))
        return 0
    L, H = rows[-1]["layer"] + 1, rows[-1]["head"] + 1
    print(f"{a.model}: {L} layers x {H} heads scored into {a.db} ({config['seconds']} s)")
    for role in [k for k in rows[0] if k not in ("layer", "head")]:
        best = max(rows, key=lambda r: r[role] if role != "entropy" else -r[role])
        print(f"  {role:<16} strongest: layer {best['layer']:>2} head {best['head']:>2}  {best[role]:.3f}")
    return 0
