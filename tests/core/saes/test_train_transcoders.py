"""Transcoder sets trained and measured: the replacement model's numbers equal a forward pass edited by hand with
plain torch hooks (one window a pass, no padding), per-layer FVU equals NumPy."""

import numpy as np
import pytest
import torch
from helpers.tiny import write_corpus

from core.model.load import load_model
from core.saes import acts
from core.saes.sae import SAE
from core.saes.set_quality import evaluate_set
from core.saes.transcoders import TranscoderSet


@pytest.fixture(scope="module")
def tiny_lm(tiny_lm_dir):
    return load_model(str(tiny_lm_dir))


@pytest.fixture(scope="module")
def split(tiny_lm, tmp_path_factory):
    corpus = write_corpus(tmp_path_factory.mktemp("c") / "c.txt", n_docs=30)
    return acts.split_corpus(corpus, tiny_lm.tokenizer, context_len=32)


def random_set(layers, skip: bool, d=64, m=48, seed=3) -> TranscoderSet:
    g = torch.Generator().manual_seed(seed)
    tcs = [SAE(torch.randn(d, m, generator=g) * 0.3, torch.randn(m, generator=g) * 0.1,
               torch.randn(m, d, generator=g) * 0.05, torch.randn(d, generator=g) * 0.02, activation="topk", k=5,
               b_dec_in=False, site=f"mlp_in.{L}", out_site=f"mlp_out.{L}",
               W_skip=torch.randn(d, d, generator=g) * 0.05 if skip else None) for L in layers]
    return TranscoderSet(tcs, list(layers))


def by_hand(lm, ts: TranscoderSet, windows) -> dict:
    """Unbatched passes with plain torch hooks on the Llama's MLP modules: the clean pass records each MLP's input
    and output; the replaced pass swaps every set layer's MLP output for the transcoder of its own input there; the
    zero pass zeroes them; special tokens keep the MLP's own output and count no loss."""
    special = set(lm.tokenizer.all_special_ids)
    mlps = lm.model.model.layers
    rows = {L: ([], []) for L in ts.layers}
    ce = {"clean": [], "repl": [], "zero": [], "kl": []}
    for w in windows:
        ids = torch.tensor([w.ids])
        keep = torch.tensor([t not in special for t in w.ids])  # (T,)
        outs = {}
        for mode in ("clean", "repl", "zero"):
            handles = []
            for L, tc in ts.by_layer().items():
                def hook(mod, inp, out, L=L, tc=tc, mode=mode, keep=keep):
                    x, y = inp[0][0], out[0]  # (T, d)
                    if mode == "clean":
                        rows[L][0].append(x[keep].numpy().astype(np.float64))
                        rows[L][1].append(y[keep].numpy().astype(np.float64))
                        return None
                    new = tc(x) if mode == "repl" else torch.zeros_like(y)
                    return torch.where(keep[:, None], new, y)[None]
                handles.append(mlps[L].mlp.register_forward_hook(hook))
            try:
                with torch.inference_mode():
                    outs[mode] = lm.model(ids).logits[0].double().log_softmax(-1)  # (T, V)
            finally:
                for h in handles:
                    h.remove()
        pair = (keep[:-1] & keep[1:]).numpy()
        tgt = np.array(w.ids[1:])[pair]
        for mode in ("clean", "repl", "zero"):
            lp = outs[mode][:-1].numpy()[pair]
            ce[mode].append(-lp[np.arange(len(tgt)), tgt])
        lc, lr = outs["clean"][:-1].numpy()[pair], outs["repl"][:-1].numpy()[pair]
        ce["kl"].append((np.exp(lc) * (lc - lr)).sum(-1))
    return {"rows": {L: (np.concatenate(a), np.concatenate(b)) for L, (a, b) in rows.items()},
            **{k: np.concatenate(v).mean() for k, v in ce.items()}, "pairs": sum(len(v) for v in ce["kl"])}


