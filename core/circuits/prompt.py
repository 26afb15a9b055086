"""A graph's tokens as circuit-tracer makes them (`ensure_tokenized`): the text without special tokens, then one
special token at position 0 (the model's BOS, else PAD, else EOS, else its first special token; like
circuit-tracer, an id of 0 is passed over), unless the text already begins with a special token. Position 0 carries
no feature or error node: a transformer's first position is a sink, not part of the prompt's meaning."""

from __future__ import annotations

from core.errors import UserError
from core.model.run import check_length


class GraphError(UserError):
    """A graph that cannot be made or read as asked (prompt, target, transcoder set, file); one line."""


def graph_tokens(lm, text: str) -> list[int]:
    """The token ids of `text` as a graph sees them (module docstring); GraphError for an empty prompt or one longer
    than the model's context."""
    if not text or not text.strip():
        raise GraphError("the prompt is empty")
    tok = lm.tokenizer
    ids = list(tok(text, add_special_tokens=False)["input_ids"])
    if not ids:
        raise GraphError(f"the prompt {text!r} has no tokens")
    special = list(getattr(tok, "all_special_ids", []) or [])
    if ids[0] not in special:
        first = next(filter(None, [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, *special]), None)
        if first is None:
            raise GraphError("the tokenizer has no special token to put at position 0")
        ids = [int(first), *ids]
    check_length(lm.model, len(ids), "the prompt")
    return ids


def target_ids(lm, targets: list[str]) -> list[int]:
    """The vocabulary id of each target token string (e.g. " Paris"); GraphError unless each is exactly one token."""
    out = []
    for t in targets:
        ids = lm.tokenizer(t, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise GraphError(f"target {t!r} is {len(ids)} tokens, not one: give a single token (e.g. with its "
                             "leading space)")
        out.append(int(ids[0]))
    return out
