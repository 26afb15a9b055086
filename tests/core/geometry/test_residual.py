"""Residual geometry against NumPy over the model's own hidden states, and on constructed streams."""

import numpy as np
import pytest
import torch
from helpers.tiny import tiny_model, tiny_tokenizer

from core.geometry.residual import massive_activations, residual_geometry
from core.lens.logit import Stream, stream
from core.model.load import LoadedModel
from core.model.parts import find_parts


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
def test_geometry_equals_numpy_on_hidden_states(arch):
    model = tiny_model(arch)
    lm = LoadedModel(name="tiny", source="config", model=model, tokenizer=tiny_tokenizer(),
                     parts=find_parts(model))
    ids = lm.tokenizer("Paris is the capital of France. The cat sat on the mat")["input_ids"]
    s = stream(lm, ids)
    geo = residual_geometry(s, top_n=7)
    with torch.no_grad():
        hs = [h[0].double().numpy() for h in model(torch.tensor([ids]), output_hidden_states=True).hidden_states]
    L = len(hs) - 1
    # HF: hidden_states[0] is the stream entering block 0, [l+1] block l's output, except the last (final-normed)
    np.testing.assert_allclose(s.embed.numpy(), hs[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.h[:-1].numpy(), np.stack(hs[1:L]), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(lm.parts.final_norm(s.h[-1]).numpy(), hs[L], rtol=1e-4, atol=1e-5)
    streams = [hs[0]] + [s.h[i].double().numpy() for i in range(L)]
    for layer in range(L):
        a, b = streams[layer], streams[layer + 1]
        na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
        np.testing.assert_allclose(geo.norms[layer + 1], nb, rtol=1e-6)
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero embedding (padding row): NaN both ways
            np.testing.assert_allclose(geo.cos_prev[layer], (a * b).sum(-1) / (na * nb), rtol=1e-6, atol=1e-9)
            rel = np.linalg.norm(b - a, axis=-1) / na
        rel[~np.isfinite(rel)] = np.nan
        np.testing.assert_allclose(geo.rel_update[layer], rel, rtol=1e-6)
        assert geo.median_update[layer] == pytest.approx(np.nanmedian(rel[1:]), rel=1e-9)
    np.testing.assert_allclose(geo.norms[0], np.linalg.norm(hs[0], axis=-1), rtol=1e-5)
    # the largest entries, brute force
    flat = np.abs(np.stack(streams[1:]))
    order = np.argsort(-flat.reshape(-1), kind="stable")[:7]
    got = [(m["layer"], m["position"], m["dim"]) for m in geo.massive]
    assert got == [tuple(int(x) for x in np.unravel_index(i, flat.shape)) for i in order]
    for m in geo.massive:
        assert m["ratio"] == pytest.approx(abs(m["value"]) / np.median(flat[m["layer"]]), rel=1e-6)


def test_quiet_blocks_and_massive_flag():
    T, d = 6, 32
    g = torch.Generator().manual_seed(0)
    embed = torch.randn(T, d, generator=g)
    h1 = embed + torch.randn(T, d, generator=g)  # a big update
    h2 = h1 + 0.01 * torch.randn(T, d, generator=g)  # barely moves: quiet
    h3 = h2 + torch.randn(T, d, generator=g)  # moves again
    h3[0, 5] = 5_000.0  # massive: > 100 and > 1000x the block's median |h|
    h3[2, 7] = 60.0  # large but under 100
    s = Stream(ids=list(range(T)), embed=embed, h=torch.stack([h1, h2, h3]), logits=torch.zeros(T, 10))
    geo = residual_geometry(s, top_n=3)
    assert geo.quiet == [1]
    assert (geo.massive[0]["layer"], geo.massive[0]["position"], geo.massive[0]["dim"]) == (2, 0, 5)
    assert geo.massive[0]["massive"] and not geo.massive[1]["massive"] and geo.massive[1]["value"] == 60.0
    assert massive_activations(s.h, 1)[0]["value"] == 5_000.0
