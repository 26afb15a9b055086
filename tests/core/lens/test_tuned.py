"""Tuned lens: the identity at init (= the logit lens); training beats the logit lens on held-out tokens
(measured by the trainer and again by core.lens.logit, window by window); exact save/load through the store; and the
`train-lens` CLI."""

import json

import numpy as np
import pytest
import torch
from helpers.tiny import tiny_model, tiny_tokenizer, write_corpus

from core.cli import main
from core.lens.logit import lens
from core.lens.store import (
    load_tuned_lens,
    read_meta,
    save_tuned_lens,
    store_dir,
    store_key,
)
from core.lens.tuned import TunedLens, TunedLensConfig, TunedLensError, split_windows, train_tuned_lens
from core.model.load import LoadedModel, load_model
from core.model.parts import find_parts


def wrap(model, name="tiny"):
    return LoadedModel(name=name, source="config", model=model, tokenizer=tiny_tokenizer(),
                       parts=find_parts(model))


def sharp_llama():
    """A tiny random Llama whose logit lens is poor: blocks write 5x more into the stream and a large
    final-norm gain makes the output distribution sharp, so early streams predict far from the output."""
    model = tiny_model("llama")
    with torch.no_grad():
        for block in model.model.layers:
            block.mlp.down_proj.weight.mul_(5)
            block.self_attn.o_proj.weight.mul_(5)
        model.model.norm.weight.mul_(10)
    return model


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
def test_untrained_lens_is_the_logit_lens(arch):
    lm = wrap(tiny_model(arch))
    tl = TunedLens.for_model(lm)
    ids = lm.tokenizer("Paris is the capital of France. The cat sat")["input_ids"]
    plain, tuned = lens(lm, ids), lens(lm, ids, translator=tl)
    for field in ("top_ids", "top_probs", "entropy", "kl_final", "target_prob", "target_rank"):
        assert np.array_equal(getattr(plain, field), getattr(tuned, field)), field
    h = torch.randn(5, lm.parts.d_model)
    assert tl(lm.n_layers - 1, h) is h and torch.equal(tl(0, h), h)
    assert len(tl.translators) == lm.n_layers - 1 and tl.metadata()["n_layers"] == lm.n_layers


def test_translator_is_residual_affine():
    tl = TunedLens(n_layers=3, d_model=8)
    with torch.no_grad():
        for p in tl.parameters():
            p.normal_()
    h = torch.randn(2, 4, 8)  # (B, T, d)
    A, b = tl.translators[1].weight, tl.translators[1].bias
    torch.testing.assert_close(tl(1, h), h + h @ A.T + b)
    with pytest.raises(IndexError):
        tl(3, h)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    lm = wrap(sharp_llama())
    corpus = write_corpus(tmp_path_factory.mktemp("tl") / "c.txt", n_docs=40)
    cfg = TunedLensConfig(model="tiny", corpus=corpus, max_tokens=4000, context_len=64, batch_tokens=256,
                          steps=60, lr=3e-3, heldout_tokens=512, threads=1)  # 1 thread: fast on a busy CPU
    seen = []
    tl, report = train_tuned_lens(lm, cfg, on_progress=lambda *a: seen.append(a))  # (step, steps, loss)
    return lm, cfg, tl, report, seen


def test_training_beats_the_logit_lens_on_heldout_tokens(trained):
    lm, cfg, tl, report, seen = trained
    L = lm.n_layers
    logit, tuned = np.array(report.logit_kl), np.array(report.tuned_kl)
    assert logit.shape == tuned.shape == (L,) and logit[-1] == tuned[-1] == 0
    assert logit[:-1].mean() > 0.5  # the setting is not trivial: the logit lens is far from the output
    assert tuned[:-1].mean() < 0.6 * logit[:-1].mean()
    assert (tuned[:-1] < 0.8 * logit[:-1]).all()  # every block with a translator improves
    assert report.steps == 60 and [s[0] for s in seen] == list(range(1, 61)) and seen[-1][1] == 60
    assert report.last_loss < 0.6 * report.first_loss
    assert report.heldout_tokens >= cfg.heldout_tokens and report.train_tokens <= cfg.max_tokens
    assert report.tokens_trained > 0 and report.seconds > 0
    assert torch.get_num_threads() == 2  # cfg.threads applied during training only (conftest sets 2)


def test_report_matches_core_lens_on_each_heldout_window(trained):
    """The trainer's held-out KL (batched, its own KL formula) recomputed window by window with core.lens.logit."""
    lm, cfg, tl, report, _ = trained
    held, _ = split_windows(lm, cfg)
    logit, tuned, n = 0.0, 0.0, 0
    for w in held:
        logit = logit + lens(lm, w.ids).kl_final.astype(np.float64).sum(1)  # (L,)
        tuned = tuned + lens(lm, w.ids, translator=tl).kl_final.astype(np.float64).sum(1)
        n += len(w.ids)
    np.testing.assert_allclose(report.logit_kl, logit / n, rtol=2e-3, atol=1e-5)
    np.testing.assert_allclose(report.tuned_kl, tuned / n, rtol=2e-3, atol=1e-5)


