"""Padding, the context-length rule and early-stopping passes."""

import pytest
import torch
from helpers.tiny import tiny_model, tiny_tokenizer

from core.model.intervene import store
from core.model.load import LoadedModel
from core.model.parts import find_parts
from core.model.run import ContextLengthError, check_length, forward_until, max_positions, pad_batch


def test_pad_batch_right_pads():
    ids, valid = pad_batch([[5, 6, 7], [8]], pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1]]
    assert valid.tolist() == [[True, True, True], [True, False, False]]
    with pytest.raises(ValueError):
        pad_batch([])


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
def test_padded_batch_equals_each_sequence_alone(arch):
    model = tiny_model(arch)
    lm = LoadedModel("t", "c", model, tiny_tokenizer(), find_parts(model))
    seqs = [[3, 4, 5, 6, 7, 8], [9, 10, 11]]
    ids, valid = pad_batch(seqs)
    got, alone = {}, {}
    with torch.inference_mode():
        forward_until(lm, ids, 1, edits={"resid_post.1": store(got, "h")})
        for i, s in enumerate(seqs):
            forward_until(lm, torch.tensor([s]), 1, edits={"resid_post.1": store(alone, i)})
    for i, s in enumerate(seqs):
        torch.testing.assert_close(got["h"][i, : len(s)], alone[i][0], atol=1e-5, rtol=0)


def test_context_length_rule():
    llama, gpt2 = tiny_model("llama"), tiny_model("gpt2")
    assert max_positions(llama) == 256 and max_positions(gpt2) == 256  # max_position_embeddings / n_positions
    check_length(gpt2, 256)
    with pytest.raises(ContextLengthError, match="257 tokens, more than the model's 256 positions"):
        check_length(gpt2, 257)


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
def test_decode_equals_full_passes_by_hand(arch):
    """decode (KV cache, one new token per step) equals running the whole sequence again each step with plain
    model calls: greedy rows by argmax, sampled rows by torch.multinomial with a generator seeded alike; the
    first logits are the prompt's last-position logits."""
    from core.model.run import decode

    model = tiny_model(arch)
    lm = LoadedModel(name=arch, source="config", model=model, tokenizer=tiny_tokenizer(), parts=find_parts(model))
    ids = torch.tensor([[3, 17, 42, 5, 9]]).expand(3, -1)
    first, out = decode(lm, ids, 6, sample=(False, True, True), seed=7)
    with torch.inference_mode():
        want_first = model(ids[:1]).logits[0, -1]
        torch.testing.assert_close(first[0], want_first, rtol=1e-4, atol=1e-4)
        for b, sampled in enumerate((False, True, True)):
            g = torch.Generator().manual_seed(7)
            seq = ids[0].tolist()
            for _ in range(6):
                last = model(torch.tensor([seq])).logits[0, -1].float()
                seq.append(int(torch.multinomial(last.softmax(-1), 1, generator=g)[0]) if sampled
                           else int(last.argmax()))
            assert out[b].tolist() == seq[5:]
    assert out[1].tolist() == out[2].tolist()  # sampled alike


def test_decode_stops_once_every_row_chose_a_stop_token():
    """With `stop`, decode returns the unstopped output cut after the step where the last row reached a stop token
    (rows stopped earlier go on as before), and all of it when a row never does."""
    from core.model.run import decode

    model = tiny_model("llama")
    lm = LoadedModel(name="llama", source="config", model=model, tokenizer=tiny_tokenizer(), parts=find_parts(model))
    ids = torch.tensor([[3, 17, 42, 5, 9]]).expand(3, -1)
    _, full = decode(lm, ids, 12, sample=(False, True, True), seed=3)

    def first(row, stop):
        return next((i for i, t in enumerate(row.tolist()) if t in stop), None)
    for stop in ({int(full[0, 2])}, {int(full[0, 5]), int(full[1, 1])}, set(full[:, 0].tolist()), {10_000}):
        hits = [first(full[b], stop) for b in range(3)]
        n = 12 if None in hits else max(hits) + 1
        _, out = decode(lm, ids, 12, sample=(False, True, True), seed=3, stop=stop)
        assert out.tolist() == full[:, :n].tolist()
    assert decode(lm, ids, 12, sample=(False, True, True), seed=3, stop=set(full[:, 0].tolist()))[1].shape[1] == 1
