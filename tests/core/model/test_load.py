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


def test_hub_id_unreachable_hub_fails_fast_in_one_line(tmp_path):
    """`extract --model org/typo` with the hub allowed (HF_HUB_OFFLINE unset) on a machine that cannot reach it
    (here the name does not resolve: no route to huggingface.co) or where the id does not exist: exit 2, one line
    on stderr, in seconds (transformers alone retried for ~60 s and printed ~44 lines of warnings). The time bound is
    10 s, or the same command's time with a missing folder (which never asks the hub: start-up and imports alone)
    plus 5 s on a machine so busy that start-up alone takes longer."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env |= {"HF_HOME": str(tmp_path / "hf"), "NEUROBOARD_CACHE": str(tmp_path / "nb")}  # nothing cached

    def extract(model: str) -> tuple[subprocess.CompletedProcess, float]:
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "core.cli", "extract", "--model", model, "--db",
                            str(tmp_path / "i.duckdb"), "--no-progress"], capture_output=True, text=True, env=env,
                           timeout=120)
        return r, time.monotonic() - t0
    base, base_s = extract("./no-such-folder")
    r, took = extract("org/typo")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("neuroboard: error:"), r.stderr
    assert "org/typo" in lines[0] and took < max(10.0, base_s + 5.0), (took, base_s, lines)
    assert base.returncode == 2 and not (tmp_path / "i.duckdb").exists()


def test_hub_id_in_the_local_cache_loads_when_the_hub_is_unreachable(tiny_lm_dir, tmp_path):
    """A hub id already in the Hugging Face cache (laid out as the hub client writes it) loads from there when the
    hub cannot be reached, with HF_HUB_OFFLINE unset, quietly; asked online, the hub is read as before."""
    import os
    import shutil
    import subprocess
    import sys

    repo = tmp_path / "hf" / "hub" / "models--org--tiny"
    shutil.copytree(tiny_lm_dir, repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env |= {"HF_HOME": str(tmp_path / "hf")}
    code = ("import core.model.load as L; L.hub_unreachable = lambda: 'unreachable in this test'; "
            "lm = L.load_model('org/tiny'); print(lm.n_layers, lm.source)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ["3", "org/tiny"], r.stderr
    assert "Retrying" not in r.stderr and "thrown while requesting" not in r.stderr


def test_hub_id_online_reads_the_hub(monkeypatch):
    """With the hub answering, a hub id goes to transformers as before (not from the cache only)."""
    import core.model.load as L

    seen = {}

    def load_folder(name, *a, local_files_only=False):
        seen.update(name=name, local=local_files_only)
        raise OSError("stop here")
    monkeypatch.setattr(L, "_offline", lambda: False)
    monkeypatch.setattr(L, "hub_unreachable", lambda: None)
    monkeypatch.setattr(L, "_load_folder", load_folder)
    with pytest.raises(ModelLoadError, match="stop here"):
        load_model("org/name")
    assert seen == {"name": "org/name", "local": False}
