"""Transcoder sets: one transcoder per layer (MLP input -> MLP output), in circuit-tracer's folder format.

    DIR/config.yaml                  model_kind: transcoder_set
                                     feature_input_hook: mlp.hook_in        (our mlp_in.L: the MLP's normed input)
                                     feature_output_hook: mlp.hook_out      (our mlp_out.L; circuit-tracer names it
                                                                             hook_mlp_out on Gemma, whose post-MLP
                                                                             norm output is our mlp_out: both read)
                                     transcoders: [layer_0.safetensors, ...] (layer order; optional: circuit-tracer's
                                                                             folder loader globs layer_*.safetensors)
                                     scan, model_name                        (optional)
                                     activation: relu|topk|jumprelu, k       (decoderesearch's circuit-tracer after
                                                                             0.5.0 reads these for TopK; 0.5.0
                                                                             ignores them and treats TopK as ReLU)
    DIR/layer_{L}.safetensors        W_enc [d_transcoder, d_model]   pre = x W_encᵀ + b_enc (no b_dec subtracted)
                                     b_enc [d_transcoder]
                                     W_dec [d_transcoder, d_model]   ŷ = f W_dec + b_dec + x W_skipᵀ
                                     b_dec [d_model]
                                     activation_function.threshold [d_transcoder]   (JumpReLU; optional)
                                     W_skip [d_model, d_model]                      (skip transcoder; optional)
                                     k (a scalar; read, never written: circuit-tracer's own TopK saver writes it,
                                        and 0.5.0's strict load_state_dict rejects it, so our k lives in config.yaml)

Onto core.saes.sae.SAE: W_enc and W_skip are transposed (ours are (d_in, d_out)-oriented), b_dec_in=False, site
mlp_in.L, out_site mlp_out.L. Activations agree with circuit-tracer's where they can:
  relu      the same.
  jumprelu  circuit-tracer computes x·[x > θ]; ours relu(x)·[x > θ]: equal for θ ≥ 0. A negative threshold would let
            negative activations through there and not here, so it is refused (on load and on save).
  topk      circuit-tracer keeps the k largest pre-activations without a ReLU; ours (sparsify's, SAELens's, what
            train-transcoders trains) ReLUs them: equal on every token whose k-th largest pre-activation is ≥ 0.
Tensors are read with safetensors only (a pickle is refused, never opened); any problem is one line (SAEError) and
loading writes nothing. Saving is atomic: a temporary folder beside the target, renamed into place.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from core.model.sites import Site
from core.saes.files import PICKLES, read_tensors, refuse_pickle
from core.saes.sae import SAE, SAEError, check_for_model

INPUT_HOOKS = {"mlp.hook_in": "mlp_in"}
OUTPUT_HOOKS = {"mlp.hook_out": "mlp_out", "hook_mlp_out": "mlp_out"}
"""circuit-tracer's hook names (TransformerLens style, without blocks.L) -> our site kinds."""
ACTIVATIONS = ("relu", "topk", "jumprelu")
KEYS = ("W_enc", "b_enc", "W_dec", "b_dec")
OPTIONAL = ("activation_function.threshold", "W_skip", "k")
LAYER_FILE = re.compile(r"layer_(0|[1-9][0-9]*)\.safetensors")


