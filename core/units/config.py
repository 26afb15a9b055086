"""ExtractConfig: the settings of `neuroboard extract` (one dataclass; the CLI's flags are made from it),
parse_layers and ExtractError (bad extraction input, one line)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from core.errors import UserError


class ExtractError(UserError):
    """Bad extraction input; one line."""


@dataclass
class ExtractConfig:
    model: str
    """Built-in name, .gguf file, model folder or hub id."""
    db: str
    """Path of the DuckDB index (created if missing)."""
    corpus: str = "demo"
    """'demo', a .txt/.jsonl/.csv/.parquet file, or a Hugging Face dataset name."""
    max_tokens: int = 100_000
    """Stop after this many tokens (the last document is cut)."""
    context_len: int = 128
    """Window length T: documents are cut into contiguous slices of at most T tokens."""
    layers: str = "all"
    """Layers to index: 'all', '5', or '0-3,7'."""
    top_k: int = 64
    """Exact top-K activating tokens kept per unit."""
    samples: int = 8
    """Interval samples per interval (S)."""
    hist_bins: int = 128
    """Histogram bins on each side of zero."""
    ctx_examples: int = 16
    """Store each unit's activation around its first this-many top examples (the neuron page colours them)."""
    ctx_window: int = 16
    """Tokens each side of the example's token in that stored context."""
    batch_tokens: int = 4096
    """Padded tokens per forward pass."""
    chunk_tokens: int = 32_768
    """Tokens per commit + checkpoint."""
    preview_tokens: int = 0
    """Also publish per-unit results once the first this-many tokens are indexed (the first chunk ends there), so
    the pages open long before the run ends; 0: results only at the end."""
    include_special: bool = False
    """Count special tokens (BOS/EOS) in unit statistics; they always feed the model as context."""
    sae: list[str] = field(default_factory=list)
    """Also index the features of this SAE (a SAELens or sparsify folder, a Gemma Scope params.npz, or a transcoder
    set folder: every layer's transcoder), in the same pass (repeatable)."""
    sae_map: bool = True
    """Compute each SAE's feature map (UMAP of decoder directions) when the run completes."""
    capture: str = ""
    """Also cache this site's activations (e.g. resid_post.15) on the counted tokens, float16, for `train-sae
    --acts` (an activation cache written in the same pass)."""
    capture_dir: str = ""
    """Folder of that cache (default: INDEX.acts/<model>-<site>)."""
    trust_remote_code: bool = False
    """Allow a hub model's own Python code to run."""
    device: str = "cpu"
    """Where the model runs: cpu, cuda, cuda:N or mps (the statistics are kept on the CPU, in float32)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """The model's weights and activations."""
    threads: int | None = None
    """torch threads (default: torch's choice; on Ray, each task's --ray-cpus)."""
    ray: str | None = None
    """Run the forward passes as Ray tasks over shards of documents: '' or 'local' starts a local cluster (or joins
    $RAY_ADDRESS), else a cluster address (auto, HOST:6379, ray://HOST:10001). The index equals one process's."""
    shard_chunks: int = 4
    """With --ray: chunks (--chunk-tokens each) per task; the unit of work and of resume."""
    ray_cpus: int = 1
    """With --ray: CPUs per task (its torch threads unless --threads)."""

    def identity(self) -> dict:
        """What must match for --resume to continue a run (with or without --ray: the chunks are the same)."""
        d = asdict(self)
        for k in ("db", "threads", "trust_remote_code", "sae_map", "capture", "capture_dir", "ray", "shard_chunks",
                  "ray_cpus"):
            d.pop(k)
        if not d["preview_tokens"]:  # runs made before the field existed match a config without a preview
            d.pop("preview_tokens")
        if not d["sae"]:  # likewise for runs without SAEs
            d.pop("sae")
        else:
            d["sae"] = [str(Path(p).expanduser().resolve()) for p in d["sae"]]
        if d["device"] == "cpu" and d["dtype"] == "float32":  # and for runs on the defaults
            d.pop("device")
            d.pop("dtype")
        return d


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """'all' | '5' | '0-3,7' -> sorted unique layer indices; ExtractError if malformed or out of range."""
    spec = str(spec).strip().lower()
    if spec == "all":
        return list(range(n_layers))
    out: set[int] = set()
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?", part)
        if not m:
            raise ExtractError(f"--layers {spec!r}: expected 'all', a layer like 5, or ranges like 0-3,7")
        a, b = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
        if a > b:
            raise ExtractError(f"--layers {spec!r}: range {a}-{b} is reversed")
        if a < 0 or b >= n_layers:
            raise ExtractError(f"--layers {spec!r}: out of range, this model has layers 0-{n_layers - 1}")
        out.update(range(a, b + 1))
    return sorted(out)
