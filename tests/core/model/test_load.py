"""Model loading (built-in GGUFs, folders, errors) and hook parity on the real smollm2."""

import time

import pytest
import torch

from core.model.intervene import intervene, store
from core.model.load import ModelLoadError, load_model


@pytest.fixture(scope="session")
def smollm2():
    return load_model("smollm2-135m")


def test_local_folder_loads_through_auto_classes(tiny_lm_dir):
    lm = load_model(str(tiny_lm_dir))
    assert lm.n_layers == 3 and lm.parts.d_mlp == 128 and lm.info()["arch"] == "LlamaForCausalLM"


@pytest.mark.parametrize("make, needle", [
    (lambda p: p / "missing", "not a built-in name"),
    (lambda p: (p / "bad.gguf").write_bytes(b"GGUF but not really") and p / "bad.gguf", "tried GGUF file"),
    (lambda p: (p / "m").mkdir() or p / "m", "has no config.json"),
    (lambda p: (p / "cfg").mkdir() or (p / "cfg" / "config.json").write_text("{not json") and p / "cfg",
     "tried local folder"),
    (lambda p: (p / "x.bin").write_bytes(b"\0") and p / "x.bin", "not .gguf"),
])
def test_bad_models_give_one_line(tmp_path, make, needle):
    with pytest.raises(ModelLoadError) as e:
        load_model(str(make(tmp_path)))
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_smollm2_parity_and_cache(smollm2):
    t = time.perf_counter()
    again = load_model("smollm2-135m")  # from the safetensors cache written by the first load
    assert time.perf_counter() - t < 10
    assert again.source == smollm2.source
    lm = smollm2
    assert (lm.n_layers, lm.parts.d_model, lm.parts.d_mlp) == (30, 576, 1536)
    ids = lm.tokenizer("The capital of France is", return_tensors="pt").input_ids
    st = {}
    with torch.inference_mode(), intervene(lm, {f"resid_post.{i}": store(st, i) for i in range(30)}):
        out = lm.model(ids, output_hidden_states=True)
    hs = out.hidden_states
    for layer in range(29):
        torch.testing.assert_close(st[layer], hs[layer + 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(lm.parts.final_norm(st[29]), hs[30], atol=1e-5, rtol=0)
    assert lm.tokenizer.decode(out.logits[0, -1].argmax()) == " Paris"


@pytest.mark.slow
def test_gemma3_builtin_loads():
    lm = load_model("gemma3-270m")
    assert (lm.n_layers, lm.parts.d_model, lm.parts.d_mlp) == (18, 640, 2048)
    ids = lm.tokenizer("The capital of France is", return_tensors="pt").input_ids
    assert ids[0, 0].item() == lm.tokenizer.bos_token_id  # Gemma's tokenizer adds BOS by default
    st = {}
    edits = {f"resid_post.{i}": store(st, i) for i in range(18)} | {"neurons.3": store(st, "mlp")}
    with torch.inference_mode(), intervene(lm, edits):
        out = lm.model(ids, output_hidden_states=True)
    for layer in range(17):
        torch.testing.assert_close(st[layer], out.hidden_states[layer + 1], atol=1e-4, rtol=1e-5)
    assert st["mlp"].shape == (1, ids.shape[1], 2048)
    n = lm.parts.norms(3)  # Gemma 3 norms each sublayer's output before the residual add
    assert n.post_attn is lm.model.model.layers[3].post_attention_layernorm
    assert n.post_mlp is lm.model.model.layers[3].post_feedforward_layernorm


def test_file_lock_serialises_processes(tmp_path):
    """Two processes converting the same GGUF: the second waits for the first's lock (checked with two real
    processes holding core.model.load.file_lock on one path, each writing its start and end times)."""
    import subprocess
    import sys

    code = ("import sys, time; from pathlib import Path; from core.model.load import file_lock\n"
            "with file_lock(Path(sys.argv[1])):\n"
            "    t0 = time.time(); time.sleep(1.0); print(t0, time.time())\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "x.lock")], stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    spans = sorted(tuple(map(float, p.communicate(timeout=60)[0].split())) for p in procs)
    assert spans[1][0] >= spans[0][1] - 0.01  # the second began after the first let go