@dataclass
class TranscoderSet:
    transcoders: list[SAE]
    """One per layer, in `layers` order; each reads mlp_in.L and writes mlp_out.L."""
    layers: list[int]
    """The layers, strictly increasing (circuit-tracer needs every layer 0..L-1; neuroboard reads any subset)."""
    input_hook: str = "mlp.hook_in"
    """circuit-tracer's name of the input site."""
    output_hook: str = "mlp.hook_out"
    """circuit-tracer's name of the output site (hook_mlp_out on a model with a post-MLP norm)."""
    scan: str | None = None
    """The set's id in circuit-tracer's graph files."""
    path: str | None = None
    """The folder it was read from."""
    model: str | None = None
    """The model it was trained on, as config.yaml's model_name says."""
    meta: dict = field(default_factory=dict)
    """Anything else worth keeping (training settings, quality)."""

    def __post_init__(self) -> None:
        if not self.transcoders or len(self.transcoders) != len(self.layers):
            raise SAEError(f"a transcoder set needs one transcoder per layer (got {len(self.transcoders)} "
                           f"for {len(self.layers)} layers)")
        if any(b <= a for a, b in zip(self.layers, self.layers[1:], strict=False)) or self.layers[0] < 0:
            raise SAEError(f"a transcoder set's layers must be distinct, non-negative, increasing (got {self.layers})")
        _hook_kinds(self.input_hook, self.output_hook)
        first = self.transcoders[0]
        for L, tc in zip(self.layers, self.transcoders, strict=True):
            if tc.site != f"mlp_in.{L}" or tc.out_site != f"mlp_out.{L}":
                raise SAEError(f"layer {L}'s transcoder reads {tc.site or '?'} -> {tc.out_site}, not "
                               f"mlp_in.{L} -> mlp_out.{L}")
            if (tc.W_skip is None) != (first.W_skip is None):
                raise SAEError("either every transcoder of a set has a skip connection or none has")

    @property
    def d_transcoder(self) -> int:
        return self.transcoders[0].d_sae

    @property
    def skip(self) -> bool:
        return self.transcoders[0].W_skip is not None

    def by_layer(self) -> dict[int, SAE]:
        return dict(zip(self.layers, self.transcoders, strict=True))


def _hook_kinds(input_hook: object, output_hook: object) -> tuple[str, str]:
    if input_hook not in INPUT_HOOKS:
        raise SAEError(f"feature_input_hook {input_hook!r} is not one neuroboard reads (known: "
                       f"{', '.join(INPUT_HOOKS)})")
    if output_hook not in OUTPUT_HOOKS:
        raise SAEError(f"feature_output_hook {output_hook!r} is not one neuroboard reads (known: "
                       f"{', '.join(OUTPUT_HOOKS)})")
    return INPUT_HOOKS[input_hook], OUTPUT_HOOKS[output_hook]


# ---- reading ------------------------------------------------------------------------------------------------------
def is_transcoder_set(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder with a config.yaml (what load_transcoder_set reads)."""
    p = Path(path).expanduser()
    return p.is_dir() and (p / "config.yaml").is_file()


def _config(folder: Path) -> dict:
    f = folder / "config.yaml"
    if not f.is_file():
        raise SAEError(f"{folder}: no config.yaml (a transcoder set folder holds config.yaml and layer_L.safetensors)")
    try:
        cfg = yaml.safe_load(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise SAEError(f"{f}: not a readable YAML file ({type(e).__name__})") from None
    if not isinstance(cfg, dict):
        raise SAEError(f"{f}: expected a YAML mapping")
    if cfg.get("model_kind") != "transcoder_set":
        raise SAEError(f"{f}: model_kind {cfg.get('model_kind')!r} is not supported (transcoder_set; cross-layer "
                       f"transcoders are not read)")
    return cfg


def _layer_files(folder: Path, cfg: dict) -> dict[int, Path]:
    """{layer: file}: the folder's layer_*.safetensors (circuit-tracer globs them), checked against `transcoders:`."""
    names = sorted(f.name for f in folder.iterdir() if f.name.startswith("layer_"))
    pickles = [n for n in names if Path(n).suffix.lower() in PICKLES]
    if pickles:
        raise SAEError(f"{folder / pickles[0]} is a pickle file; transcoder weights are only read from safetensors "
                       f"(a pickle can run code when opened)")
    bad = [n for n in names if n.endswith(".safetensors") and not LAYER_FILE.fullmatch(n)]
    if bad:
        raise SAEError(f"{folder / bad[0]}: a layer file is named layer_L.safetensors (L a layer number)")
    found = {int(LAYER_FILE.fullmatch(n)[1]): folder / n for n in names if LAYER_FILE.fullmatch(n)}
    listed = cfg.get("transcoders")
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(x, str) for x in listed):
            raise SAEError(f"{folder / 'config.yaml'}: transcoders must be a list of file paths")
        local = [x for x in listed if "://" not in x]  # hf:// URIs: circuit-tracer's folder loader ignores them too
        for x in local:
            refuse_pickle(Path(x))
            if not LAYER_FILE.fullmatch(Path(x).name) or not (folder / Path(x).name).is_file():
                raise SAEError(f"{folder / 'config.yaml'} lists {x}: no such layer_L.safetensors file in {folder}")
        if local and sorted(Path(x).name for x in local) != sorted(f.name for f in found.values()):
            extra = sorted(set(f.name for f in found.values()) - {Path(x).name for x in local})
            raise SAEError(f"{folder}: holds {', '.join(extra)}, which config.yaml's transcoders list leaves out")
    if not found:
        raise SAEError(f"{folder}: no layer_L.safetensors files")
    return dict(sorted(found.items()))


