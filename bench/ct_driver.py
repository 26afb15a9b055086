"""circuit-tracer's side of bench/graph.py, run by circuit-tracer's own venv: `ct_driver.py check|graph|viewer SPEC.json`.

`check` loads the exported model with transformers 4.57 (logits, token ids) and the set with circuit-tracer's loader
(pre-activations and activations of the given MLP inputs); `graph` runs attribute + create_graph_files and exports
the unpruned graph as .npy files; `viewer` validates and serves neuroboard's graph folder with circuit-tracer's
viewer models and local server. Never imported by neuroboard.
"""
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
