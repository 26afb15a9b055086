"""Where trained lenses live: `cache_dir()/lenses/<model key>/` holds `tuned_lens.safetensors` (the
translators; safetensors, never pickle) and `tuned_lens.json` (metadata and the training report).

The model key is the model name made path-safe (`smollm2-135m`, `org--name`); a local file or folder is keyed
by its base name plus a hash of its resolved path, so `./m` and `/abs/m` share a lens and two different
folders named `m` do not.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from core.errors import first_line
from core.lens.tuned import TunedLens, TunedLensError, TunedLensReport
from core.model.load import BUILTIN, LoadedModel, cache_dir

WEIGHTS, META = "tuned_lens.safetensors", "tuned_lens.json"


def store_key(name: str) -> str:
    path = Path(name).expanduser()
    if name not in BUILTIN and path.exists():
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        return f"{_safe(path.resolve().name)}-{digest}"
    return _safe(name.replace("/", "--"))


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("._") or "model"


def store_dir(lm_or_name: LoadedModel | str) -> Path:
    name = lm_or_name.name if isinstance(lm_or_name, LoadedModel) else lm_or_name
    return cache_dir() / "lenses" / store_key(name)


def save_tuned_lens(lens: TunedLens, report: TunedLensReport | dict | None, folder: str | Path) -> Path:
    """Write the lens (safetensors) and its metadata + report (JSON) into `folder`, each by atomic rename."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = lens.metadata()
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in lens.state_dict().items()}
    tmp = folder / f"{WEIGHTS}.tmp{os.getpid()}"
    save_file(tensors, str(tmp), metadata={k: str(v) for k, v in meta.items()})
    os.replace(tmp, folder / WEIGHTS)
    rep = report.to_dict() if isinstance(report, TunedLensReport) else report
    tmp = folder / f"{META}.tmp{os.getpid()}"
    tmp.write_text(json.dumps({**meta, "report": rep}, indent=1), encoding="utf-8")
    os.replace(tmp, folder / META)
    return folder


def _shape(path: Path) -> tuple[int, int]:
    """(n_layers, d_model) from the tensors' own shapes (header only): n translators serve n + 1 blocks."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        keys = [k for k in f.keys() if k.endswith(".weight")]
        d = f.get_slice(keys[0]).get_shape()[0] if keys else 0
    return len(keys) + 1, int(d)


def load_tuned_lens(lm: LoadedModel, folder: str | Path | None = None) -> TunedLens | None:
    """The stored tuned lens for `lm` (None if there is none); TunedLensError, one line, if it is unreadable
    or was trained for another shape."""
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else store_dir(lm)
    path = folder / WEIGHTS
    if not path.is_file():
        return None
    try:
        n_layers, d_model = _shape(path)
        if (n_layers, d_model) != (lm.n_layers, lm.parts.d_model):
            raise TunedLensError(f"tuned lens {path} is for {n_layers} layers x d_model {d_model}, but "
                                 f"{lm.name} has {lm.n_layers} x {lm.parts.d_model}; retrain it with "
                                 "`neuroboard train-lens`")
        lens = TunedLens(n_layers, d_model, read_meta(folder).get("model", lm.name))
        lens.load_state_dict(load_file(str(path)), strict=True)
    except TunedLensError:
        raise
    except Exception as e:  # a truncated or foreign file, broken JSON, missing or odd tensors
        raise TunedLensError(f"cannot read tuned lens {path}: {first_line(e)}") from None
    return lens.eval().requires_grad_(False)


def read_meta(folder: str | Path) -> dict:
    """The stored JSON (model, n_layers, d_model, report), or {} if absent."""
    path = Path(folder) / META
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