def _activation(cfg: dict, where: Path) -> tuple[str | None, int | None]:
    act, k = cfg.get("activation"), cfg.get("k")
    if act is not None and act not in ACTIVATIONS:
        raise SAEError(f"{where}: activation {act!r} is not supported ({', '.join(ACTIVATIONS)})")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise SAEError(f"{where}: k must be a positive integer (got {k!r})")
    if act == "topk" and k is None:
        raise SAEError(f"{where}: activation topk needs k")
    return act, k


def _transcoder(f: Path, layer: int, act: str | None, k: int | None, model: str | None) -> SAE:
    t = read_tensors(f)
    missing = [n for n in KEYS if n not in t]
    extra = sorted(set(t) - set(KEYS) - set(OPTIONAL))
    if missing or extra:
        what = f"missing tensor(s) {', '.join(missing)}" if missing else f"unexpected tensor(s) {', '.join(extra)}"
        raise SAEError(f"{f}: {what} (a layer file holds W_enc, b_enc, W_dec, b_dec[, "
                       f"activation_function.threshold, W_skip])")
    W_enc, W_dec, b_enc, b_dec = (t[n].float() for n in ("W_enc", "W_dec", "b_enc", "b_dec"))
    if W_enc.ndim != 2 or W_dec.ndim != 2 or W_enc.shape[0] != W_dec.shape[0]:
        raise SAEError(f"{f}: W_enc {tuple(W_enc.shape)} and W_dec {tuple(W_dec.shape)} must both be "
                       f"[d_transcoder, d_model]")
    W_skip = t.get("W_skip")
    if W_skip is not None and tuple(W_skip.shape) != (W_dec.shape[1], W_enc.shape[1]):
        raise SAEError(f"{f}: W_skip has shape {tuple(W_skip.shape)}, expected [d_out, d_in] = "
                       f"{[W_dec.shape[1], W_enc.shape[1]]}")
    theta = t.get("activation_function.threshold")
    if "k" in t:
        if t["k"].numel() != 1 or (k is not None and int(t["k"].item()) != k):
            raise SAEError(f"{f}: its k tensor ({t['k'].tolist()}) disagrees with config.yaml's k ({k})")
        k, act = int(t["k"].item()), act or "topk"
    if theta is not None:
        if act not in (None, "jumprelu"):
            raise SAEError(f"{f}: a JumpReLU threshold in a set whose config.yaml says activation {act}")
        act = "jumprelu"
        theta = theta.float()
        if theta.shape == W_enc.shape[:1] and bool((theta < 0).any()):
            raise SAEError(f"{f}: a negative JumpReLU threshold ({float(theta.min()):g}) passes negative "
                           f"activations in circuit-tracer (x·[x > θ]) but not here (relu(x)·[x > θ])")
    elif act == "jumprelu":
        raise SAEError(f"{f}: activation jumprelu needs activation_function.threshold")
    act = act or "relu"
    try:
        return SAE(W_enc.T, b_enc, W_dec, b_dec, activation=act, k=k if act == "topk" else None, threshold=theta,
                   b_dec_in=False, site=f"mlp_in.{layer}", out_site=f"mlp_out.{layer}", model=model,
                   meta={"format": "transcoder_set", "path": str(f), "layer": layer,
                         "name": f"{f.parent.name}/layer_{layer}"},
                   W_skip=None if W_skip is None else W_skip.float().T)
    except SAEError as e:
        raise SAEError(f"{f}: {e}") from None


