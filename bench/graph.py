"""Attribution graphs against circuit-tracer 0.5.0, in one run, on the same model, transcoder set and prompt:

1. circuit-tracer lives in its own venv (it pins transformers<=4.57.3 and nnsight 0.6's layout; neuroboard runs on
   transformers 5): built here when missing (--ct-venv; torch==2.13.0 first, then circuit-tracer==0.5.0,
   nnsight==0.6.3, transformers<=4.57.3, transformer-lens<4: its 4.0 drops HookedTransformer, which circuit-tracer's
   other backend imports), reused when its versions are right.
2. The model is exported from neuroboard's loader (core.model.load) as an HF folder transformers 4.57 reads:
   config.json with `architectures` and `rope_theta` (v5 keeps it only in `rope_parameters`; 4.57 would silently
   use 10,000), a tied embedding stored once as `model.embed_tokens.weight` (4.57's key), and tokenizer_config.json
   naming `PreTrainedTokenizerFast` (v5 writes `TokenizersBackend`). Checked: the venv's logits on the prompt
   against neuroboard's (max abs diff) and its token ids.
3. The transcoder set (--transcoders; default: the demo's once it has one (DEMO_SET), else one trained here with
   train-transcoders, every layer, 2,048 latents, k 32, 32,768 tokens at batch 512, cached). circuit-tracer 0.5.0
   loads ReLU/JumpReLU only, so for a TopK set the driver swaps each loaded transcoder's activation_function for
   circuit-tracer's own TopK(k) (`ct_topk_patched`). That TopK keeps the k largest pre-activations without a ReLU;
   ours ReLUs them, so a token whose k-th largest pre-activation is negative has negative features there and not
   here (counted in `roundtrip`).
4. circuit-tracer's `attribute` (nnsight backend, CPU, float32) + `create_graph_files` in a subprocess of its venv
   (bench/ct_driver.py), and `neuroboard graph` (the CLI) in a subprocess, with the same
   max_n_logits, desired_logit_prob, batch size, max feature nodes, thresholds and torch threads: wall time, peak
   RSS (os.wait4's ru_maxrss of each child) and CPU time of each, and the ratios ours / theirs.
5. The two graph files compared as circuit-tracer's tests/test_graph_ground_truth.py compares graphs (reference =
   circuit-tracer; thresholds in THRESHOLDS), and the unpruned graphs: circuit-tracer's adjacency, activations and
   selected features exported from its own process as .npy files (read without pickle), ours built in this process
   (core.circuits.run.build), compared node by node (features by (layer, position, feature), errors by (layer,
   position), tokens by position, logits by token id).
6. circuit-tracer's viewer: the folder `neuroboard graph` wrote (the graph file and graph-metadata.json) read by its
   pydantic models (frontend/graph_models.py) and served by its local server (frontend/local_server.py).
7. Round trip: circuit-tracer loads the set (load_transcoder_set via its local-folder loader) and encodes the
   prompt's MLP inputs (neuroboard's clean pass); max abs differences of pre-activations and activations.
8. Training throughput: train-transcoders (core.saes.train_transcoders) on --train-layers (0,14,29) all at once
   against one layer at a time, same tokens (--train-tokens 8192): tokens/s each and the ratio (~4 min on 2 cores).

    .venv/bin/python bench/graph.py --json [--tiny] [--transcoders DIR] [--prompt TEXT] [--threads 2]
        [--batch-size 256] [--max-feature-nodes 7500] [--ct-venv DIR] [--skip-train-bench] [--no-raw] [--keep]

--tiny: a tiny random Llama (4 layers, d 64, word-level tokenizer) and a random TopK set: a smoke test in ~1 min.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from graph_compare import compare_raw, compare_wire, encode_roundtrip  # noqa: E402
from graph_inputs import (  # noqa: E402
    bench_set,
    cache_root,
    clean_env,
    ensure_ct_venv,
    export_hf,
    log,
    neuroboard_cmd,
    set_summary,
    tiny_model,
    tiny_set,
)

PROMPT = "The capital of France is Paris. Germany's capital is"  # 11 tokens + the BOS = 12
TARGETS = {"ratio_wall_vs_ct": 1.0, "neuroboard_wall_s": 60.0}


def run_timed(cmd: list[str], env: dict, label: str) -> tuple[dict, str]:
    """Run `cmd` to its end: ({wall_s, max_rss_mb, user_s, sys_s} of this child alone, its stdout)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if p.returncode:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise SystemExit(f"{label} failed (exit {p.returncode}):\n{tail}")
    return {"wall_s": round(wall, 2), "max_rss_mb": round(ru.ru_maxrss / 1024, 1), "user_s": round(ru.ru_utime, 2),
            "sys_s": round(ru.ru_stime, 2)}, stdout


