"""One loader per SAE file format, each mapping its files onto core.saes.sae.SAE, and savers for SAELens and sparsify.

  format      files                                               maps
  saelens     DIR/cfg.json + sae_weights.safetensors              W_enc (d_in, d_sae), W_dec (d_sae, d_in), b_enc,
              [+ sparsity.safetensors: "sparsity", log10 of        b_dec [, threshold]; v6 configs (metadata.hook_name,
              each latent's firing fraction + 1e-10]              `k`) and pre-6 ones (hook_name, activation_fn_str,
                                                                  activation_fn_kwargs.k); architectures standard,
                                                                  topk, jumprelu (BatchTopK is saved by SAELens as
                                                                  jumprelu); TopK's rescale_acts_by_decoder_norm and
                                                                  v5's finetuning_scaling_factor folded into weights;
                                                                  our semi-NMF factors as architecture "snmf" (W_enc
                                                                  = W_decᵀ, zero biases; SAELens has no such
                                                                  architecture, so only neuroboard reads those)
  sparsify    DIR/cfg.json + sae.safetensors (one hookpoint),      encoder.weight (d_sae, d_in) transposed, encoder.bias,
              or a run folder with one such folder per            W_dec (d_sae, d_in), b_dec; TopK; b_dec subtracted
              hookpoint (layers.6, layers.6.mlp)                  from the input of an SAE, never of a transcoder
  gemmascope  params.npz (W_enc, W_dec, b_enc, b_dec, threshold)  JumpReLU, b_dec never subtracted; the site from the
                                                                  path (gemma-scope-*-res|mlp|att/layer_L/...) or --site
  transcoder  circuit-tracer's set folder: config.yaml +            one transcoder per layer, mlp_in.L -> mlp_out.L
  set         layer_L.safetensors (core.saes.transcoders)         (load_saes: every layer; a layer file: that one)

Weights are read with safetensors or NumPy (`allow_pickle=False`); a pickle (.pt, .pth, .bin, .ckpt, .pkl) is refused,
never opened. Every problem is one line (SAEError).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from core.model.sites import Site, SiteError
from core.saes.files import PICKLES, read_tensors, refuse_pickle
from core.saes.sae import SAE, SAEError

SAELENS_VERSION = "6.0.0"
"""Written into cfg.json metadata so SAELens (and Neuronpedia's tooling) parse our files as its v6 format."""


def _json(path: Path) -> dict:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SAEError(f"{path}: not a readable JSON config ({type(e).__name__})") from None
    if not isinstance(cfg, dict):
        raise SAEError(f"{path}: expected a JSON object")
    return cfg


def _need(t: dict, names: tuple[str, ...], where: Path) -> None:
    missing = [n for n in names if n not in t]
    if missing:
        raise SAEError(f"{where}: missing tensor(s) {', '.join(missing)}")


def _site_of_hook(hook: str | None, head: int | None = None) -> str:
    """A TransformerLens/SAELens hook name -> our site name ('' when the file names none)."""
    if not hook:
        return ""
    try:
        site = Site.parse(hook)
    except SiteError:
        raise SAEError(f"hook {hook!r} is not a site neuroboard can read (residual stream, attention or MLP "
                       f"outputs, z, MLP input, neurons)") from None
    if head is not None:
        if site.kind != "z":
            raise SAEError(f"hook {hook!r} with a head index: only attn.hook_z has heads")
        site = Site("z", site.layer, int(head))
    return str(site)


# ---- SAELens ----------------------------------------------------------------------------------------------------
def load_saelens(folder: Path) -> SAE:
    cfg = _json(folder / "cfg.json")
    t = read_tensors(folder / "sae_weights.safetensors")
    md = cfg.get("metadata") or {}
    version = str(md.get("sae_lens_version") or cfg.get("sae_lens_version") or "0")
    v6 = _major(version) >= 6
    arch = str(cfg.get("architecture", "standard"))
    act_fn = str(cfg.get("activation_fn") or cfg.get("activation_fn_str") or "relu")
    kwargs = cfg.get("activation_fn_kwargs") or {}
    if not v6 and act_fn == "topk":
        arch = "topk"
    activation = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu", "batchtopk": "batchtopk",
                  "snmf": "nnls"}.get(arch)
    if activation is None:
        raise SAEError(f"{folder}: SAE architecture {arch!r} is not supported (standard, topk, jumprelu, batchtopk, "
                       f"snmf)")
    if activation == "relu" and act_fn not in ("relu", "topk"):
        raise SAEError(f"{folder}: activation function {act_fn!r} is not supported (relu, topk)")
    _need(t, ("W_enc", "W_dec", "b_enc", "b_dec") + (("threshold",) if activation == "jumprelu" else ()),
          folder / "sae_weights.safetensors")
    W_enc, b_enc, W_dec = t["W_enc"].float(), t["b_enc"].float(), t["W_dec"].float()
    k = cfg.get("k", kwargs.get("k"))
    if activation == "topk" and cfg.get("rescale_acts_by_decoder_norm"):  # fold: pre·‖W_dec‖, f/‖W_dec‖
        n = W_dec.norm(dim=-1)
        W_enc, b_enc, W_dec = W_enc * n, b_enc * n, W_dec / n[:, None]
    for name in ("finetuning_scaling_factor", "scaling_factor"):  # v5: f scaled before decoding -> W_dec rows
        if name in t and not torch.all(t[name] == 1):
            W_dec = W_dec * t[name].float()[:, None]
    norm = cfg.get("normalize_activations")
    norm = "none" if norm in (None, False, "none", "expected_average_only_in", True) else str(norm)
    hook = md.get("hook_name") or cfg.get("hook_name") or cfg.get("hook_point")
    head = md.get("hook_head_index", cfg.get("hook_head_index", cfg.get("hook_point_head_index")))
    out_hook = md.get("hook_name_out") or cfg.get("hook_name_out")
    density = None
    if (folder / "sparsity.safetensors").exists():
        s = read_tensors(folder / "sparsity.safetensors")
        _need(s, ("sparsity",), folder / "sparsity.safetensors")
        density = (10 ** s["sparsity"].double() - 1e-10).clamp(min=0).float()
    return SAE(W_enc, b_enc, W_dec, t["b_dec"].float(), activation=activation,
               k=int(k) if k is not None and activation in ("topk", "batchtopk") else None,
               threshold=t.get("threshold"), b_dec_in=bool(cfg.get("apply_b_dec_to_input", True)), normalize=norm,
               site=_site_of_hook(hook, head), out_site=_site_of_hook(out_hook) or None,
               model=md.get("model_name") or cfg.get("model_name"),
               meta={"format": "saelens", "saelens_version": version, "hook_name": hook,
                     "normalize_activations": cfg.get("normalize_activations"), "path": str(folder),
                     "neuroboard": md.get("neuroboard") or {}},
               density=density)