def load_transcoder_set(path: str | os.PathLike) -> TranscoderSet:
    """The set in `path` (a folder, or its config.yaml); SAEError (one line) on any problem."""
    p = Path(path).expanduser()
    refuse_pickle(p)
    if p.is_file() and p.name == "config.yaml":
        p = p.parent
    if not p.is_dir():
        raise SAEError(f"no transcoder set folder at {p}")
    cfg = _config(p)
    _hook_kinds(cfg.get("feature_input_hook"), cfg.get("feature_output_hook"))
    act, k = _activation(cfg, p / "config.yaml")
    model = cfg.get("model_name")
    model = None if model is None else str(model)
    files = _layer_files(p, cfg)
    tcs = [_transcoder(f, L, act, k, model) for L, f in files.items()]
    for tc in tcs:
        tc.meta["set"] = str(p)
    scan = cfg.get("scan")
    return TranscoderSet(tcs, list(files), cfg["feature_input_hook"], cfg["feature_output_hook"],
                         scan=None if scan is None else str(scan), path=str(p), model=model)


def load_layer_file(path: str | os.PathLike) -> SAE:
    """One layer's transcoder from its layer_L.safetensors, read with its set's config.yaml (what an index records
    for each layer of a set it indexed)."""
    f = Path(path).expanduser()
    m = LAYER_FILE.fullmatch(f.name)
    if m is None or not f.is_file():
        raise SAEError(f"{f}: not a transcoder set's layer_L.safetensors file")
    cfg = _config(f.parent)
    _hook_kinds(cfg.get("feature_input_hook"), cfg.get("feature_output_hook"))
    act, k = _activation(cfg, f.parent / "config.yaml")
    model = cfg.get("model_name")
    tc = _transcoder(f, int(m[1]), act, k, None if model is None else str(model))
    tc.meta["set"] = str(f.parent)
    return tc


def is_layer_file(path: str | os.PathLike) -> bool:
    """Whether `path` is a layer_L.safetensors file beside a config.yaml (one layer of a transcoder set)."""
    p = Path(path).expanduser()
    return p.is_file() and LAYER_FILE.fullmatch(p.name) is not None and (p.parent / "config.yaml").is_file()


# ---- checking against a model -------------------------------------------------------------------------------------
def check_set_for_model(ts: TranscoderSet, lm, *, full: bool) -> None:
    """SAEError (one line) unless every transcoder fits this model: hooks known, layers within the model (every layer
    0..L-1 when `full`, as circuit-tracer's replacement model needs), widths equal to the model's."""
    _hook_kinds(ts.input_hook, ts.output_hook)
    n = lm.n_layers
    extra = [L for L in ts.layers if L >= n]
    if extra:
        raise SAEError(f"the transcoder set has layer(s) {', '.join(map(str, extra))} but {lm.name} has layers "
                       f"0-{n - 1}")
    missing = sorted(set(range(n)) - set(ts.layers))
    if full and missing:
        raise SAEError(f"the transcoder set lacks layer(s) {_ranges(missing)} of {lm.name}'s {n}; an attribution "
                       f"graph needs a transcoder for every layer")
    for L, tc in zip(ts.layers, ts.transcoders, strict=True):
        try:
            check_for_model(tc, lm)
        except SAEError as e:
            raise SAEError(f"layer {L}: {e}") from None


