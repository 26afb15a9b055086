"""`neuroboard lens`: JSON per block on a tiny model folder, one-line errors; on the real smollm2 the last block of
the lens is the model's own prediction (" Paris")."""

import json

import pytest
import torch

from core.cli import main


def bad(capsys, args):
    rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("neuroboard: error: ") and "\n" not in err, err
    return err


def test_lens_json_on_tiny_model(tiny_lm_dir, capsys):
    assert main(["lens", "--model", str(tiny_lm_dir), "--prompt", "The cat sat on the", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["layer"] for r in out["layers"]] == [0, 1, 2] and out["lens"] == "logit"
    assert {"layer", "top_token", "top_prob", "target_prob", "target_rank"} <= set(out["layers"][0])
    assert out["position"] == len(out["tokens"]) - 1
    last = out["layers"][-1]  # the last block through the final norm is the model itself: its top token is the target
    assert last["target_rank"] == 0 and last["top_token"] == out["target"]
    assert main(["lens", "--model", str(tiny_lm_dir), "--prompt", "The cat sat on the", "--position", "1",
                 "--target", " the"]) == 0
    assert "position 1" in capsys.readouterr().out


@pytest.mark.parametrize("args, needle", [
    (["--prompt", " "], "empty"),
    (["--prompt", "The cat", "--target", " catastrophe of"], "not one token"),
    (["--prompt", "The cat", "--position", "99"], "out of range"),
    (["--prompt", "The cat", "--lens", "tuned"], "no tuned lens"),
])
def test_lens_bad_input(tiny_lm_dir, capsys, tmp_path, monkeypatch, args, needle):
    monkeypatch.setenv("NEUROBOARD_CACHE", str(tmp_path))  # an empty lens store
    assert needle in bad(capsys, ["lens", "--model", str(tiny_lm_dir), *args])


def test_lens_unknown_model(capsys):
    assert "not a built-in name" in bad(capsys, ["lens", "--model", "nope", "--prompt", "x"])


@pytest.mark.slow
def test_smollm2_paris_and_last_block_is_the_model(capsys):
    from core.lens.logit import lens_of, stream
    from core.model.load import load_model
    from core.model.tokens import encode_prompt as encode

    assert main(["lens", "--model", "smollm2-135m", "--prompt", "The capital of France is", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["layers"]) == 30 and out["target"] == " Paris"
    assert out["layers"][-1]["top_token"] == " Paris" and out["layers"][-1]["target_rank"] == 0
    assert out["layers"][0]["target_rank"] > 0  # the answer is not there after the first block
    lm = load_model("smollm2-135m")
    s = stream(lm, encode(lm, "The capital of France is"))
    res = lens_of(lm, s)
    assert torch.allclose(torch.tensor(res.kl_final[-1]), torch.zeros(len(s.ids)), atol=1e-4)
    assert (res.top_ids[-1, :, 0] == s.logits.argmax(-1).numpy()).all()
