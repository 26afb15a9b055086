"""train-sae, features and sae-eval from the command line: --json outputs checked against the model's own hidden
states, and bad input gives one line (exit 2) and writes nothing."""

import json

import numpy as np
import pytest
import torch
from helpers.tiny import write_corpus

from core.cli import main
from core.model.load import load_model
from core.saes.formats import load_sae


@pytest.fixture(scope="module")
def trained(tiny_lm_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sae-cli")
    corpus = write_corpus(tmp / "c.txt", n_docs=40)
    out = tmp / "sae"
    rc = main(["train-sae", "--model", str(tiny_lm_dir), "--site", "blocks.1.hook_resid_post", "--out", str(out),
               "--corpus", corpus, "--tokens", "4096", "--latents", "96", "--k", "6", "--batch", "256",
               "--buffer-tokens", "1024", "--context-len", "32", "--eval-tokens", "1500", "--json", "--no-progress"])
    assert rc == 0
    return out, corpus


def test_train_sae_json(trained, capsys):
    out, _ = trained
    sae = load_sae(out)
    assert (sae.site, sae.d_sae, sae.k) == ("resid_post.1", 96, 6)
    report = json.loads((out / "quality.json").read_text())
    assert {"fvu", "l0", "dead_frac", "ce_recovered", "kl"} <= set(report["quality"])


def test_features_json_equals_the_sae_on_hidden_states(trained, tiny_lm_dir, capsys):
    out, _ = trained
    text = "The cat sat on the mat. Paris is the capital of France."
    assert main(["features", "--model", str(tiny_lm_dir), "--sae", str(out), "--text", text, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    lm, sae = load_model(str(tiny_lm_dir)), load_sae(out)
    ids = lm.tokenizer(text)["input_ids"]
    with torch.inference_mode():
        h = lm.model(torch.tensor([ids]), output_hidden_states=True).hidden_states[2][0]  # (T, d) block 1's output
    x = h.numpy().astype(np.float64)
    pre = (x - sae.b_dec.numpy()) @ sae.W_enc.numpy() + sae.b_enc.numpy()
    assert [r["position"] for r in rows] == list(range(len(ids)))
    for t, r in enumerate(rows):
        top = np.argsort(-pre[t])[:6]
        want = {int(i): pre[t, i] for i in top if pre[t, i] > 0}
        got = {f["feature"]: f["activation"] for f in r["features"]}
        assert set(got) == set(want)
        assert all(abs(got[i] - want[i]) < 1e-3 for i in got)
        acts = [f["activation"] for f in r["features"]]
        assert acts == sorted(acts, reverse=True)
    assert rows[0]["token"] == "<bos>"


def test_sae_eval_json(trained, tiny_lm_dir, capsys):
    out, corpus = trained
    assert main(["sae-eval", "--model", str(tiny_lm_dir), "--sae", str(out), "--corpus", corpus, "--tokens", "800",
                 "--context-len", "32", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert {"fvu", "l0", "dead_frac", "ce_recovered", "kl"} <= set(got)
    assert 0 < got["l0"] <= 6 and got["tokens"] > 0


def test_train_snmf_json_then_features(trained, tiny_lm_dir, tmp_path, capsys):
    """train-sae --method snmf prints its report; `features` on its factors equals SciPy's NNLS of the model's MLP
    activations (plain hooks)."""
    from helpers.raw import neurons
    from scipy.optimize import nnls

    from core.data.corpus import tokenize

    _, corpus = trained
    out = tmp_path / "snmf"
    rc = main(["train-sae", "--model", str(tiny_lm_dir), "--site", "blocks.1.mlp.hook_post", "--out", str(out),
               "--corpus", corpus, "--tokens", "2000", "--latents", "16", "--method", "snmf", "--snmf-iters", "15",
               "--context-len", "32", "--eval-tokens", "500", "--json", "--no-progress"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["method"] == "snmf" and report["site"] == "neurons.1" and report["latents"] == 16
    text = "the quick brown fox"
    rc = main(["features", "--model", str(tiny_lm_dir), "--sae", str(out), "--text", text, "--json"])
    rows = json.loads(capsys.readouterr().out)
    lm = load_model(str(tiny_lm_dir))
    ids = tokenize(lm.tokenizer, text)
    A = neurons(lm, ids, 1).double().numpy()
    F = load_sae(out).W_dec.double().numpy()
    assert rc == 0 and len(rows) == len(ids)
    for r in rows:
        want, _ = nnls(F.T, A[r["position"]])
        got = np.zeros(16)
        for f in r["features"]:
            got[f["feature"]] = f["activation"]
        np.testing.assert_allclose(got, want, atol=2e-3 * max(want.max(), 1e-6))


@pytest.mark.parametrize("args, needle", [
    (["--site", "resid_post.1", "--k", "500", "--latents", "64"], "--k 500"),
    (["--site", "resid_post.1", "--tokens", "0"], "--tokens"),
    (["--site", "resid_post.7"], "layers 0-2"),
    (["--site", "blocks.1.hook_nothing"], "unknown site"),
    (["--site", "neurons.1", "--method", "snmf", "--transcode"], "cannot --transcode"),
    (["--site", "neurons.1", "--method", "snmf", "--snmf-sparsity", "2"], "--snmf-sparsity"),
])
def test_train_sae_bad_input(tiny_lm_dir, tmp_path, capsys, args, needle):
    out = tmp_path / "o"
    rc = main(["train-sae", "--model", str(tiny_lm_dir), "--out", str(out), "--no-progress"] + args)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("neuroboard: error:") and needle in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_features_bad_sae(trained, tiny_lm_dir, tmp_path, capsys):
    (tmp_path / "w.pt").write_bytes(b"\x80\x04")
    for sae, needle in ((tmp_path / "w.pt", "pickle"), (tmp_path / "nothing", "no SAE")):
        rc = main(["features", "--model", str(tiny_lm_dir), "--sae", str(sae), "--text", "hi"])
        err = capsys.readouterr().err
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1
    out, _ = trained
    rc = main(["features", "--model", str(tiny_lm_dir), "--sae", str(out), "--site", "neurons.1", "--text", "hi"])
    err = capsys.readouterr().err
    assert rc == 2 and "d_in is 64 but neurons.1" in err
