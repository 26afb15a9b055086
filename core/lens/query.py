"""One prompt's lens trajectory at one position, as `neuroboard lens` prints it (text or JSON)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.errors import UserError


class LensError(UserError):
    """Bad lens input (empty prompt, a target that is not one token, a position out of range); one line."""


@dataclass
class LensQuery:
    model: str
    """Built-in name (smollm2-135m, gemma3-270m), .gguf file, model folder or hub id."""
    prompt: str
    """The text whose last (or chosen) position the lens reads."""
    position: int = -1
    """Token position (negative counts from the end)."""
    target: str | None = None
    """Token text, e.g. ' Paris' (default: the model's own final prediction at the position)."""
    lens: Literal["logit", "tuned"] = "logit"
    """Which lens: the logit lens, or the tuned lens stored by `neuroboard train-lens`."""
    trust_remote_code: bool = False
    """Allow a hub model's own Python code to run."""


def lens_json(lm, q: LensQuery) -> dict:
    """The trajectory at the query's position: the target and, per block, the top token, its probability, the
    target's probability and rank (core.lens.logit.trajectory). LensError (one line) for bad input."""
    from core.lens.logit import lens, trajectory
    from core.model.tokens import encode_prompt, token_id, token_texts

    ids = encode_prompt(lm, q.prompt)
    tgt = token_id(lm, q.target) if q.target is not None else None
    translator = None
    if q.lens == "tuned":
        from core.lens.store import load_tuned_lens

        translator = load_tuned_lens(lm)
        if translator is None:
            raise LensError(f"no tuned lens for {lm.name}; train one with `neuroboard train-lens --model {lm.name}`")
    if not -len(ids) <= q.position < len(ids):
        raise LensError(f"position {q.position} out of range for a {len(ids)}-token prompt")
    res = lens(lm, ids, target=tgt, translator=translator, positions=[q.position])  # only the position shown
    out = trajectory(res, q.position, lambda i: token_texts(lm.tokenizer, [i])[0])
    return {"model": lm.name, "lens": q.lens, "prompt": q.prompt, "tokens": res.tokens} | out