def test_save_load_round_trip_and_shape_check(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROBOARD_CACHE", str(tmp_path / "cache"))
    lm, _, tl, report, _ = trained
    assert load_tuned_lens(lm) is None
    folder = save_tuned_lens(tl, report, store_dir(lm))
    assert folder == tmp_path / "cache" / "lenses" / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == ["tuned_lens.json", "tuned_lens.safetensors"]
    back = load_tuned_lens(lm)
    assert back is not None and back.metadata() == tl.metadata()
    for (k, a), (k2, b) in zip(tl.state_dict().items(), back.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k
    meta = read_meta(folder)
    assert meta["report"]["tuned_kl"] == report.tuned_kl and meta["n_layers"] == lm.n_layers

    other = tmp_path / "other"
    save_tuned_lens(TunedLens(n_layers=4, d_model=lm.parts.d_model), None, other)
    save_tuned_lens(TunedLens(n_layers=3, d_model=32), None, tmp_path / "narrow")
    for bad, what in ((other, "4 layers"), (tmp_path / "narrow", "d_model 32")):
        with pytest.raises(TunedLensError) as e:
            load_tuned_lens(lm, bad)
        assert what in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "tuned_lens.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(TunedLensError, match="cannot read"):
        load_tuned_lens(lm, tmp_path / "junk")
    (folder / "tuned_lens.json").write_text("{not json")  # good weights, broken metadata: still one line
    with pytest.raises(TunedLensError, match="cannot read") as e:
        load_tuned_lens(lm)
    assert "\n" not in str(e.value)


def test_store_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my model").mkdir()
    assert store_key("smollm2-135m") == "smollm2-135m"
    assert store_key("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB--SmolLM2-135M"
    key = store_key("my model")
    assert key.startswith("my_model-") and key == store_key(str(tmp_path / "my model"))
    (tmp_path / "elsewhere" / "my model").mkdir(parents=True)
    assert store_key(str(tmp_path / "elsewhere" / "my model")) != key


def run_cli(capsys, args):
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_train_lens(tiny_lm_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NEUROBOARD_CACHE", str(tmp_path / "cache"))
    corpus = write_corpus(tmp_path / "c.txt", n_docs=10)
    base = ["train-lens", "--model", str(tiny_lm_dir), "--corpus", corpus, "--context-len", "32",
            "--batch-tokens", "128", "--heldout-tokens", "128", "--max-tokens", "600", "--steps", "4",
            "--threads", "1"]
    rc, out, err = run_cli(capsys, base + ["--json", "--no-progress"])
    assert rc == 0 and err == ""
    rep = json.loads(out)
    assert rep["path"] == str(store_dir(str(tiny_lm_dir))) and rep["steps"] == 4
    assert len(rep["logit_kl"]) == len(rep["tuned_kl"]) == 3 and rep["config"]["max_tokens"] == 600
    lm = load_model(str(tiny_lm_dir))
    assert load_tuned_lens(lm) is not None

    rc, out, err = run_cli(capsys, base + ["--out", str(tmp_path / "elsewhere")])  # text, with a progress bar
    assert rc == 0 and f"-> {tmp_path / 'elsewhere'}" in out and "mean" in out and "train-lens" in err
    assert (tmp_path / "elsewhere" / "tuned_lens.safetensors").is_file()


@pytest.mark.parametrize("change, message", [
    ({"--model": "no-such-model"}, "not a built-in name"),
    ({"--corpus": "missing.txt"}, "not found"),
    ({"--steps": "0"}, "--steps must be positive"),
    ({"--max-tokens": "-5"}, "--max-tokens must be positive"),
    ({"--lr": "0"}, "--lr must be positive"),
    ({"--heldout-tokens": "100000"}, "all held out"),
])
def test_cli_bad_input_is_one_line(tiny_lm_dir, tmp_path, monkeypatch, capsys, change, message):
    monkeypatch.setenv("NEUROBOARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    corpus = write_corpus(tmp_path / "c.txt", n_docs=3)
    args = {"--model": str(tiny_lm_dir), "--corpus": corpus, "--steps": "1", "--threads": "1"}
    args.update(change)
    rc, out, err = run_cli(capsys, ["train-lens", "--no-progress", *[x for kv in args.items() for x in kv]])
    err = err.strip()
    assert rc == 2 and err.startswith("neuroboard: error: ") and "\n" not in err and message in err, err
    assert not (tmp_path / "cache" / "lenses").exists()
