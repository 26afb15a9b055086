"""Token display strings and single-token targets."""

import pytest
from helpers.tiny import tiny_tokenizer

from core.model.tokens import TokenError, token_texts, vocab_strings


def test_token_texts_decode_or_raw_piece():
    tok = tiny_tokenizer()
    ids = tok("The cat <b>")["input_ids"]
    assert "".join(token_texts(tok, ids[1:])) == "The cat <b>"  # whole tokens decode to their text
    strings = vocab_strings(tok)
    assert len(strings) == len(tok) and strings[0] == "<bos>"
    partial = [i for i in range(len(tok)) if "\ufffd" in tok.decode([i])]
    assert partial and all("\ufffd" not in strings[i] for i in partial)  # a partial byte shows its raw piece


def test_token_id_and_prompt_errors():
    from helpers.tiny import tiny_model

    from core.model.load import LoadedModel
    from core.model.parts import find_parts
    from core.model.tokens import encode_prompt, token_id

    model = tiny_model("llama")
    lm = LoadedModel("t", "c", model, tiny_tokenizer(), find_parts(model))
    assert token_texts(lm.tokenizer, [token_id(lm, " the")]) == [" the"]
    with pytest.raises(TokenError, match="not one token"):
        token_id(lm, " catastrophe")
    with pytest.raises(TokenError, match="empty"):
        encode_prompt(lm, "   ")
    with pytest.raises(Exception, match="positions"):
        encode_prompt(lm, "cat " * 300)