def _major(version: str) -> int:
    m = re.match(r"\s*(\d+)", version)
    return int(m.group(1)) if m else 0


def save_saelens(sae: SAE, folder: str | Path) -> Path:
    """SAELens v6's inference format: cfg.json, sae_weights.safetensors and, when densities are known,
    sparsity.safetensors. An input scaling factor is folded into the weights first, as SAELens does."""
    if sae.W_skip is not None:
        raise SAEError("a skip transcoder is saved as a transcoder set (core.saes.transcoders); SAELens's format has "
                       "no skip connection")
    sae = sae.folded()
    if sae.activation == "batchtopk" and sae.threshold is None:
        raise SAEError("a BatchTopK SAE is saved in SAELens's format as JumpReLU, which needs its threshold")
    arch = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu", "batchtopk": "jumprelu",
            "nnls": "snmf"}[sae.activation]
    site = Site.parse(sae.site) if sae.site else None
    md = {"sae_lens_version": SAELENS_VERSION, "sae_lens_training_version": SAELENS_VERSION,
          "model_name": sae.model, "hook_name": site.tl_name() if site else None,
          "hook_head_index": site.head if site else None, "prepend_bos": True, "exclude_special_tokens": True,
          "neuroboard": _jsonable(sae.meta.get("neuroboard") or {k: v for k, v in sae.meta.items()
                                                                   if k not in ("path", "format")})}
    if sae.transcoder:
        md["hook_name_out"] = Site.parse(sae.out_site).tl_name()
    cfg = {"architecture": arch, "d_in": sae.d_in, "d_sae": sae.d_sae, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": sae.b_dec_in, "normalize_activations": sae.normalize,
           "reshape_activations": "hook_z" if site and site.kind == "z" and site.head is None else "none",
           "metadata": md}
    if sae.transcoder:
        cfg["d_out"] = sae.d_out
    if arch == "topk":
        cfg |= {"k": sae.k, "rescale_acts_by_decoder_norm": False}
    tensors = {"W_enc": sae.W_enc, "W_dec": sae.W_dec, "b_enc": sae.b_enc, "b_dec": sae.b_dec}
    if sae.threshold is not None and arch == "jumprelu":
        tensors["threshold"] = sae.threshold
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_json(out / "cfg.json", cfg)
    _atomic_tensors(out / "sae_weights.safetensors", tensors)
    if sae.density is not None:
        _atomic_tensors(out / "sparsity.safetensors", {"sparsity": torch.log10(sae.density.double() + 1e-10).float()})
    return out


