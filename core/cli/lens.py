"""`neuroboard lens`: the logit (or tuned) lens of one prompt at one position, as text or JSON."""

from __future__ import annotations

import json


class LensError(ValueError):
    """Bad lens input (empty prompt, a target that is not one token, a position out of range); one line."""


def lens_parser(sub) -> None:
    p = sub.add_parser("lens", help="what the model predicts after each block, for one prompt (logit/tuned lens)")
    p.add_argument("--model", required=True, help="built-in name (smollm2-135m, gemma3-270m), .gguf, folder or hub id")
    p.add_argument("--prompt", required=True)
    p.add_argument("--position", type=int, default=-1, help="token position (negative counts from the end)")
    p.add_argument("--target", default=None, help="token text, e.g. ' Paris' (default: the model's own prediction)")
    p.add_argument("--lens", choices=["logit", "tuned"], default="logit")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--json", action="store_true")


def lens_json(lm, prompt: str, *, position: int = -1, target: str | None = None, kind: str = "logit") -> dict:
    """The trajectory at `position`: the target and, per block, top token, its prob, the target's prob and rank."""
    from core.lens.logit import encode, lens, token_id, trajectory

    try:
        ids = encode(lm, prompt)
        tgt = token_id(lm, target) if target is not None else None
        translator = None
        if kind == "tuned":
            from core.lens.store import load_tuned_lens

            translator = load_tuned_lens(lm)
            if translator is None:
                raise LensError(f"no tuned lens for {lm.name}; train one with `neuroboard train-lens --model "
                                f"{lm.name}`")
        if not -len(ids) <= position < len(ids):
            raise LensError(f"position {position} out of range for a {len(ids)}-token prompt")
        res = lens(lm, ids, target=tgt, translator=translator, positions=[position])  # only the position shown
        out = trajectory(res, position, lambda i: lm.tokenizer.decode([i]))
    except LensError:
        raise
    except ValueError as e:
        raise LensError(str(e)) from None
    return {"model": lm.name, "lens": kind, "prompt": prompt, "tokens": res.tokens} | out


def cmd_lens(a) -> int:
    from core.model.load import load_model

    lm = load_model(a.model, trust_remote_code=a.trust_remote_code)
    out = lens_json(lm, a.prompt, position=a.position, target=a.target, kind=a.lens)
    if a.json:
        print(json.dumps(out))
        return 0
    print(f"{a.lens} lens, {lm.name}, position {out['position']} ({out['token']!r}), target {out['target']!r}")
    print(f"{'layer':>5}  {'top token':<18} {'p(top)':>7}  {'p(target)':>9} {'rank':>6}")
    for r in out["layers"]:
        print(f"{r['layer']:>5}  {r['top_token']!r:<18} {r['top_prob']:7.3f}  {r['target_prob']:9.4f} "
              f"{r['target_rank']:>6}")
    return 0