# ---- the two graphs -------------------------------------------------------------------------------------------------
def run_ct(py: Path, work: Path, mode: str, spec: dict, threads: int) -> tuple[dict, str]:
    driver = ROOT / "bench" / "ct_driver.py"  # circuit-tracer's side, run by its venv's python
    spec_path = work / f"ct_{mode}.json"
    spec_path.write_text(json.dumps(spec))
    return run_timed([str(py), str(driver), mode, str(spec_path)], clean_env(threads), f"circuit-tracer {mode}")


def run_ours(model: str, tc_dir: Path, out: Path, a) -> tuple[dict, dict]:
    cmd = [*neuroboard_cmd(), "graph", "--model", model, "--transcoders", str(tc_dir), "--prompt", a.prompt,
           "--out", str(out), "--max-logits", str(a.max_logits), "--logit-prob", str(a.logit_prob),
           "--max-feature-nodes", str(a.max_feature_nodes), "--node-threshold", str(a.node_threshold),
           "--edge-threshold", str(a.edge_threshold), "--batch-size", str(a.batch_size), "--threads",
           str(a.threads), "--slug", "bench", "--json", "--no-progress"]
    timing, stdout = run_timed(cmd, clean_env(a.threads), "neuroboard graph")
    return timing, json.loads(stdout.strip().splitlines()[-1])


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graph_settings(a) -> dict:
    return {"max_n_logits": a.max_logits, "desired_logit_prob": a.logit_prob, "batch_size": a.batch_size,
            "max_feature_nodes": a.max_feature_nodes, "node_threshold": a.node_threshold,
            "edge_threshold": a.edge_threshold}


def topk_of(tc_dir: Path) -> int | None:
    from core.saes.transcoders import load_transcoder_set

    tc = load_transcoder_set(tc_dir).transcoders[0]
    return int(tc.k) if tc.activation == "topk" else None


def ours_raw(lm, tc_dir: Path, a):
    """Our unpruned graph, built in this process with the CLI's settings."""
    from core.circuits.run import GraphConfig, build
    from core.saes.transcoders import load_transcoder_set

    cfg = GraphConfig(model=lm.name, transcoders=str(tc_dir), prompt=a.prompt, out="", max_logits=a.max_logits,
                      logit_prob=a.logit_prob, max_feature_nodes=a.max_feature_nodes, batch_size=a.batch_size)
    return build(lm, load_transcoder_set(tc_dir), cfg)


def read_raw(folder: Path) -> dict:
    """circuit-tracer's unpruned graph as the driver exported it (.npy files, read without pickle)."""
    import numpy as np

    return {f.stem: torch.from_numpy(np.load(f, allow_pickle=False)) for f in folder.glob("*.npy")}


# ---- training throughput --------------------------------------------------------------------------------------------
def train_bench(lm, model: str, a, work: Path) -> dict:
    """Tokens/s of train-transcoders on --train-layers at once against each layer alone (same tokens, settings)."""
    from core.saes.train_transcoders import TrainTranscodersConfig, parse_layers, train_transcoders

    layers = parse_layers(a.train_layers, lm.n_layers)

    def run(spec: str, name: str) -> float:
        cfg = TrainTranscodersConfig(model=model, out=str(work / name), layers=spec, tokens=a.train_tokens,
                                     latents=a.train_latents, k=min(32, a.train_latents), eval_tokens=128,
                                     threads=a.threads)
        return train_transcoders(cfg, lm=lm)["train_s"]

    log(f"training throughput: layers {layers} at once")
    together = run(",".join(map(str, layers)), "train-all")
    alone = []
    for L in layers:
        log(f"training throughput: layer {L} alone")
        alone.append(run(str(L), f"train-{L}"))
    n = a.train_tokens
    return {"layers": layers, "tokens": n, "latents": a.train_latents, "at_once_s": together,
            "one_at_a_time_s": round(sum(alone), 1), "at_once_tokens_per_s": round(n / together, 1),
            "one_at_a_time_tokens_per_s": round(n / sum(alone), 1), "ratio_at_once": round(sum(alone) / together, 2),
            "note": "tokens/s = training tokens per layer / wall time of the training loop for all the layers "
                    "(model passes included, load and evaluation excluded)"}


