"""Transcoder sets in circuit-tracer's format, written by hand in the test (safetensors.torch.save_file and a YAML
string): ReLU, TopK and JumpReLU, each with and without a skip connection, encode and decode as NumPy formulas written
here; save -> load is bit-identical; every bad input is one line and writes nothing."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from core.saes.sae import SAE, SAEError
from core.saes.transcoders import TranscoderSet, check_set_for_model, load_transcoder_set, save_transcoder_set

D, M = 10, 24  # d_model, d_transcoder
LAYERS = (0, 1, 2)


def layer_tensors(seed: int, act: str, skip: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = {"W_enc": torch.randn(M, D, generator=g), "W_dec": torch.randn(M, D, generator=g),
         "b_enc": torch.randn(M, generator=g) * 0.5, "b_dec": torch.randn(D, generator=g)}
    if act == "jumprelu":
        t["activation_function.threshold"] = torch.rand(M, generator=g) + 0.1
    if skip:
        t["W_skip"] = torch.randn(D, D, generator=g) * 0.3  # [d_out, d_in]
    return t


def config_yaml(act: str, layers=LAYERS, listed: bool = True, in_hook="mlp.hook_in", out_hook="mlp.hook_out") -> str:
    text = (f"model_kind: transcoder_set\nfeature_input_hook: {in_hook}\nfeature_output_hook: {out_hook}\n"
            f"scan: hand-made\nmodel_name: tiny-llama\n")
    if listed:
        text += "transcoders:\n" + "".join(f"  - layer_{L}.safetensors\n" for L in layers)
    if act == "topk":
        text += "activation: topk\nk: 5\n"
    return text


def write_set(folder, act: str, skip: bool, layers=LAYERS, listed: bool = True, **kw) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    ts = {L: layer_tensors(10 * L + 1, act, skip) for L in layers}
    for L, t in ts.items():
        save_file(t, str(folder / f"layer_{L}.safetensors"))
    (folder / "config.yaml").write_text(config_yaml(act, layers, listed, **kw))
    return ts


def np_forward(t: dict, x: np.ndarray, act: str) -> tuple[np.ndarray, np.ndarray]:
    """circuit-tracer's documented formulas: pre = x W_encᵀ + b_enc; f = act(pre); ŷ = f W_dec + b_dec + x W_skipᵀ."""
    n = {k: v.numpy().astype(np.float64) for k, v in t.items()}
    pre = x @ n["W_enc"].T + n["b_enc"]
    if act == "relu":
        f = np.maximum(pre, 0)
    elif act == "jumprelu":
        f = pre * (pre > n["activation_function.threshold"])
    else:
        f = np.zeros_like(pre)
        idx = np.argsort(-pre, axis=-1)[:, :5]
        rows = np.arange(len(pre))[:, None]
        f[rows, idx] = np.maximum(pre[rows, idx], 0)
    y = f @ n["W_dec"] + n["b_dec"]
    if "W_skip" in n:
        y = y + x @ n["W_skip"].T
    return f, y


