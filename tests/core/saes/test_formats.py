"""Each SAE format from files written by hand in the test, following the format's documentation, with non-trivial
biases, thresholds and normalisation; encode/decode equal NumPy formulas written here; save -> load -> identical."""

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from core.saes.formats import load_sae, load_saes, save_saelens, save_sparsify
from core.saes.sae import SAE, SAEError

D_IN, D_SAE = 12, 40
rng = np.random.default_rng(0)


def weights(d_in=D_IN, d_sae=D_SAE):
    return {"W_enc": rng.normal(size=(d_in, d_sae)).astype(np.float32),
            "W_dec": rng.normal(size=(d_sae, d_in)).astype(np.float32),
            "b_enc": rng.normal(size=d_sae).astype(np.float32) * 0.5,
            "b_dec": rng.normal(size=d_in).astype(np.float32),
            "threshold": rng.uniform(0.2, 1.0, size=d_sae).astype(np.float32)}


X = rng.normal(size=(7, D_IN)).astype(np.float32) * 3


def relu(a):
    return np.maximum(a, 0)


def np_topk(pre, k):
    out = np.zeros_like(pre)
    idx = np.argsort(-pre, axis=-1)[:, :k]
    rows = np.arange(len(pre))[:, None]
    out[rows, idx] = relu(pre[rows, idx])
    return out


def write_saelens(folder, w, cfg, names=("W_enc", "W_dec", "b_enc", "b_dec")):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file({n: w[n] for n in names}, str(folder / "sae_weights.safetensors"))
    return folder


def close(a, b):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=2e-5, atol=2e-5)


def test_saelens_v6_standard_with_b_dec_and_sparsity(tmp_path):
    w = weights()
    cfg = {"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
           "metadata": {"sae_lens_version": "6.5.0", "hook_name": "blocks.3.hook_resid_post", "model_name": "m"}}
    f = write_saelens(tmp_path / "s", w, cfg)
    dens = rng.uniform(0, 0.2, D_SAE)
    save_file({"sparsity": np.log10(dens + 1e-10).astype(np.float32)}, str(f / "sparsity.safetensors"))
    sae = load_sae(f)
    assert sae.site == "resid_post.3" and sae.activation == "relu" and sae.model == "m"
    want_f = relu((X - w["b_dec"]) @ w["W_enc"] + w["b_enc"])
    f_t = sae.encode(torch.from_numpy(X))
    close(f_t, want_f)
    close(sae.decode(f_t), want_f @ w["W_dec"] + w["b_dec"])
    close(sae.density, dens)


def test_saelens_pre6_topk_no_b_dec(tmp_path):
    w = weights()
    cfg = {"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE, "hook_name": "blocks.2.hook_mlp_out",
           "hook_layer": 2, "hook_head_index": None, "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 5},
           "apply_b_dec_to_input": False, "normalize_activations": "none", "sae_lens_training_version": "3.1.0"}
    sae = load_sae(write_saelens(tmp_path / "s", w, cfg))
    assert sae.activation == "topk" and sae.k == 5 and sae.site == "mlp_out.2" and not sae.b_dec_in
    f = sae.encode(torch.from_numpy(X))
    close(f, np_topk(X @ w["W_enc"] + w["b_enc"], 5))
    assert int((f != 0).sum(-1).max()) <= 5