# ---- main -----------------------------------------------------------------------------------------------------------
def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object on one line")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--transcoders", help="a transcoder set folder (default: the demo's, else one trained here)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of every process")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-feature-nodes", type=int, default=7500)
    ap.add_argument("--max-logits", type=int, default=10)
    ap.add_argument("--logit-prob", type=float, default=0.95)
    ap.add_argument("--node-threshold", type=float, default=0.8)
    ap.add_argument("--edge-threshold", type=float, default=0.98)
    ap.add_argument("--ct-venv", type=Path, default=None, help="circuit-tracer's venv (default: "
                    "$NEUROBOARD_CACHE/bench/ctvenv; built when missing)")
    ap.add_argument("--tiny", action="store_true", help="a tiny random Llama and a random TopK set (smoke test)")
    ap.add_argument("--skip-train-bench", action="store_true")
    ap.add_argument("--train-layers", default=None, help="layers of the training bench (default 0,14,29; "
                    "--tiny: all)")
    ap.add_argument("--train-tokens", type=int, default=8192)
    ap.add_argument("--train-latents", type=int, default=2048)
    ap.add_argument("--no-raw", action="store_true", help="skip the unpruned-graph comparison (it builds our "
                    "graph a second time, in this process)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (graph files, exported model)")
    return ap.parse_args()


def prepare(a, work: Path):
    """(model name or folder, loaded model, transcoder set folder)."""
    from core.model.load import load_model

    if a.tiny:
        model = str(tiny_model(work / "tiny-model"))
        lm = load_model(model)
        tc_dir = Path(a.transcoders) if a.transcoders else tiny_set(lm, work / "tiny-set")
        a.train_layers = a.train_layers or "all"
        a.train_latents = min(a.train_latents, 256)
        return model, lm, tc_dir
    model = "smollm2-135m"
    tc_dir = Path(a.transcoders).expanduser() if a.transcoders else bench_set(model, a.threads)
    a.train_layers = a.train_layers or "0,14,29"
    return model, load_model(model), tc_dir


def main() -> None:
    a = parse_args()
    torch.set_num_threads(a.threads)
    py, ct_v = ensure_ct_venv(a.ct_venv or cache_root() / "ctvenv")
    work = Path(tempfile.mkdtemp(prefix="nb-bench-graph-"))
    try:
        result = run_all(a, py, ct_v, work)
    finally:
        if a.keep:
            log(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, separators=(",", ":")) if a.json else json.dumps(result, indent=2))


