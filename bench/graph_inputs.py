"""What bench/graph.py hands both tools: circuit-tracer's venv, the model exported as an HF folder transformers
4.57 reads, the transcoder set (the bench's own, or --tiny's random model and set), and the child environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from core.circuits.demo import set_dir

ROOT = Path(__file__).resolve().parents[1]
TORCH_PIN = "torch==2.13.0"
CT_PINS = ["circuit-tracer==0.5.0", "nnsight==0.6.3", "transformers<=4.57.3", "transformer-lens<4"]
TRAIN_SET = {"latents": 2048, "k": 32, "tokens": 32768, "batch": 512}
"""The set trained when there is no other: ~20 min on 2 cores, FVU ~0.95 (64 steps; at --batch 4096, 8 steps leave
FVU ~1.0 and no feature reaches a pruned graph, so the file comparison would have no features to compare)."""
DEMO_SET: Path | None = Path(set_dir(str(ROOT / "data" / "demo.duckdb"), "smollm2-135m"))
"""The demo's transcoder set for smollm2 (core.circuits.demo), used when `make demo` has trained it."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cache_root() -> Path:
    from core.model.load import cache_dir

    return cache_dir() / "bench"


# ---- the circuit-tracer venv --------------------------------------------------------------------------------------
def ct_versions(py: Path) -> dict | None:
    code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
            "('torch', 'circuit-tracer', 'nnsight', 'transformers')}))")
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, env=clean_env(1))
    return json.loads(r.stdout) if r.returncode == 0 else None


def versions_ok(v: dict | None) -> bool:
    if not v:
        return False
    tf = tuple(int(x) for x in v["transformers"].split(".")[:3] if x.isdigit())
    return (v["torch"].split("+")[0] == "2.13.0" and v["circuit-tracer"] == "0.5.0" and v["nnsight"] == "0.6.3"
            and tf <= (4, 57, 3))


def ensure_ct_venv(path: Path) -> tuple[Path, dict]:
    """The venv's python and its versions, built first when missing or wrong (torch pinned and installed first, so
    nothing can pull another torch)."""
    py = path / "bin" / "python"
    v = ct_versions(py) if py.exists() else None
    if versions_ok(v):
        return py, v
    log(f"building circuit-tracer's venv in {path} (a few minutes)")
    if not py.exists():
        subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv", str(path)], check=True)
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check"]
    for pkgs in ([TORCH_PIN], [TORCH_PIN, *CT_PINS]):
        r = subprocess.run([*pip, *pkgs], stdout=sys.stderr, stderr=sys.stderr)
        if r.returncode:
            raise SystemExit(f"pip install {' '.join(pkgs)} failed in {path} (exit {r.returncode})")
    v = ct_versions(py)
    if not versions_ok(v):
        raise SystemExit(f"{path}: unexpected versions after installing: {v}")
    return py, v


