"""A manifest: everything a finding's numbers depend on, so anyone can recompute them (`neuroboard recheck`).

  model        name, what was loaded, architecture, and `weights_sha256`: SHA-256 over every parameter and buffer
               (name, dtype, shape, bytes; in name order), so a perturbed weight changes it
  tokenizer    class, vocabulary size and `vocab_sha256` (the sorted token → id table)
  run          the index run's configuration (corpus, token slice, context length, layers, SAEs), when the view
               reads an index
  analysis     the view's own parameters (its URL query), seeds
  versions     neuroboard (git commit when run from a checkout, else the package version), torch, transformers,
               python
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from functools import cache
from pathlib import Path

_HASHES: dict[tuple[str, int], str] = {}


def weights_sha256(model) -> str:
    """SHA-256 of a torch module's parameters and buffers (cached per module object)."""
    import torch

    key = (type(model).__name__, id(model))
    if key not in _HASHES:
        h = hashlib.sha256()
        state = model.state_dict()
        for name in sorted(state):
            t = state[name].detach().contiguous().cpu()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def tokenizer_info(tok) -> dict:
    vocab = tok.get_vocab()
    blob = json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()
    return {"class": type(tok).__name__, "vocab_size": len(vocab), "vocab_sha256": hashlib.sha256(blob).hexdigest()}


@cache
def versions() -> dict:
    import torch
    import transformers

    root = Path(__file__).resolve().parents[2]
    commit = None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        commit = out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg = version("neuroboard")
    except PackageNotFoundError:  # not installed as a package
        pkg = None
    return {"neuroboard": commit or pkg, "neuroboard_git": commit is not None, "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def model_info(lm) -> dict:
    return lm.info() | {"weights_sha256": weights_sha256(lm.model), "tokenizer": tokenizer_info(lm.tokenizer)}


def manifest(page: str, params: dict, *, lm=None, run=None, seeds: dict | None = None) -> dict:
    """The manifest of a view (module docstring); `run`: core.index.queries.RunInfo when the view reads an index."""
    out = {"page": page, "analysis": dict(params), "seeds": seeds or {}, "versions": versions()}
    if lm is not None:
        out["model"] = model_info(lm)
    if run is not None:
        out["run"] = {"run_id": run.run_id, "model": run.model, "corpus": run.corpus, "tokens": run.tokens,
                      "config": run.config}
    return out