def run_all(a, py: Path, ct_v: dict, work: Path) -> dict:
    from safetensors.torch import load_file, save_file

    from core.circuits.prompt import graph_tokens
    from core.circuits.replacement import clean_pass
    from core.circuits.wire import read_wire

    model, lm, tc_dir = prepare(a, work)
    tc_dir = tc_dir.resolve()
    hf = export_hf(lm, work / "hf-model")
    ids = graph_tokens(lm, a.prompt)
    clean = clean_pass(lm, ids)
    save_file({"mlp_in": clean.mlp_in.contiguous()}, str(work / "mlp_in.safetensors"))
    k = topk_of(tc_dir)
    spec = {"model_dir": str(hf), "tc_dir": str(tc_dir), "topk": k, "threads": a.threads, "prompt": a.prompt,
            "ids": ids, "mlp_in": str(work / "mlp_in.safetensors"), "check_out": str(work / "ct_check.safetensors"),
            "out_dir": str(work / "ct-graph"), "slug": "bench", "raw_dir": None if a.no_raw else str(work / "ct-raw"),
            "settings": graph_settings(a)}
    log("circuit-tracer: logits and encodings of the exported model and set")
    _, check_stdout = run_ct(py, work, "check", spec, a.threads)
    check_info = json.loads(check_stdout.strip().splitlines()[-1])
    ct_check = load_file(str(work / "ct_check.safetensors"))
    with torch.no_grad():
        ours_logits = lm.model(input_ids=torch.tensor([ids])).logits[0].float()  # (T, V)
    result = {"model": model, "prompt": a.prompt, "prompt_tokens": len(ids), "threads": a.threads,
              "settings": graph_settings(a), "transcoders": set_summary(tc_dir), "circuit_tracer_venv": ct_v,
              "ct_topk_patched": k is not None, "topk_k": k,
              "topk_note": "circuit-tracer's TopK keeps the k largest pre-activations without a ReLU; neuroboard's "
                           "ReLUs them after the top-k (see roundtrip.topk_relu_*)",
              "logits_max_abs_diff": float((ct_check["logits"] - ours_logits).abs().max()),
              "logits_scale": float(ours_logits.abs().max()), "ct_token_ids_equal": check_info["ids"] == ids[1:]
              or check_info["ids"] == ids, "ct_loaded_set": check_info["set"]}
    from core.saes.transcoders import load_transcoder_set

    result["roundtrip"] = encode_roundtrip(load_transcoder_set(tc_dir), clean.mlp_in, ct_check)
    log("circuit-tracer: attribute + create_graph_files")
    ct_time, ct_stdout = run_ct(py, work, "graph", spec, a.threads)
    ct_info = json.loads(ct_stdout.strip().splitlines()[-1])
    log("neuroboard graph")
    (work / "nb-graph").mkdir()
    nb_time, nb_info = run_ours(model, tc_dir, work / "nb-graph" / "bench.json", a)
    log("circuit-tracer's viewer: its models read neuroboard's graph folder, its local server serves it")
    _, viewer_stdout = run_ct(py, work, "viewer", spec | {"viewer_dir": str(work / "nb-graph"),
                                                          "viewer_port": free_port()}, a.threads)
    result["viewer"] = json.loads(viewer_stdout.strip().splitlines()[-1]) | {
        "note": "the viewer page itself loads d3 and its helpers from transformer-circuits.pub and unpkg, which an "
                "offline machine cannot reach: checked here are its data models and its server"}
    result["timing"] = {"circuit_tracer": ct_time | {"inside": ct_info["seconds"]},
                        "neuroboard": nb_time | {"inside_attribute_s": nb_info["seconds"]},
                        "ratio_wall": round(nb_time["wall_s"] / ct_time["wall_s"], 3),
                        "ratio_rss": round(nb_time["max_rss_mb"] / ct_time["max_rss_mb"], 3),
                        "ratio_cpu": round((nb_time["user_s"] + nb_time["sys_s"])
                                           / (ct_time["user_s"] + ct_time["sys_s"]), 3)}
    ref = json.loads((work / "ct-graph" / "bench.json").read_text())  # 0.5.0 may repeat an id: read as is
    got = read_wire(work / "nb-graph" / "bench.json")
    result["graphs"] = {"circuit_tracer": ct_info["graph"], "neuroboard": {
        key: nb_info[key] for key in ("active_features", "feature_nodes", "kept_nodes", "links",
                                      "replacement_score", "completeness_score")}}
    result["compare_files"] = compare_wire(ref, got)
    if not a.no_raw:
        log("neuroboard's unpruned graph in this process, against circuit-tracer's")
        result["compare_raw"] = compare_raw(read_raw(Path(spec["raw_dir"])), ct_info, ours_raw(lm, tc_dir, a))
    if not a.skip_train_bench:
        result["train"] = train_bench(lm, model, a, work)
    result["targets"] = TARGETS
    result["meets"] = {"ratio_wall_vs_ct": result["timing"]["ratio_wall"] <= TARGETS["ratio_wall_vs_ct"],
                       "neuroboard_wall_s": nb_time["wall_s"] <= TARGETS["neuroboard_wall_s"],
                       "compare_files": result["compare_files"]["all_pass"],
                       "viewer_reads_it": result["viewer"]["served_list_equal"] and "bench" in result["viewer"]["graphs"]}
    return result


if __name__ == "__main__":
    main()