X = np.random.default_rng(0).normal(size=(9, D)).astype(np.float32) * 2


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("act", ["relu", "topk", "jumprelu"])
def test_hand_written_set_loads_and_computes_the_formulas(tmp_path, act, skip):
    tensors = write_set(tmp_path / "set", act, skip)
    ts = load_transcoder_set(tmp_path / "set")
    assert ts.layers == list(LAYERS) and ts.scan == "hand-made" and ts.model == "tiny-llama"
    assert ts.skip == skip and ts.d_transcoder == M
    for L, tc in zip(ts.layers, ts.transcoders, strict=True):
        assert (tc.site, tc.out_site, tc.activation, tc.b_dec_in) == (f"mlp_in.{L}", f"mlp_out.{L}", act, False)
        f, y = tc.forward(torch.from_numpy(X))
        f_np, y_np = np_forward(tensors[L], X.astype(np.float64), act)
        np.testing.assert_allclose(f.numpy(), f_np, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(y.numpy(), y_np, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(tc.decode(tc.encode(torch.from_numpy(X)), torch.from_numpy(X)).numpy(), y_np,
                                   rtol=1e-5, atol=1e-4)
        assert (f.numpy() != 0).sum(-1).max() <= (5 if act == "topk" else M)


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("act", ["relu", "topk", "jumprelu"])
def test_save_load_round_trip_is_bit_identical(tmp_path, act, skip):
    write_set(tmp_path / "a", act, skip)
    a = load_transcoder_set(tmp_path / "a")
    save_transcoder_set(a, tmp_path / "b")
    b = load_transcoder_set(tmp_path / "b")
    assert (b.layers, b.scan, b.model, b.input_hook, b.output_hook) == (a.layers, a.scan, a.model, a.input_hook,
                                                                        a.output_hook)
    for ta, tb in zip(a.transcoders, b.transcoders, strict=True):
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "W_skip"):
            va, vb = getattr(ta, name), getattr(tb, name)
            assert (va is None) == (vb is None)
            if va is not None:
                assert torch.equal(va, vb), name
        assert (ta.activation, ta.k) == (tb.activation, tb.k)
    # the files hold exactly circuit-tracer's keys, un-transposed, with no k tensor (0.5.0's strict load)
    from safetensors.torch import load_file

    t = load_file(str(tmp_path / "b" / "layer_1.safetensors"))
    want = {"W_enc", "W_dec", "b_enc", "b_dec"} | ({"activation_function.threshold"} if act == "jumprelu" else
                                                   set()) | ({"W_skip"} if skip else set())
    assert set(t) == want and t["W_enc"].shape == (M, D)
    assert torch.equal(t["W_enc"], layer_tensors(11, act, skip)["W_enc"])
    import yaml

    cfg = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    assert cfg["model_kind"] == "transcoder_set" and cfg["transcoders"] == [f"layer_{L}.safetensors" for L in LAYERS]
    assert (cfg.get("activation"), cfg.get("k")) == (act, 5 if act == "topk" else None)


def test_a_folder_without_a_transcoders_list_is_globbed_and_both_output_hook_names_read(tmp_path):
    write_set(tmp_path / "s", "relu", False, layers=(0, 2, 10), listed=False, out_hook="hook_mlp_out")
    ts = load_transcoder_set(tmp_path / "s" / "config.yaml")
    assert ts.layers == [0, 2, 10] and ts.output_hook == "hook_mlp_out"
    assert ts.transcoders[2].out_site == "mlp_out.10"


def test_circuit_tracers_k_tensor_is_read(tmp_path):
    """decoderesearch's TopK saver puts k in the file; config.yaml says activation topk, k."""
    write_set(tmp_path / "s", "topk", False)
    t = layer_tensors(1, "topk", False) | {"k": torch.tensor(5)}
    save_file(t, str(tmp_path / "s" / "layer_0.safetensors"))
    assert load_transcoder_set(tmp_path / "s").transcoders[0].k == 5


def test_skip_decode_needs_the_input_and_is_validated():
    W = torch.randn(4, 6)
    sae = SAE(W, torch.zeros(6), torch.randn(6, 4), torch.zeros(4), b_dec_in=False, W_skip=torch.eye(4) * 2)
    x = torch.randn(3, 4)
    f = sae.encode(x)
    assert torch.allclose(sae.decode(f, x), f @ sae.W_dec + 2 * x)
    with pytest.raises(SAEError):
        sae.decode(f)
    with pytest.raises(SAEError, match="W_skip has shape"):
        SAE(W, torch.zeros(6), torch.randn(6, 4), torch.zeros(4), b_dec_in=False, W_skip=torch.eye(5))
    with pytest.raises(SAEError, match="NaN"):
        SAE(W, torch.zeros(6), torch.randn(6, 4), torch.zeros(4), b_dec_in=False,
            W_skip=torch.full((4, 4), float("nan")))


def _bad_cases():
    def no_config(d):
        (d / "config.yaml").unlink()

    def kind(d):
        (d / "config.yaml").write_text(config_yaml("relu").replace("transcoder_set", "cross_layer_transcoder"))

    def hook(d):
        (d / "config.yaml").write_text(config_yaml("relu", in_hook="hook_resid_pre"))

    def missing_file(d):
        (d / "layer_1.safetensors").unlink()

    def unlisted_file(d):
        (d / "config.yaml").write_text(config_yaml("relu", layers=(0, 1)))

    def extra_tensor(d):
        save_file(layer_tensors(1, "relu", False) | {"log_thresholds": torch.zeros(M)}, str(d / "layer_0.safetensors"))

    def shape(d):
        t = layer_tensors(1, "relu", False)
        t["b_dec"] = torch.zeros(D + 1)
        save_file(t, str(d / "layer_0.safetensors"))

    def skip_shape(d):
        save_file(layer_tensors(1, "relu", False) | {"W_skip": torch.zeros(D, D + 2)}, str(d / "layer_0.safetensors"))

    def nan(d):
        t = layer_tensors(1, "relu", False)
        t["W_dec"][3, 2] = float("nan")
        save_file(t, str(d / "layer_0.safetensors"))

    def pickle(d):
        (d / "layer_1.safetensors").rename(d / "layer_1.pt")

    def negative_threshold(d):
        t = layer_tensors(1, "jumprelu", False)
        t["activation_function.threshold"][0] = -0.5
        save_file(t, str(d / "layer_0.safetensors"))

    def topk_without_k(d):
        (d / "config.yaml").write_text(config_yaml("relu") + "activation: topk\n")

    def not_yaml(d):
        (d / "config.yaml").write_text("model_kind: [unclosed\n")

    return [no_config, kind, hook, missing_file, unlisted_file, extra_tensor, shape, skip_shape, nan, pickle,
            negative_threshold, topk_without_k, not_yaml]


@pytest.mark.parametrize("spoil", _bad_cases(), ids=lambda f: f.__name__)
def test_bad_sets_are_one_line_and_write_nothing(tmp_path, spoil):
    d = tmp_path / "set"
    write_set(d, "relu", False)
    spoil(d)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    with pytest.raises(SAEError) as e:
        load_transcoder_set(d)
    assert "\n" not in str(e.value) and str(e.value)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before


def test_saving_refuses_what_the_format_cannot_hold_and_writes_nothing(tmp_path):
    write_set(tmp_path / "a", "relu", False)
    ts = load_transcoder_set(tmp_path / "a")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(SAEError, match="not a transcoder set"):
        save_transcoder_set(ts, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    ts.transcoders[1].b_dec_in = True
    with pytest.raises(SAEError):
        save_transcoder_set(ts, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "mine"]
    with pytest.raises(SAEError, match="increasing"):
        TranscoderSet(ts.transcoders[:2], [1, 0])


def test_check_set_for_model(tmp_path, tiny_lm_dir):
    from types import SimpleNamespace

    from core.model.load import load_model

    lm = load_model(str(tiny_lm_dir))  # 3 layers, d_model 64
    write_set(tmp_path / "narrow", "relu", False, layers=(0, 1))
    with pytest.raises(SAEError, match="layer 0: .*64 wide"):
        check_set_for_model(load_transcoder_set(tmp_path / "narrow"), lm, full=False)
    ok = _wide_set([0, 2])
    check_set_for_model(ok, lm, full=False)
    with pytest.raises(SAEError, match="lacks layer"):
        check_set_for_model(ok, lm, full=True)
    check_set_for_model(_wide_set([0, 1, 2]), lm, full=True)
    with pytest.raises(SAEError, match="has layer"):
        check_set_for_model(_wide_set([0, 3]), lm, full=False)
    bad = SimpleNamespace(**{**ok.__dict__, "input_hook": "ln2.hook_normalized"})
    with pytest.raises(SAEError, match="feature_input_hook"):
        check_set_for_model(bad, lm, full=False)


def _wide_set(layers) -> TranscoderSet:
    tcs = [SAE(torch.randn(64, 8), torch.zeros(8), torch.randn(8, 64), torch.zeros(64), b_dec_in=False,
               site=f"mlp_in.{L}", out_site=f"mlp_out.{L}") for L in layers]
    return TranscoderSet(tcs, list(layers))


def test_load_saes_reads_a_set_and_load_sae_one_layer_file(tmp_path):
    from core.saes.formats import load_sae, load_saes

    tensors = write_set(tmp_path / "s", "jumprelu", True)
    saes = load_saes(tmp_path / "s")
    assert [s.site for s in saes] == ["mlp_in.0", "mlp_in.1", "mlp_in.2"]
    with pytest.raises(SAEError, match="layer_L.safetensors file"):
        load_sae(tmp_path / "s")
    one = load_sae(tmp_path / "s" / "layer_2.safetensors")
    assert (one.site, one.out_site, one.meta["name"]) == ("mlp_in.2", "mlp_out.2", "s/layer_2")
    assert torch.equal(one.W_enc, tensors[2]["W_enc"].T) and torch.equal(one.W_skip, tensors[2]["W_skip"].T)
    assert torch.equal(one.threshold, saes[2].threshold)