def clean_env(threads: int) -> dict:
    """The environment of a child process: offline, `threads` BLAS/OpenMP threads, nothing of this venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONNOUSERSITE": "1"}
    return env


# ---- the model as an HF folder transformers 4.57 reads -------------------------------------------------------------
def export_hf(lm, out: Path) -> Path:
    """Write `lm` (loaded by core.model.load, transformers 5) as a folder transformers 4.57 loads (docstring, 2)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    cfg = lm.model.config.to_dict()
    cfg["architectures"] = [type(lm.model).__name__]
    rope = cfg.pop("rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise SystemExit(f"rope {rope}: map it onto transformers 4.x's rope_scaling by hand")
    cfg["rope_theta"] = float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    cfg["torch_dtype"] = "float32"
    cfg.pop("dtype", None)
    cfg["_name_or_path"] = str(out)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    sd = {k: v.detach().float().contiguous() for k, v in lm.model.state_dict().items()}
    if cfg.get("tie_word_embeddings"):
        sd.pop("lm_head.weight", None)  # 4.57 ties lm_head to model.embed_tokens.weight, the key it reads
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    lm.tokenizer.save_pretrained(str(out))
    tc_path = out / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    for k in ("backend", "is_local", "local_files_only"):
        tc.pop(k, None)
    tc_path.write_text(json.dumps(tc, indent=2))
    return out


# ---- the tiny smoke-test model and set -----------------------------------------------------------------------------
TINY_WORDS = ("the capital of france is paris . germany ' s berlin city a in and it was to".split())


def tiny_model(folder: Path) -> Path:
    """A random 4-layer Llama (tied embeddings, rope base 100,000) with a word-level tokenizer, saved by
    transformers 5 as neuroboard would find a model folder."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<bos>", "<eos>", "<pad>"]  # BOS at 1: circuit-tracer passes over id 0
    vocab = {t: i for i, t in enumerate(specials + TINY_WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                     unk_token="<unk>")
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=len(vocab), max_position_embeddings=128, bos_token_id=1,
                      eos_token_id=2, pad_token_id=3, tie_word_embeddings=True,
                      rope_parameters={"rope_type": "default", "rope_theta": 100000.0})
    model = LlamaForCausalLM(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    hf_tok.save_pretrained(str(folder))
    return folder


def tiny_set(lm, folder: Path, latents: int = 256, k: int = 16) -> Path:
    """A random TopK set in circuit-tracer's format, written by neuroboard's saver. Layer 1's encoder bias is
    lowered so that some tokens' k-th largest pre-activation is negative (the TopK/ReLU difference shows)."""
    from core.circuits.prompt import graph_tokens
    from core.circuits.replacement import clean_pass
    from core.saes.sae import SAE
    from core.saes.transcoders import TranscoderSet, save_transcoder_set

    g = torch.Generator().manual_seed(1)
    d, tcs = lm.parts.d_model, []
    mlp_in = clean_pass(lm, graph_tokens(lm, "the city of berlin is in germany and it was a capital")).mlp_in
    for L in range(lm.n_layers):
        W_enc = torch.randn(d, latents, generator=g) / d ** 0.5  # (d, latents)
        pre = mlp_in[L] @ W_enc  # (T, latents)
        shift = -float(pre.topk(k, -1).values[:, -1].mean()) if L == 1 else 0.0  # k-th largest ~ 0 on layer 1
        tcs.append(SAE(W_enc, torch.full((latents,), shift), torch.randn(latents, d, generator=g) / latents ** 0.5,
                       torch.randn(d, generator=g) * 0.01, activation="topk", k=k, b_dec_in=False,
                       site=f"mlp_in.{L}", out_site=f"mlp_out.{L}"))
    ts = TranscoderSet(tcs, list(range(lm.n_layers)), scan="tiny-random-topk", model=lm.name)
    return save_transcoder_set(ts, folder)


def bench_set(model: str, threads: int) -> Path:
    """The cached set this bench trains when no --transcoders is given and the demo has none."""
    if DEMO_SET is not None and DEMO_SET.is_dir():
        return DEMO_SET
    s = TRAIN_SET
    out = cache_root() / "graph" / f"transcoders-{model}-{s['latents']}-k{s['k']}-{s['tokens']}-b{s['batch']}"
    if (out / "config.yaml").is_file():
        return out
    log(f"training a transcoder set for {model} into {out} (every layer, {s['tokens']} tokens)")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [*neuroboard_cmd(), "train-transcoders", "--model", model, "--layers", "all", "--out", str(out),
           "--threads", str(threads), "--json", "--no-progress"]
    cmd += [x for key in ("latents", "k", "tokens", "batch") for x in (f"--{key}", str(s[key]))]
    r = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    if r.returncode:
        raise SystemExit(f"train-transcoders failed (exit {r.returncode})")
    return out


def set_summary(tc_dir: Path) -> dict:
    """The set's folder and, when train-transcoders wrote quality.json, its training and quality figures."""
    out: dict = {"path": str(tc_dir)}
    q = tc_dir / "quality.json"
    if q.is_file():
        r = json.loads(q.read_text())
        fvu = [v["fvu"] for v in r["quality"]["layers"].values()]
        out |= {"latents": r["latents"], "k": r["k"], "tokens": r["tokens"], "ce_recovered": r["quality"]["ce_recovered"],
                "kl": r["quality"]["kl"], "fvu_mean": sum(fvu) / len(fvu), "fvu_max": max(fvu)}
    return out


def neuroboard_cmd() -> list[str]:
    script = Path(sys.executable).parent / "neuroboard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "core.cli"]
