"""The steering sweep against a hand route: greedy continuations generated one prompt at a time with a plain torch
hook (no cache, no padding), scored with the model's own hidden states and logits; the slope against NumPy's
polyfit; the result stored in and read back from the index."""

import json

import numpy as np
import pytest
import torch
from helpers.tiny import tiny_model, tiny_tokenizer

from core.cli import main
from core.interventions.directions import Direction
from core.interventions.steer import stream_norm
from core.interventions.sweep import SweepError, parse_alphas, sweep
from core.model.load import LoadedModel
from core.model.parts import find_parts
from core.model.tokens import tokenize

PROMPTS = ["The cat sat on the", "Paris is the capital of", "In 1905 the physicist"]


def _lm():
    model = tiny_model("llama")
    return LoadedModel(name="llama", source="config", model=model, tokenizer=tiny_tokenizer(), parts=find_parts(model))


def _by_hand(lm, prompt, L, vec, L_d, u, nu_d, n):
    ids = tokenize(lm.tokenizer, prompt)

    def fn(_m, _i, out):
        return (out[0] + vec, *out[1:]) if isinstance(out, tuple) else out + vec
    h = lm.parts.layers[L].register_forward_hook(fn)
    seq = list(ids)
    try:
        with torch.inference_mode():
            for _ in range(n):
                seq.append(int(lm.model(torch.tensor([seq])).logits[0, -1].argmax()))
    finally:
        h.remove()
    with torch.inference_mode():
        out = lm.model(torch.tensor([seq]), output_hidden_states=True)
    T = len(ids)
    score = float((out.hidden_states[L_d + 1][0, T:] @ u).mean()) / nu_d
    lp = out.logits[0, T - 1:-1].log_softmax(-1)[torch.arange(n), torch.tensor(seq[T:])]
    return score, float(torch.exp(-lp.mean()))


def test_sweep_cells_equal_the_hand_route():
    lm = _lm()
    g = torch.Generator().manual_seed(3)
    d = Direction(torch.randn(64, generator=g), 1, {"method": "file"})
    res = sweep(lm, d, PROMPTS, [0, 2], [-4.0, 0.0, 4.0], tokens=5, neutral_tokens=128)
    u, nu_d = d.unit, stream_norm(lm, 1)
    for i, L in enumerate([0, 2]):
        for j, a in enumerate([-4.0, 0.0, 4.0]):
            vec = a * stream_norm(lm, L) * u
            got = [_by_hand(lm, p, L, vec, 1, u, nu_d, 5) for p in PROMPTS]
            np.testing.assert_allclose(res["per_prompt"][i][j], [s for s, _ in got], atol=1e-4)
            assert res["ppl"][i][j] == pytest.approx(np.exp(np.mean(np.log([p for _, p in got]))), rel=1e-4)
    assert np.allclose(np.array(res["kl"])[:, 1], 0, atol=1e-6) and min(np.array(res["kl"])[:, 0]) > 0
    for i in range(2):
        for k in range(3):
            want = np.polyfit([-4.0, 0.0, 4.0], np.array(res["per_prompt"])[i, :, k], 1)[0]
            assert res["slopes"][i][k] == pytest.approx(want, abs=1e-6)
        assert res["anti_steerable"][i] == pytest.approx(np.mean(np.array(res["slopes"][i]) < 0))


def test_sweep_cli_stores_in_the_index(tiny_lm_dir, tmp_path, capsys):
    import duckdb

    from core.index.sweeps import list_sweeps, sweep_result

    csv = tmp_path / "s.csv"
    csv.write_text("text,label\nThe cat sat.,a\nThe cat ran.,a\nThe dog sat.,b\nThe dog ran.,b\n", encoding="utf-8")
    db = tmp_path / "i.duckdb"
    rc = main(["sweep", "--model", str(tiny_lm_dir), "--direction", f"diffmeans:{csv}", "--layer", "1", "--layers",
               "0,2", "--alphas=-2,0,2", "--tokens", "3", "--neutral-tokens", "64", "--db", str(db), "--json",
               "--no-progress"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["sweep_id"] == 1 and np.array(out["score"]).shape == (2, 3)
    con = duckdb.connect(str(db), read_only=True)
    try:
        (s,) = list_sweeps(con)
        assert s.name == f"diffmeans:{csv}" and s.config["alphas"] == "-2,0,2"
        assert sweep_result(con, 1)["score"] == out["score"]
    finally:
        con.close()
    rc = main(["sweep", "--model", str(tiny_lm_dir), "--direction", "neuron:1:3", "--layer", "1", "--alphas",
               "1,x", "--db", str(db)])
    err = capsys.readouterr().err
    assert rc == 2 and "--alphas" in err and len(err.strip().splitlines()) == 1


def test_bad_sweep_input():
    with pytest.raises(SweepError, match="finite"):
        parse_alphas("1,inf")
    with pytest.raises(SweepError, match="non-empty"):
        sweep(_lm(), Direction(torch.ones(64), 1), ["  "], [0], [1.0])
