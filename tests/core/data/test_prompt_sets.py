"""Prompt sets: the built-ins, a user CSV, one-line errors for bad input; layer representations of a batch equal
an unbatched forward pass of each prompt (`output_hidden_states`, and hooks on an unbatched pass for the last block,
whose hidden state HF returns final-normed)."""

import csv
import functools

import numpy as np
import pytest
import torch
from helpers.raw import module_inputs
from helpers.tiny import tiny_model, tiny_tokenizer

from core.data.prompt_sets import (
    PromptSet,
    PromptSetError,
    builtin_file,
    layer_representations,
    load_prompt_set,
)
from core.model.load import LoadedModel
from core.model.parts import find_parts


def wrap(model):
    return LoadedModel(name="tiny", source="config", model=model, tokenizer=tiny_tokenizer(),
                       parts=find_parts(model))


@functools.cache
def tiny_lm(arch):
    """A tiny random model (shared by the tests: nothing here changes it) and its wrapper."""
    model = tiny_model(arch)
    return model, wrap(model)


@pytest.mark.parametrize(("name", "labels"), [("truth", {"true", "false"}),
                                              ("sentiment", {"positive", "negative"})])
def test_builtin_sets(name, labels):
    ps = load_prompt_set(name)
    assert set(ps.counts) == labels and min(ps.counts.values()) >= 100
    assert len(set(ps.texts)) == len(ps.texts)
    assert all(t == t.strip() and t for t in ps.texts)
    with builtin_file(name).open(newline="", encoding="utf-8") as f:
        assert next(csv.reader(f)) == ["text", "label", "group"]
    # matched pairs (a statement and its twin) share a group, so cross-validation keeps them in one fold
    assert len(set(ps.groups)) == len(ps.texts) // 2
    for g in set(ps.groups):
        assert sorted(lab for lab, x in zip(ps.labels, ps.groups, strict=True) if x == g) == sorted(labels)


def test_user_csv(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text('\ufeffid, Label ,Text\n1, yes ,"Hello, world"\n\n2,no,"She said ""hi"""\n,,\n'
                    "3,yes,  plain  \n4,no,third\n", encoding="utf-8")
    ps = load_prompt_set(str(path))
    assert ps.texts == ["Hello, world", 'She said "hi"', "plain", "third"]
    assert ps.labels == ["yes", "no", "yes", "no"]
    assert ps.counts == {"yes": 2, "no": 2} and len(ps) == 4 and ps.name == str(path)


def test_user_csv_with_groups(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("text,label,group\nA is A.,true,1\nA is B.,false,1\nB is B.,true,2\nB is C.,false,2\n",
                    encoding="utf-8")
    ps = load_prompt_set(str(path))
    assert ps.groups == ["1", "1", "2", "2"] and load_prompt_set("truth").groups is not None
    path.write_text("text,label,group\nA is A.,true,1\nA is B.,false,\nB is B.,true,2\nB is C.,false,2\n",
                    encoding="utf-8")
    with pytest.raises(PromptSetError, match="row 3 has an empty group"):
        load_prompt_set(str(path))


BAD = {
    "missing": (None, "not found"),
    "no_columns": ("prompt,class\na,x\nb,y\n", "header"),
    "not_utf8": (b"text,label\ncaf\xe9,x\nb,y\n", "UTF-8"),
    "one_label": ("text,label\na,x\nb,x\nc,x\n", "2 distinct labels"),
    "small_label": ("text,label\na,x\nb,x\nc,y\n", "at least 2 prompts"),
    "empty": ("", "empty"),
    "blank_lines": ("\n \n\n", "empty"),
    "header_only": ("text,label\n", "no prompts"),
    "empty_cell": ("text,label\na,x\n,y\nb,y\n", "row 3"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(tmp_path, case):
    content, needle = BAD[case]
    path = tmp_path / f"{case}.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(PromptSetError) as e:
        load_prompt_set(str(path))
    msg = str(e.value)
    assert "\n" not in msg and needle in msg, msg


def test_prompt_set_validates():
    with pytest.raises(PromptSetError, match="2 texts but 1 labels"):
        PromptSet("x", ["a", "b"], ["p"])
    with pytest.raises(PromptSetError, match="no prompts"):
        PromptSet("x", [], [])
    with pytest.raises(PromptSetError, match="2 texts but 1 groups"):
        PromptSet("x", ["a", "b"], ["p", "q"], groups=["g"])
    assert isinstance(PromptSetError("x"), ValueError)


TEXTS = ["Paris is the capital of France.", "The cat sat", "Numbers like 12, 345 and 6789 appear in tables.",
         "Rome", "The dog chased the cat around the garden, and the bird watched from a tree.", "Berlin is big."]


def unbatched(model, lm, ids):
    """Every block's output (L, T, d) for one prompt: hidden_states[l + 1] for l < L - 1, hooks for the last."""
    with torch.no_grad():
        hs = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        last = lm.parts.final_norm  # HF's last hidden state is normed: undo nothing, read the block's input instead
        with module_inputs({0: last}) as got:
            model(torch.tensor([ids]))
    return [h[0].numpy() for h in hs[1:-1]] + [got[0][0].numpy()]


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
@pytest.mark.parametrize("pool", ["last", "mean"])
def test_layer_representations_equal_unbatched(arch, pool):
    model, lm = tiny_lm(arch)
    reps = layer_representations(lm, TEXTS, pool=pool, batch_size=4)  # batches of mixed lengths: padding
    L = lm.n_layers
    assert reps.shape == (L, len(TEXTS), 64) and reps.dtype == np.float32
    bos = lm.tokenizer.bos_token_id
    for n, text in enumerate(TEXTS):
        ids = lm.tokenizer(text)["input_ids"]
        assert ids[0] == bos
        per_layer = unbatched(model, lm, ids)
        for layer in range(L):
            h = per_layer[layer]  # (T, d)
            want = h[-1] if pool == "last" else h[1:].mean(0)  # mean leaves out the BOS
            np.testing.assert_allclose(reps[layer, n], want, rtol=1e-4, atol=1e-4)


def test_mean_of_only_special_tokens_keeps_them():
    model, lm = tiny_lm("llama")
    reps = layer_representations(lm, [""], pool="mean")  # the BOS alone
    want = unbatched(model, lm, lm.tokenizer("")["input_ids"])
    for layer in range(lm.n_layers):
        np.testing.assert_allclose(reps[layer, 0], want[layer].mean(0), rtol=1e-4, atol=1e-4)


def test_batch_size_does_not_matter():
    _, lm = tiny_lm("gemma3")
    a = layer_representations(lm, TEXTS, batch_size=1)
    b = layer_representations(lm, TEXTS, batch_size=16)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="pool"):
        layer_representations(lm, TEXTS, pool="max")


def test_parse_uploaded_bytes():
    from core.data.prompt_sets import PromptSetError, parse_prompt_set

    ps = parse_prompt_set(b"text,label\nA,x\nB,y\nC,x\nD,y\n", "up.csv")
    assert ps.texts == ["A", "B", "C", "D"] and ps.labels == ["x", "y", "x", "y"]
    for data, needle in [(b"\xff\xfe", "not UTF-8"), (b"text,label\n", "no prompts"), (b"a,b\n1,2\n", "header"),
                         ("text,label\n" + "t,x\n" * 3, "more than")]:
        with pytest.raises(PromptSetError, match=needle) as e:
            parse_prompt_set(data if isinstance(data, bytes) else data.encode(), "up.csv", max_prompts=2)
        assert "\n" not in str(e.value)
