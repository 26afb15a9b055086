"""--device and --dtype (core.model.device): checked before anything loads or is written; a model loaded in bfloat16
gives the logits of transformers' own bfloat16 load; an extraction in bfloat16 stores the bfloat16 model's own
activations (each a bfloat16 value, maxima equal to plain hooks on that model). CUDA itself is not on this machine:
the tests that need it skip where it is absent, and the absence is one line."""

import subprocess
import sys

import duckdb
import numpy as np
import pytest
import torch
from helpers.raw import neurons
from helpers.tiny import write_corpus

from core.data.corpus import Corpus, tokenize
from core.model.device import DeviceError, resolve_device, resolve_dtype
from core.model.load import load_model
from core.units.config import ExtractConfig
from core.units.extract import extract

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")


def test_dtype_names_and_bad_ones():
    assert resolve_dtype("bfloat16") is torch.bfloat16 and resolve_dtype(torch.float32) is torch.float32
    for bad in ("float64", "bf16", torch.int8):
        with pytest.raises(DeviceError, match="--dtype"):
            resolve_dtype(bad)


@no_cuda
def test_absent_or_malformed_device_is_one_line():
    assert resolve_device("cpu") == torch.device("cpu")
    for bad, msg in (("cuda", "no CUDA GPU here"), ("cuda:3", "no CUDA GPU here"), ("gpu", "expected cpu, cuda"),
                     ("tpu", "expected cpu, cuda")):
        with pytest.raises(DeviceError, match=msg) as e:
            resolve_device(bad)
        assert "\n" not in str(e.value)


def test_bfloat16_model_equals_transformers_own_bfloat16_load(tiny_lm_dir):
    from transformers import AutoModelForCausalLM

    lm = load_model(str(tiny_lm_dir), dtype="bfloat16")
    assert {p.dtype for p in lm.model.parameters()} == {torch.bfloat16} and lm.device == torch.device("cpu")
    ref = AutoModelForCausalLM.from_pretrained(str(tiny_lm_dir), attn_implementation="sdpa",
                                               dtype=torch.bfloat16).eval()
    ids = torch.tensor([[0, 5, 17, 42, 99, 7, 3]])
    with torch.inference_mode():
        assert torch.equal(lm.model(ids).logits, ref(ids).logits)
        assert not torch.equal(lm.model(ids).logits.float(),
                               load_model(str(tiny_lm_dir)).model(ids).logits), "bfloat16 changes the numbers"