# ---- sparsify ---------------------------------------------------------------------------------------------------
def _sparsify_sites(hookpoint: str, transcode: bool) -> tuple[str, str | None]:
    """sparsify hooks a module: an SAE reads its output; a transcoder reads its input and writes its output."""
    try:
        site = Site.parse(hookpoint)
    except SiteError:
        raise SAEError(f"sparsify hookpoint {hookpoint!r} is not a module neuroboard knows (layers.L, layers.L.mlp, "
                       f"layers.L.self_attn)") from None
    if not transcode:
        return str(site), None
    inp = {"resid_post": "resid_pre", "mlp_out": "mlp_in"}.get(site.kind)
    if inp is None:
        raise SAEError(f"a transcoder on {hookpoint!r}: only layers.L and layers.L.mlp are supported")
    return str(Site(inp, site.layer)), str(site)


def load_sparsify(folder: Path, hookpoint: str | None = None) -> SAE:
    cfg = _json(folder / "cfg.json")
    t = read_tensors(folder / "sae.safetensors")
    _need(t, ("encoder.weight", "encoder.bias", "W_dec", "b_dec"), folder / "sae.safetensors")
    if cfg.get("activation", "topk") != "topk":
        raise SAEError(f"{folder}: sparsify activation {cfg.get('activation')!r} is not supported (topk)")
    if cfg.get("skip_connection") or "W_skip" in t:
        raise SAEError(f"{folder}: sparsify skip connections are not supported")
    transcode = bool(cfg.get("transcode", False))
    site, out_site = _sparsify_sites(hookpoint or folder.name, transcode)
    W_enc = t["encoder.weight"].float().T  # (d_in, d_sae)
    return SAE(W_enc, t["encoder.bias"], t["W_dec"], t["b_dec"], activation="topk", k=int(cfg.get("k", 32)),
               b_dec_in=not transcode, site=site, out_site=out_site,
               meta={"format": "sparsify", "hookpoint": hookpoint or folder.name, "path": str(folder),
                     "sparsify_cfg": cfg})


def sparsify_hookpoint(sae: SAE) -> str:
    site = Site.parse(sae.out_site if sae.transcoder else sae.site)
    name = site.sparsify_name()
    if name is None or (sae.transcoder and Site.parse(sae.site).kind not in ("resid_pre", "mlp_in")):
        raise SAEError(f"sparsify has no hookpoint for {sae.site}" + (f" -> {sae.out_site}" if sae.transcoder else ""))
    return name


def save_sparsify(sae: SAE, folder: str | Path) -> Path:
    """sparsify's layout: FOLDER/<hookpoint>/cfg.json + sae.safetensors (FOLDER is a run folder). TopK only."""
    if sae.activation != "topk" or sae.normalize != "none" or sae.b_dec_in == sae.transcoder:
        raise SAEError("sparsify's format holds TopK SAEs (b_dec subtracted from the input) and transcoders "
                       "(not subtracted), without input normalisation")
    if sae.d_in != sae.d_out:
        raise SAEError("sparsify's format needs d_in == d_out")
    if sae.W_skip is not None:
        raise SAEError("this saver writes no skip connection; save a skip transcoder as a transcoder set")
    sae = sae.folded()
    out = Path(folder) / sparsify_hookpoint(sae)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"activation": "topk", "expansion_factor": max(1, sae.d_sae // sae.d_in), "normalize_decoder": True,
           "num_latents": sae.d_sae, "k": sae.k, "multi_topk": False, "skip_connection": False,
           "transcode": sae.transcoder, "d_in": sae.d_in}
    _atomic_json(out / "cfg.json", cfg)
    _atomic_tensors(out / "sae.safetensors", {"encoder.weight": sae.W_enc.T.contiguous(), "encoder.bias": sae.b_enc,
                                              "W_dec": sae.W_dec, "b_dec": sae.b_dec})
    return out


