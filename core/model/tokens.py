"""Text <-> tokens, one rule each: how text is tokenized, how a token is shown, what a single-token target is.

A token is shown as its decoded text, or as the tokenizer's raw piece where decoding one token alone gives a partial
UTF-8 byte (U+FFFD); the index stores these strings (table `vocab`) and every page and command shows the same.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import UserError
from core.model.run import check_length


class TokenError(UserError):
    """Text that gives no usable tokens, or a target that is not one token; one line."""


def tokenize(tokenizer, text: str) -> list[int]:
    """`text` as the model reads it: the tokenizer's defaults, special tokens included (e.g. Gemma's BOS)."""
    return list(tokenizer(text)["input_ids"])


def token_texts(tokenizer, ids: Sequence[int]) -> list[str]:
    """The display string of each token id (module docstring)."""
    ids = [int(i) for i in ids]
    decoded = tokenizer.batch_decode([[i] for i in ids])
    raw = tokenizer.convert_ids_to_tokens(ids)
    return [d if "\ufffd" not in d else (r or d) for d, r in zip(decoded, raw, strict=True)]


def vocab_strings(tokenizer) -> list[str]:
    """The display string of every token id, 0..len(tokenizer)-1."""
    return token_texts(tokenizer, range(len(tokenizer)))


def encode_prompt(lm, prompt: str) -> list[int]:
    """A prompt's token ids as the model reads it; TokenError for an empty prompt, ContextLengthError (one line)
    for one longer than the model's positions."""
    if not prompt.strip():
        raise TokenError("the prompt is empty")
    ids = tokenize(lm.tokenizer, prompt)
    if not ids:
        raise TokenError("the prompt has no tokens")
    check_length(lm.model, len(ids))
    return ids


def token_id(lm, text: str) -> int:
    """The single token spelling `text` exactly (e.g. ' Paris'); TokenError if it takes several tokens."""
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = token_texts(lm.tokenizer, ids)
        raise TokenError(f"target {text!r} is not one token for this model (it splits into {pieces}); "
                         "try it with or without a leading space")
    return int(ids[0])