@pytest.mark.parametrize("skip", [False, True])
def test_set_quality_equals_a_hand_edited_forward(tiny_lm, split, skip):
    ts = random_set([0, 2], skip)
    held = split.held_out[:10]
    q = evaluate_set(ts, tiny_lm, held, batch_tokens=128)
    want = by_hand(tiny_lm, ts, held)
    for L, tc in ts.by_layer().items():
        x, y = want["rows"][L]
        n = {k: getattr(tc, k).numpy().astype(np.float64) for k in ("W_enc", "b_enc", "W_dec", "b_dec")}
        pre = x @ n["W_enc"] + n["b_enc"]
        f = np.zeros_like(pre)
        top = np.argsort(-pre, 1)[:, :5]
        np.put_along_axis(f, top, np.maximum(np.take_along_axis(pre, top, 1), 0), 1)
        y_hat = f @ n["W_dec"] + n["b_dec"] + (x @ tc.W_skip.numpy().astype(np.float64) if skip else 0)
        fvu = ((y - y_hat) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()
        assert q.layers[L]["fvu"] == pytest.approx(fvu, rel=1e-4)
        assert q.layers[L]["l0"] == pytest.approx((f != 0).sum(1).mean(), rel=1e-6)
        assert q.layers[L]["dead"] == int(((f != 0).sum(0) == 0).sum()) and q.layers[L]["tokens"] == len(y)
    assert q.pairs == want["pairs"] > 0
    assert q.ce_clean == pytest.approx(want["clean"], rel=1e-5)
    assert q.ce_replaced == pytest.approx(want["repl"], rel=1e-5)
    assert q.ce_zero == pytest.approx(want["zero"], rel=1e-5)
    assert q.kl == pytest.approx(want["kl"], rel=1e-4, abs=1e-7)
    rec = (want["zero"] - want["repl"]) / (want["zero"] - want["clean"])
    assert q.ce_recovered == pytest.approx(rec, rel=1e-3, abs=1e-4)
    assert abs(want["zero"] - want["clean"]) > 1e-3 and want["kl"] > 0  # the layers matter, the set changes them


def _counting(module):
    """A list that grows by one per forward call of `module` (a plain torch hook, removed by the caller)."""
    calls: list = []
    return calls, module.register_forward_pre_hook(lambda m, args, kwargs: calls.append(1), with_kwargs=True)


def test_a_set_trains_every_layer_from_one_pass_per_batch_and_equals_each_layer_alone(tiny_lm, tmp_path):
    from core.saes.formats import load_sae
    from core.saes.train import TrainSAEConfig, train_sae
    from core.saes.train_transcoders import TrainTranscodersConfig, train_transcoders
    from core.saes.transcoders import load_transcoder_set

    corpus = write_corpus(tmp_path / "c.txt", n_docs=40)
    common = dict(corpus=corpus, tokens=3000, latents=64, k=4, batch=256, buffer_tokens=1024, context_len=32,
                  model_batch_tokens=512, eval_tokens=800, seed=5)
    base, last_block = tiny_lm.parts.base, tiny_lm.parts.layers[2]
    passes, h1 = _counting(base)
    blocks, h2 = _counting(last_block)
    at_last_step: dict = {}
    try:
        report = train_transcoders(TrainTranscodersConfig(model="tiny", out=str(tmp_path / "set"), layers="0,1",
                                                          **common), lm=tiny_lm,
                                   on_step=lambda s: at_last_step.update(passes=len(passes), blocks=len(blocks)))
        single = {}
        for L in (0, 1):
            passes.clear()
            cfg = TrainSAEConfig(model="tiny", site=f"mlp_in.{L}", out=str(tmp_path / f"alone{L}"), transcode=True,
                                 **common)
            train_sae(cfg, lm=tiny_lm, on_step=lambda s, L=L: single.__setitem__(L, len(passes)))
    finally:
        h1.remove()
        h2.remove()
    # (b) one forward pass per model batch for both layers, the same number as one layer alone; block 2 never ran
    assert at_last_step["passes"] == single[0] == single[1] > 1 and at_last_step["blocks"] == 0
    # (a) each layer equals train-sae on that layer alone with the same seed and data, bit for bit; (d) the folder
    ts = load_transcoder_set(tmp_path / "set")
    assert ts.layers == [0, 1] and ts.output_hook == "mlp.hook_out" and report["tokens"] == 3000 // 256 * 256
    x = torch.randn(20, 64)
    for L, tc in ts.by_layer().items():
        alone = load_sae(tmp_path / f"alone{L}")
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            assert torch.equal(getattr(tc, name), getattr(alone, name)), (L, name)
        assert (tc.activation, tc.k, tc.b_dec_in, alone.b_dec_in) == ("topk", 4, False, False)
        assert torch.equal(tc.encode(x), alone.encode(x)) and torch.equal(tc(x), alone(x))
    import json

    saved = json.loads((tmp_path / "set" / "quality.json").read_text())
    assert saved["quality"]["layers"]["0"]["fvu"] == report["quality"]["layers"]["0"]["fvu"]
    assert 0 <= report["quality"]["layers"]["1"]["l0"] <= 4 and np.isfinite(report["quality"]["ce_recovered"])
    # the saved quality is the replacement model's, measured again from the folder
    held = acts.split_corpus(corpus, tiny_lm.tokenizer, context_len=32,
                             max_tokens=3000 + 3000 // 15 + 1600).held_out
    from core.saes.acts import take_windows

    again = evaluate_set(ts, tiny_lm, take_windows(held, 800))
    assert again.ce_recovered == pytest.approx(report["quality"]["ce_recovered"], rel=1e-6)


def test_train_transcoders_cli(tiny_lm_dir, tmp_path, capsys):
    import json

    from core.cli.main import main

    corpus = write_corpus(tmp_path / "c.txt", n_docs=30)
    args = ["train-transcoders", "--model", str(tiny_lm_dir), "--corpus", corpus, "--tokens", "1024", "--latents",
            "32", "--k", "4", "--batch", "256", "--buffer-tokens", "512", "--context-len", "32", "--eval-tokens",
            "300", "--no-progress"]
    assert main(args + ["--layers", "all", "--out", str(tmp_path / "set"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layers"] == [0, 1, 2] and set(report["quality"]["layers"]) == {"0", "1", "2"}
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("x")
    for bad, match in ((["--layers", "0,7", "--out", str(tmp_path / "b")], "layers 0-2"),
                       (["--layers", "one", "--out", str(tmp_path / "b")], "ranges like 0-3,7"),
                       (["--layers", "0", "--out", str(tmp_path / "mine")], "not a transcoder set")):
        assert main(args + bad) == 2
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt", "mine", "set"]