def test_bfloat16_extraction_stores_the_bfloat16_models_activations(tiny_lm_dir, tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", n_docs=8)
    got = {}
    for dtype in ("float32", "bfloat16"):
        cfg = ExtractConfig(model=str(tiny_lm_dir), db=str(tmp_path / f"{dtype}.duckdb"), corpus=corpus,
                            max_tokens=10**9, context_len=32, top_k=4, samples=2, batch_tokens=96, layers="1",
                            dtype=dtype)
        run = extract(cfg)
        con = duckdb.connect(cfg.db, read_only=True)
        got[dtype] = (np.array(con.execute("SELECT max FROM unit_stats WHERE run_id = ? ORDER BY unit",
                                           [run]).fetchall(), np.float32)[:, 0],
                      np.array(con.execute("SELECT activation FROM top_examples WHERE run_id = ?",
                                           [run]).fetchall(), np.float32)[:, 0],
                      con.execute("SELECT config FROM runs").fetchall()[0][0])
        con.close()
    lm = load_model(str(tiny_lm_dir), dtype="bfloat16")
    A = np.concatenate([neurons(lm, ids[s: s + 32], 1).float().numpy()
                        for ids in (tokenize(lm.tokenizer, t) for t in Corpus(corpus).documents())
                        for s in range(0, len(ids), 32)])
    mx, top, config = got["bfloat16"]
    as_bf16 = torch.from_numpy(top).to(torch.bfloat16).float().numpy()
    assert np.array_equal(as_bf16, top), "every stored activation is a bfloat16 value"
    np.testing.assert_allclose(mx, A.max(0), rtol=2e-2, atol=1e-2)  # batched vs one window at a time, in bf16
    mx32, top32, config32 = got["float32"]
    assert not np.array_equal(torch.from_numpy(top32).to(torch.bfloat16).float().numpy(), top32)
    assert '"dtype": "bfloat16"' in config and '"dtype"' not in config32  # a run's identity, when not the default


@pytest.mark.slow  # a subprocess or a lock wait of ~10 s
@no_cuda
def test_cli_device_absent_one_line_nothing_written(tiny_lm_dir, tmp_path):
    db = tmp_path / "i.duckdb"
    corpus = write_corpus(tmp_path / "c.txt", n_docs=3)
    for extra, msg in ((("--device", "cuda"), "no CUDA GPU here"), (("--dtype", "float64"), "invalid choice")):
        r = subprocess.run([sys.executable, "-m", "core.cli", "extract", "--model", str(tiny_lm_dir), "--corpus",
                            corpus, "--db", str(db), "--no-progress", *extra], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not db.exists()
    m = str(tiny_lm_dir)
    for args in (["train-sae", "--model", m, "--site", "resid_post.1", "--out", str(tmp_path / "s")],
                 ["train-lens", "--model", m, "--out", str(tmp_path / "l")],
                 ["steer", "--model", m, "--layer", "1", "--direction", "neuron:1:0", "--alpha", "1", "--prompt", "a"],
                 ["patch", "--model", m, "--clean", "a b", "--corrupted", "a c", "--answer", "b", "--foil", "c"]):
        r = subprocess.run([sys.executable, "-m", "core.cli", *args, "--device", "cuda"], capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 2 and "no CUDA GPU here" in r.stderr and len(r.stderr.strip().splitlines()) == 1, (
            args[0], r.stderr)
    assert not (tmp_path / "s").exists() and not (tmp_path / "l").exists()


def test_train_sae_in_bfloat16_measures_the_bfloat16_model(tiny_lm_dir, tmp_path):
    """train-sae --dtype bfloat16: the model runs in bfloat16, the SAE trains in float32 and is saved so; the held-out
    clean loss it reports is the next-token loss of transformers' own bfloat16 load on those windows, by hand."""
    from transformers import AutoModelForCausalLM

    from core.saes import acts
    from core.saes.acts import take_windows
    from core.saes.formats import load_sae
    from core.saes.train import TrainSAEConfig, train_sae

    corpus = write_corpus(tmp_path / "c.txt", n_docs=40)
    cfg = TrainSAEConfig(model=str(tiny_lm_dir), site="resid_post.1", out=str(tmp_path / "sae"), corpus=corpus,
                         tokens=2048, latents=64, k=4, batch=256, buffer_tokens=1024, context_len=32, eval_tokens=1000,
                         dtype="bfloat16")
    report = train_sae(cfg)
    sae = load_sae(tmp_path / "sae")
    assert sae.W_enc.dtype == torch.float32 and np.isfinite(report["quality"]["fvu"])
    ref = AutoModelForCausalLM.from_pretrained(str(tiny_lm_dir), dtype=torch.bfloat16).eval()
    lm = load_model(str(tiny_lm_dir))
    special = set(lm.tokenizer.all_special_ids)
    split = acts.split_corpus(corpus, lm.tokenizer, context_len=32,
                              max_tokens=cfg.tokens + cfg.tokens // (acts.HOLDOUT_EVERY - 1) + cfg.eval_tokens * 2)
    losses = []
    with torch.inference_mode():
        for w in take_windows(split.held_out, cfg.eval_tokens):
            logp = ref(torch.tensor([w.ids])).logits[0].float().log_softmax(-1)
            losses += [-float(logp[t, w.ids[t + 1]]) for t in range(len(w.ids) - 1)
                       if w.ids[t] not in special and w.ids[t + 1] not in special]
    # equal up to summation order; the float32 model's differs here by 1.6e-5 (relative)
    assert report["quality"]["ce_clean"] == pytest.approx(np.mean(losses), rel=2e-6)


def test_train_lens_in_bfloat16_measures_the_bfloat16_model(tiny_lm_dir):
    """train-lens on a bfloat16 model: the held-out logit-lens KL it reports is the one of transformers' own bfloat16
    load, by hand (its hidden states, final norm and output embedding); the lens's maps stay float32."""
    from transformers import AutoModelForCausalLM

    from core.lens.tuned import TunedLensConfig, split_windows, train_tuned_lens

    lm = load_model(str(tiny_lm_dir), dtype="bfloat16")
    cfg = TunedLensConfig(model=str(tiny_lm_dir), corpus="demo", max_tokens=256, heldout_tokens=128,
                          context_len=32, batch_tokens=128, dtype="bfloat16")
    lens, report = train_tuned_lens(lm, cfg)
    assert {p.dtype for p in lens.parameters()} == {torch.float32}
    ref = AutoModelForCausalLM.from_pretrained(str(tiny_lm_dir), dtype=torch.bfloat16).eval()
    L = lm.n_layers
    kl, n = np.zeros(L - 1), 0
    with torch.inference_mode():
        for w in split_windows(lm, cfg)[0]:
            out = ref(torch.tensor([w.ids]), output_hidden_states=True)
            logp = out.logits[0].float().log_softmax(-1)
            for layer in range(L - 1):
                z = ref.lm_head(ref.model.norm(out.hidden_states[layer + 1][0])).float().log_softmax(-1)
                kl[layer] += float((logp.exp() * (logp - z)).sum())
            n += len(w.ids)
    # equal to 1e-5 here; the float32 model's differs by 6e-4 and 1.5e-3 (relative)
    np.testing.assert_allclose(report.logit_kl[: L - 1], kl / n, rtol=1e-4)


def test_steer_in_bfloat16_equals_a_hand_hook_on_the_bfloat16_model(tiny_lm_dir, tmp_path):
    """steer --dtype bfloat16: the next-token KL between default and steered equals the one from transformers' own
    bfloat16 load with a plain forward hook adding alpha·ν·d̂ to block 1's output (float32 vector cast to bf16)."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    from core.interventions.query import SteerQuery, steer_json
    from core.model.tokens import tokenize as tok

    v = torch.randn(64, generator=torch.Generator().manual_seed(3))
    save_file({"direction": v}, str(tmp_path / "d.safetensors"))
    out = steer_json(SteerQuery(model=str(tiny_lm_dir), layer=1, direction=f"file:{tmp_path / 'd.safetensors'}",
                                alpha=4.0, prompt="The cat sat on the", tokens=3, dtype="bfloat16"))
    vec = (4.0 * out["stream_norm"] * v / v.norm()).to(torch.bfloat16)
    ref = AutoModelForCausalLM.from_pretrained(str(tiny_lm_dir), dtype=torch.bfloat16).eval()
    ids = torch.tensor([tok(load_model(str(tiny_lm_dir)).tokenizer, "The cat sat on the")])

    def add(_m, _i, o):
        return (o[0] + vec, *o[1:]) if isinstance(o, tuple) else o + vec

    with torch.inference_mode():
        lp0 = ref(ids).logits[0, -1].float().log_softmax(-1)
        h = ref.model.layers[1].register_forward_hook(add)
        try:
            lp1 = ref(ids).logits[0, -1].float().log_softmax(-1)
        finally:
            h.remove()
    kl = float((lp0.exp() * (lp0 - lp1)).sum())
    assert kl > 1e-3 and out["next_token_kl"] == pytest.approx(kl, rel=1e-3)
