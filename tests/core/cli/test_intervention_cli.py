"""steer, patch and backpatch from the command line: --json outputs checked against the model's own logits, and
bad input gives one line (exit 2)."""

import json

import numpy as np
import pytest
import torch

from core.cli import main
from core.model.load import load_model

CLEAN, CORRUPT = "The cat sat on the mat and", "The cat sat in the mat and"


@pytest.fixture(scope="module")
def lm(tiny_lm_dir):
    return load_model(str(tiny_lm_dir))


def _last_logits(lm, text):
    with torch.inference_mode():
        return lm.model(torch.tensor([lm.tokenizer(text)["input_ids"]])).logits[0, -1]


def test_patch_json(tiny_lm_dir, lm, capsys):
    rc = main(["patch", "--model", str(tiny_lm_dir), "--clean", CLEAN, "--corrupted", CORRUPT, "--answer", " the",
               "--foil", " a", "--json", "--no-progress"])
    out = json.loads(capsys.readouterr().out)
    a, f = (lm.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in (" the", " a"))
    c, x = _last_logits(lm, CLEAN), _last_logits(lm, CORRUPT)
    assert rc == 0 and out["clean_diff"] == pytest.approx(float(c[a] - c[f]), abs=1e-4)
    assert out["corrupted_diff"] == pytest.approx(float(x[a] - x[f]), abs=1e-4)
    T = len(lm.tokenizer(CLEAN)["input_ids"])
    assert np.array(out["resid"]).shape == np.array(out["attn"]).shape == np.array(out["mlp"]).shape == (3, T)
    assert np.array(out["heads"]).shape == (3, 4) and len(out["tokens"]) == T


def test_patch_along_a_direction(tiny_lm_dir, lm, capsys):
    """patch --direction: the share of the clean answer restored by moving only block 1's output along neuron 3's
    output weights to the clean run's (every position), against a forward hook written here; and text output."""
    rc = main(["patch", "--model", str(tiny_lm_dir), "--clean", CLEAN, "--corrupted", CORRUPT, "--answer", " the",
               "--foil", " a", "--direction", "neuron:1:3", "--controls", "3", "--json", "--no-progress"])
    r = json.loads(capsys.readouterr().out)["direction_patch"]
    a, f = (lm.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in (" the", " a"))
    ids = {t: torch.tensor([lm.tokenizer(t)["input_ids"]]) for t in (CLEAN, CORRUPT)}
    with torch.inference_mode():
        hs = {t: lm.model(ids[t], output_hidden_states=True).hidden_states[2][0] for t in ids}  # (T, d) block 1 out
        u = lm.model.model.layers[1].mlp.down_proj.weight[:, 3]
        u = u / u.norm()
        value = hs[CORRUPT] + ((hs[CLEAN] - hs[CORRUPT]) @ u)[:, None] * u

        def put(_m, _args, output):
            return (value[None], *output[1:]) if isinstance(output, tuple) else value[None]
        h = lm.model.model.layers[1].register_forward_hook(put)
        try:
            patched = lm.model(ids[CORRUPT]).logits[0, -1]
        finally:
            h.remove()
    c, x = _last_logits(lm, CLEAN), _last_logits(lm, CORRUPT)
    m_c, m_x = float(c[a] - c[f]), float(x[a] - x[f])
    assert rc == 0 and r["site"] == "resid_post.1" and len(r["controls"]) == 3
    assert r["effect"] == pytest.approx((float(patched[a] - patched[f]) - m_x) / (m_c - m_x), abs=1e-4)
    assert r["direction"]["made"] == {"method": "neuron", "layer": 1, "unit": 3}
    assert main(["patch", "--model", str(tiny_lm_dir), "--clean", CLEAN, "--corrupted", CORRUPT, "--answer", " the",
                 "--foil", " a", "--direction", "neuron:1:3", "--controls", "3", "--no-progress"]) == 0
    assert f"along the direction at resid_post.1: {r['effect']:.3f}" in capsys.readouterr().out


def test_backpatch_json(tiny_lm_dir, lm, capsys):
    rc = main(["backpatch", "--model", str(tiny_lm_dir), "--prompt", CLEAN, "--answer", " the", "--json",
               "--no-progress"])
    out = json.loads(capsys.readouterr().out)
    p = _last_logits(lm, CLEAN).softmax(-1)[lm.tokenizer(" the", add_special_tokens=False)["input_ids"][0]]
    assert rc == 0 and out["base_prob"] == pytest.approx(float(p), rel=1e-4)
    np.testing.assert_allclose(np.diag(out["prob"]), out["base_prob"], rtol=1e-4)


def test_steer_json(tiny_lm_dir, tmp_path, capsys):
    csv = tmp_path / "s.csv"
    csv.write_text("text,label\nThe cat sat.,a\nThe cat ran.,a\nThe dog sat.,b\nThe dog ran.,b\n", encoding="utf-8")
    base = ["steer", "--model", str(tiny_lm_dir), "--layer", "1", "--direction", f"diffmeans:{csv}", "--prompt",
            "The cat", "--tokens", "4", "--json"]
    assert main(base + ["--alpha", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["default"] == out["steered"] and out["diverge"] == -1 and out["next_token_kl"] == pytest.approx(0)
    assert out["direction"]["made"] == {"method": "diffmeans", "set": str(csv), "position": "last", "positive": "a"}
    assert main(base + ["--alpha", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["next_token_kl"] > 0
    assert main(base + ["--alpha", "0", "--ablate"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "ablate" and out["next_token_kl"] > 0


@pytest.mark.parametrize("args, needle", [
    (["patch", "--clean", CLEAN, "--corrupted", "The cat", "--answer", " the", "--foil", " a"], "is 14 tokens"),
    (["patch", "--clean", CLEAN, "--corrupted", CORRUPT, "--answer", " Paris", "--foil", " a"], "exactly one"),
    (["backpatch", "--prompt", "   ", "--answer", " the"], "must not be empty"),
    (["patch", "--clean", CLEAN, "--corrupted", CORRUPT, "--answer", " the", "--foil", " a", "--direction",
      "neuron:1:3", "--controls", "0"], "--controls must be >= 1"),
    (["patch", "--clean", CLEAN, "--corrupted", CORRUPT, "--answer", " the", "--foil", " a", "--direction",
      "neuron:1:3", "--layer", "9"], "layer 9 is out of range"),
    (["steer", "--layer", "1", "--direction", "neuron:1:2", "--alpha", "abc", "--prompt", "x"], "invalid float"),
    (["steer", "--layer", "7", "--direction", "neuron:1:2", "--alpha", "1", "--prompt", "x"], "out of range"),
    (["steer", "--layer", "1", "--direction", "pca:truth", "--alpha", "1", "--prompt", "x", "--positive", "maybe"],
     "not in prompt set"),
])
def test_bad_input_one_line(tiny_lm_dir, capsys, args, needle):
    rc = main([args[0], "--model", str(tiny_lm_dir)] + args[1:])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err
