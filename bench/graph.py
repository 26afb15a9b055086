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
   (a driver script written to a temp folder), and `neuroboard graph` (the CLI) in a subprocess, with the same
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

DRIVER = r'''"""circuit-tracer's side of bench/graph.py, run by its own venv: `driver.py check|graph|viewer SPEC.json`."""
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

mode, spec = sys.argv[1], json.load(open(sys.argv[2]))
torch.set_num_threads(spec["threads"])
CPU = torch.device("cpu")


def transcoders():
    """The set through circuit-tracer's local-folder loader (load_transcoder_set), TopK swapped in when asked."""
    from circuit_tracer.utils.hf_utils import load_transcoder_from_hub

    ts, config = load_transcoder_from_hub(spec["tc_dir"], device=CPU, dtype=torch.float32)
    if spec["topk"]:
        from circuit_tracer.transcoder.activation_functions import TopK

        for t in ts:
            t.activation_function = TopK(spec["topk"])
    return ts, config


def check():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m = AutoModelForCausalLM.from_pretrained(spec["model_dir"], torch_dtype=torch.float32).eval()
    ids = AutoTokenizer.from_pretrained(spec["model_dir"])(spec["prompt"], add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = m(torch.tensor([spec["ids"]])).logits[0].float()
    ts, config = transcoders()
    x = load_file(spec["mlp_in"])["mlp_in"]  # (L, T, d)
    with torch.no_grad():
        pre = torch.stack([t.encode(x[i], apply_activation_function=False) for i, t in enumerate(ts)])
        acts = torch.stack([t.encode(x[i]) for i, t in enumerate(ts)])
    save_file({"logits": logits.contiguous(), "pre": pre.contiguous(), "acts": acts.contiguous()}, spec["check_out"])
    info = {"layers": len(ts), "d_transcoder": ts.d_transcoder, "scan": ts.scan,
            "activation": type(ts[0].activation_function).__name__, "skip": ts.skip_connection}
    print(json.dumps({"ids": ids, "set": info}))


def graph():
    t0 = time.perf_counter()
    from circuit_tracer import ReplacementModel, attribute
    from circuit_tracer.utils import create_graph_files

    t1 = time.perf_counter()
    ts, config = transcoders()
    model = ReplacementModel.from_pretrained_and_transcoders(spec["model_dir"], ts, backend="nnsight", device=CPU,
                                                             dtype=torch.float32)
    t2 = time.perf_counter()
    s = spec["settings"]
    g = attribute(spec["prompt"], model, max_n_logits=s["max_n_logits"], desired_logit_prob=s["desired_logit_prob"],
                  batch_size=s["batch_size"], max_feature_nodes=s["max_feature_nodes"])
    t3 = time.perf_counter()
    create_graph_files(g, slug=spec["slug"], output_path=spec["out_dir"], node_threshold=s["node_threshold"],
                       edge_threshold=s["edge_threshold"])
    t4 = time.perf_counter()
    if spec["raw_dir"]:  # the unpruned graph, written without copies (.npy, no pickle)
        import numpy as np

        os.makedirs(spec["raw_dir"], exist_ok=True)
        for name, t in {"adjacency": g.adjacency_matrix.float(), "active": g.active_features.long(),
                        "activations": g.activation_values.float(), "selected": g.selected_features.long(),
                        "tokens": g.input_tokens.long(), "logit_probs": g.logit_probabilities.float()}.items():
            np.save(os.path.join(spec["raw_dir"], name + ".npy"), t.detach().cpu().contiguous().numpy())
    doc = json.load(open(os.path.join(spec["out_dir"], spec["slug"] + ".json")))
    info = {"active_features": int(g.active_features.shape[0]), "feature_nodes": int(len(g.selected_features)),
            "kept_nodes": len(doc["nodes"]), "links": len(doc["links"])}
    print(json.dumps({"seconds": {"import_s": round(t1 - t0, 2), "load_s": round(t2 - t1, 2),
                                  "attribute_s": round(t3 - t2, 2), "graph_files_s": round(t4 - t3, 2)},
                      "logit_ids": [int(t.vocab_idx) for t in g.logit_targets], "n_layers": g.cfg.n_layers,
                      "graph": info}))


def viewer():
    """circuit-tracer's viewer side of a graph folder neuroboard wrote: its pydantic models (frontend/graph_models.py)
    read the list and every graph, and its local server (frontend/local_server.py) serves them as the viewer asks."""
    import gzip
    import urllib.request

    from circuit_tracer.frontend.graph_models import Metadata, Model
    from circuit_tracer.frontend.local_server import serve

    folder = spec["viewer_dir"]
    listed = [Metadata(**g) for g in json.load(open(os.path.join(folder, "graph-metadata.json")))["graphs"]]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(path):
        with opener.open(f"http://127.0.0.1:{spec['viewer_port']}{path}", timeout=60) as r:
            body = r.read()
            return gzip.decompress(body) if r.headers.get("Content-Encoding") == "gzip" else body

    server = serve(data_dir=folder, port=spec["viewer_port"])
    try:
        page = get("/index.html").decode()
        served = json.loads(get("/data/graph-metadata.json"))["graphs"]
        graphs = {}
        for m in listed:
            doc = Model.model_validate(json.loads(get(f"/graph_data/{m.slug}.json")))
            graphs[m.slug] = {"nodes": len(doc.nodes), "links": len(doc.links), "prompt_tokens": len(
                doc.metadata.prompt_tokens), "feature_types": sorted({n.feature_type for n in doc.nodes})}
    finally:
        server.stop()
    print(json.dumps({"listed": [m.slug for m in listed], "served_list_equal": [g["slug"] for g in served] == [
        m.slug for m in listed], "index_html": "Attribution Graphs" in page, "graphs": graphs}))


{"check": check, "graph": graph, "viewer": viewer}[mode]()
'''
"""The driver circuit-tracer's venv runs (written to the work folder): `check` loads the exported model with
transformers 4.57 (logits, token ids) and the set with circuit-tracer's loader (pre-activations and activations of
the given MLP inputs); `graph` runs attribute + create_graph_files and exports the unpruned graph as safetensors;
`viewer` validates and serves neuroboard's graph folder with circuit-tracer's viewer models and local server."""


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
    driver = work / "ct_driver.py"
    driver.write_text(DRIVER)
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