def test_saelens_jumprelu_strict_threshold_and_constant_norm_rescale(tmp_path):
    w = weights()
    cfg = {"architecture": "jumprelu", "d_in": D_IN, "d_sae": D_SAE, "apply_b_dec_to_input": True,
           "normalize_activations": "constant_norm_rescale",
           "metadata": {"sae_lens_version": "6.0.0", "hook_name": "blocks.1.attn.hook_z", "hook_head_index": 2}}
    sae = load_sae(write_saelens(tmp_path / "s", w, cfg, names=("W_enc", "W_dec", "b_enc", "b_dec", "threshold")))
    assert sae.site == "z.1.2"
    c = np.sqrt(D_IN) / np.linalg.norm(X, axis=-1, keepdims=True)
    pre = (X * c - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    want = relu(pre) * (pre > w["threshold"])
    f, y = sae.forward(torch.from_numpy(X))
    close(f, want)
    close(y, (want @ w["W_dec"] + w["b_dec"]) / c)  # the output in the input's own units
    # strict >: a pre-activation exactly at the threshold stays off
    pre_t = torch.tensor(w["threshold"])[None].clone()
    assert sae.activate(pre_t).abs().sum() == 0


def test_saelens_topk_rescale_by_decoder_norm_folded(tmp_path):
    w = weights()
    cfg = {"architecture": "topk", "d_in": D_IN, "d_sae": D_SAE, "k": 4, "rescale_acts_by_decoder_norm": True,
           "apply_b_dec_to_input": True, "normalize_activations": "none",
           "metadata": {"sae_lens_version": "6.18.0", "hook_name": "blocks.0.hook_resid_pre"}}
    sae = load_sae(write_saelens(tmp_path / "s", w, cfg))
    n = np.linalg.norm(w["W_dec"], axis=-1)
    pre = ((X - w["b_dec"]) @ w["W_enc"] + w["b_enc"]) * n
    f = np_topk(pre, 4) / n
    close(sae(torch.from_numpy(X)), f @ w["W_dec"] + w["b_dec"])


def test_sparsify_folder_and_run_folder(tmp_path):
    w = weights()
    run = tmp_path / "run"
    for hook, transcode in (("layers.4", False), ("layers.5.mlp", True)):
        d = run / hook
        d.mkdir(parents=True)
        (d / "cfg.json").write_text(json.dumps({"activation": "topk", "expansion_factor": 3, "normalize_decoder": True,
                                                 "num_latents": D_SAE, "k": 6, "multi_topk": False,
                                                 "skip_connection": False, "transcode": transcode, "d_in": D_IN}))
        save_file({"encoder.weight": np.ascontiguousarray(w["W_enc"].T), "encoder.bias": w["b_enc"],
                   "W_dec": w["W_dec"], "b_dec": w["b_dec"]}, str(d / "sae.safetensors"))
    sae = load_sae(run / "layers.4")
    assert sae.site == "resid_post.4" and sae.b_dec_in and not sae.transcoder
    close(sae.encode(torch.from_numpy(X)), np_topk((X - w["b_dec"]) @ w["W_enc"] + w["b_enc"], 6))
    both = load_saes(run)
    tc = both[1]
    assert (tc.site, tc.out_site, tc.b_dec_in) == ("mlp_in.5", "mlp_out.5", False)
    close(tc.encode(torch.from_numpy(X)), np_topk(X @ w["W_enc"] + w["b_enc"], 6))  # never subtracts b_dec
    with pytest.raises(SAEError, match="holds 2 SAEs"):
        load_sae(run)


def test_gemmascope_npz(tmp_path):
    w = weights()
    d = tmp_path / "gemma-scope-2b-pt-res" / "layer_7" / "width_16k" / "average_l0_20"
    d.mkdir(parents=True)
    np.savez(d / "params.npz", **w)
    sae = load_sae(d / "params.npz")
    assert sae.site == "resid_post.7" and sae.activation == "jumprelu" and not sae.b_dec_in
    pre = X @ w["W_enc"] + w["b_enc"]
    want = relu(pre) * (pre > w["threshold"])
    close(sae.encode(torch.from_numpy(X)), want)
    close(sae.decode(sae.encode(torch.from_numpy(X))), want @ w["W_dec"] + w["b_dec"])


@pytest.mark.parametrize("activation", ["relu", "topk", "jumprelu"])
def test_save_saelens_load_identical(tmp_path, activation):
    w = {k: torch.from_numpy(v) for k, v in weights().items()}
    sae = SAE(w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"], activation=activation, k=5 if activation == "topk"
              else None, threshold=w["threshold"] if activation == "jumprelu" else None, b_dec_in=True,
              normalize="layer_norm", scale=1.7, site="resid_mid.2", model="tiny",
              density=torch.rand(D_SAE))
    back = load_sae(save_saelens(sae, tmp_path / "s"))
    x = torch.from_numpy(X)
    close(back(x), sae(x))  # the scale folded into the weights gives the same function
    close(back.density, sae.density)
    assert back.site == "resid_mid.2" and back.activation == activation and back.normalize == "layer_norm"
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == "blocks.2.hook_resid_mid" and cfg["d_sae"] == D_SAE


def test_save_sparsify_load_identical(tmp_path):
    w = {k: torch.from_numpy(v) for k, v in weights().items()}
    sae = SAE(w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"], activation="topk", k=3, site="resid_post.1")
    folder = save_sparsify(sae, tmp_path / "run")
    assert folder.name == "layers.1"
    back = load_sae(folder)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(back, name), getattr(sae, name))
    with pytest.raises(SAEError, match="TopK"):
        save_sparsify(SAE(w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"], site="resid_post.1"), tmp_path / "r2")


def test_bad_files_one_line(tmp_path):
    w = weights()
    (tmp_path / "model.pt").write_bytes(b"\x80\x04not really")
    with pytest.raises(SAEError, match="pickle"):
        load_sae(tmp_path / "model.pt")
    only = tmp_path / "only_pickle"
    only.mkdir()
    (only / "sae.pt").write_bytes(b"x")
    with pytest.raises(SAEError, match="pickle"):
        load_sae(only)
    cfg = {"architecture": "gated", "d_in": D_IN, "d_sae": D_SAE, "metadata": {"sae_lens_version": "6.0.0"}}
    with pytest.raises(SAEError, match="gated"):
        load_sae(write_saelens(tmp_path / "g", w, cfg))
    bad = dict(w)
    bad["W_dec"] = w["W_dec"].copy()
    bad["W_dec"][3, 1] = np.nan
    cfg = {"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE, "metadata": {"sae_lens_version": "6.0.0"}}
    with pytest.raises(SAEError, match="NaN"):
        load_sae(write_saelens(tmp_path / "n", bad, cfg))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "cfg.json").write_text(json.dumps(cfg))
    (tmp_path / "c" / "sae_weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(SAEError, match="safetensors"):
        load_sae(tmp_path / "c")
    short = dict(w)
    short["b_enc"] = w["b_enc"][:-1]
    with pytest.raises(SAEError, match="b_enc has shape"):
        load_sae(write_saelens(tmp_path / "s", short, cfg))
    cfg_hook = dict(cfg, metadata={"sae_lens_version": "6.0.0", "hook_name": "hook_embed"})
    with pytest.raises(SAEError, match="hook_embed"):
        load_sae(write_saelens(tmp_path / "h", w, cfg_hook))
    with pytest.raises(SAEError, match="no SAE"):
        load_sae(tmp_path / "missing")