# ---- Gemma Scope ------------------------------------------------------------------------------------------------
GEMMASCOPE_KINDS = {"res": "resid_post", "mlp": "mlp_out", "att": "z"}


def load_gemmascope(path: Path, site: str | None = None) -> SAE:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {(("W" + k[1:]) if k.startswith("w_") else k): np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise SAEError(f"{path}: not a readable .npz file ({str(e).splitlines()[0][:120]})") from None
    missing = [n for n in ("W_enc", "W_dec", "b_enc", "b_dec", "threshold") if n not in arrays]
    if missing:
        raise SAEError(f"{path}: missing array(s) {', '.join(missing)} (Gemma Scope's params.npz holds W_enc, W_dec, "
                       f"b_enc, b_dec, threshold)")
    if site is None:
        m = re.search(r"gemma-scope-[^/]*-(res|mlp|att)[^/]*/layer_(\d+)/", path.as_posix())
        site = f"{GEMMASCOPE_KINDS[m.group(1)]}.{m.group(2)}" if m else ""
    t = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in arrays.items()}
    return SAE(t["W_enc"], t["b_enc"], t["W_dec"], t["b_dec"], activation="jumprelu", threshold=t["threshold"],
               b_dec_in=False, site=site, meta={"format": "gemmascope", "path": str(path)})


# ---- one entry point --------------------------------------------------------------------------------------------
def load_sae(path: str | os.PathLike, site: str | None = None) -> SAE:
    """An SAE from a SAELens folder, a sparsify hookpoint folder, a Gemma Scope params.npz or one layer_L.safetensors
    of a transcoder set (the format found from the files). A sparsify run folder holding several hookpoints, or a
    transcoder set folder, needs load_saes. `site` overrides the file's."""
    saes = load_saes(path, site)
    if len(saes) > 1:
        names = ", ".join(s.meta.get("hookpoint", s.site) for s in saes)
        one = "layer_L.safetensors file" if saes[0].meta.get("format") == "transcoder_set" else "hookpoint's folder"
        raise SAEError(f"{path} holds {len(saes)} SAEs ({names}); give one {one}")
    return saes[0]


def load_saes(path: str | os.PathLike, site: str | None = None) -> list[SAE]:
    """Every SAE at `path` (one, each hookpoint of a sparsify run folder, or each layer of a transcoder set)."""
    p = Path(path).expanduser()
    refuse_pickle(p)
    if not p.exists():
        raise SAEError(f"no SAE at {p}")
    from core.saes import transcoders

    if transcoders.is_transcoder_set(p):
        return [_with_site(tc, site) for tc in transcoders.load_transcoder_set(p).transcoders]
    if transcoders.is_layer_file(p):
        return [_with_site(transcoders.load_layer_file(p), site)]
    if p.is_file():
        if p.suffix == ".npz":
            return [_with_site(load_gemmascope(p, site), site)]
        if p.name in ("sae_weights.safetensors", "cfg.json", "sae.safetensors"):
            return load_saes(p.parent, site)
        raise SAEError(f"{p}: not an SAE file (expected a SAELens or sparsify folder, or a Gemma Scope params.npz)")
    if (p / "sae_weights.safetensors").exists() or ((p / "cfg.json").exists() and not (p / "sae.safetensors").exists()):
        return [_with_site(load_saelens(p), site)]
    if (p / "sae.safetensors").exists():
        return [_with_site(load_sparsify(p), site)]
    if (p / "params.npz").exists():
        return [_with_site(load_gemmascope(p / "params.npz", site), site)]
    subs = sorted(d for d in p.iterdir() if d.is_dir() and (d / "sae.safetensors").exists())
    if subs:
        return [_with_site(load_sparsify(d), site) for d in subs]
    pickles = [f.name for f in p.iterdir() if f.suffix.lower() in PICKLES]
    if pickles:
        raise SAEError(f"{p} holds only pickle weights ({pickles[0]}); neuroboard reads safetensors or .npz, never "
                       f"pickles")
    raise SAEError(f"{p}: no SAE files found (SAELens: cfg.json + sae_weights.safetensors; sparsify: cfg.json + "
                   f"sae.safetensors per hookpoint; Gemma Scope: params.npz)")


def _with_site(sae: SAE, site: str | None) -> SAE:
    if site:
        sae.site = str(Site.parse(site))
    return sae


# ---- writing ----------------------------------------------------------------------------------------------------
def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        if isinstance(v, (str, int, float, bool, type(None), list, dict)):
            out[k] = v
    return out


def _atomic_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _atomic_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)