def _ranges(xs: list[int]) -> str:
    return ", ".join(map(str, xs)) if len(xs) <= 6 else f"{', '.join(map(str, xs[:5]))}, ... ({len(xs)} layers)"


# ---- writing ------------------------------------------------------------------------------------------------------
def set_config(ts: TranscoderSet) -> dict:
    """config.yaml's contents for `ts` (circuit-tracer's keys first)."""
    tc = ts.transcoders[0]
    cfg = {"model_kind": "transcoder_set", "feature_input_hook": ts.input_hook,
           "feature_output_hook": ts.output_hook, "transcoders": [f"layer_{L}.safetensors" for L in ts.layers],
           "scan": ts.scan or (Path(ts.path).name if ts.path else "neuroboard"), "model_name": ts.model,
           "activation": tc.activation}
    if tc.activation == "topk":
        cfg["k"] = int(tc.k)
    return {k: v for k, v in cfg.items() if v is not None}


def _tensors_of(tc: SAE, layer: int) -> dict[str, torch.Tensor]:
    if tc.activation not in ACTIVATIONS or tc.normalize != "none" or tc.b_dec_in:
        raise SAEError(f"layer {layer}: circuit-tracer's format holds relu, topk and jumprelu transcoders without "
                       f"input normalisation or b_dec subtracted from the input")
    tc = tc.folded()
    t = {"W_enc": tc.W_enc.T, "W_dec": tc.W_dec, "b_enc": tc.b_enc, "b_dec": tc.b_dec}
    if tc.activation == "jumprelu":
        if bool((tc.threshold < 0).any()):
            raise SAEError(f"layer {layer}: a negative JumpReLU threshold means another function in circuit-tracer")
        t["activation_function.threshold"] = tc.threshold
    if tc.W_skip is not None:
        t["W_skip"] = tc.W_skip.T
    return {k: v.detach().cpu().float().contiguous() for k, v in t.items()}


def save_transcoder_set(ts: TranscoderSet, path: str | os.PathLike, *, extra: dict[str, str] | None = None) -> Path:
    """Write `ts` to the folder `path` in circuit-tracer's format, atomically; `extra` {file name: text} adds files
    (quality.json). An existing folder is replaced only when it is empty or a transcoder set."""
    from safetensors.torch import save_file

    out = Path(path).expanduser()
    acts = {(tc.activation, tc.k if tc.activation == "topk" else None) for tc in ts.transcoders}
    if len(acts) > 1:
        raise SAEError(f"a set's transcoders share one activation (and k) in config.yaml; got {sorted(map(str, acts))}")
    tensors = {L: _tensors_of(tc, L) for L, tc in zip(ts.layers, ts.transcoders, strict=True)}
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or is_transcoder_set(out))):
        raise SAEError(f"{out} exists and is not a transcoder set folder; give a new --out")
    tmp = out.parent / f".{out.name}.tmp{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for L, t in tensors.items():
            save_file(t, str(tmp / f"layer_{L}.safetensors"))
        (tmp / "config.yaml").write_text(yaml.safe_dump(set_config(ts), sort_keys=False), encoding="utf-8")
        for name, text in (extra or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        _swap(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SAEError(f"cannot write {out}: {e.strerror or e}") from None
    return out


def _swap(tmp: Path, out: Path) -> None:
    """Rename `tmp` to `out`; an old `out` is moved aside first and removed after."""
    old = out.parent / f".{out.name}.old{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def site_pair(layer: int) -> tuple[Site, Site]:
    """(mlp_in.L, mlp_out.L): where a set's transcoder of layer L reads and writes."""
    return Site("mlp_in", layer), Site("mlp_out", layer)
