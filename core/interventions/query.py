"""What `neuroboard steer`, `patch` and `backpatch` compute, one config dataclass each (the config is the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.model.load import load_model


@dataclass
class SteerQuery:
    model: str
    """Built-in name, .gguf file, model folder or hub id."""
    layer: int
    """Steer after this block (resid_post.L); a feature's or neuron's direction is still added here."""
    direction: str
    """diffmeans:SET | pca:SET | probe:SET (SET: truth, sentiment or a text,label[,group] CSV) | feature:SAE:F |
    neuron:L:U | file:PATH.safetensors."""
    alpha: float
    """Strength in units of the stream's typical norm at the layer (the median ‖resid_post.L‖ over demo tokens)."""
    prompt: str
    """The prompt to continue."""
    tokens: int = 32
    """Tokens to generate."""
    start: int | None = None
    """Steer prompt positions from this one on (default: every position); generated tokens are always steered."""
    positive: str | None = None
    """The positive label of a prompt set (default: its first label)."""
    seed: int = 0
    """Seed of the sampled continuations."""
    ablate: bool = False
    """Directional ablation instead of steering: the direction removed from every write into the stream, at every
    layer and position (--alpha is then unused; --layer still says where a prompt-set direction is made)."""
    device: str = "cpu"
    """Where the model runs: cpu, cuda, cuda:N or mps."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """The model's weights and activations (edits are made in float32 and cast)."""
    trust_remote_code: bool = False
    """Allow a hub model's own Python code to run."""


@dataclass
class PatchQuery:
    model: str
    """Built-in name, .gguf file, model folder or hub id."""
    clean: str
    """The clean prompt."""
    corrupted: str
    """The corrupted prompt (the same number of tokens)."""
    answer: str
    """The answer token (one token, e.g. ' Paris' with its leading space)."""
    foil: str
    """The foil token the corrupted prompt favours."""
    direction: str = ""
    """Also patch only the component along this direction (a spec as `steer --direction` takes) in the stream
    after block --layer (resid_post.L), at every position, beside --controls random directions of the same norm."""
    layer: int | None = None
    """Where --direction is patched (and a prompt-set direction made); default: a neuron's or feature's own layer."""
    controls: int = 8
    """Random directions of the same norm patched beside --direction: the effect a direction gets by chance."""
    device: str = "cpu"
    """Where the model runs: cpu, cuda, cuda:N or mps."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """The model's weights and activations (edits are made in float32 and cast)."""
    trust_remote_code: bool = False
    """Allow a hub model's own Python code to run."""


@dataclass
class BackpatchQuery:
    model: str
    """Built-in name, .gguf file, model folder or hub id."""
    prompt: str
    """The prompt."""
    answer: str
    """The answer token (one token)."""
    device: str = "cpu"
    """Where the model runs: cpu, cuda, cuda:N or mps."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """The model's weights and activations (edits are made in float32 and cast)."""
    trust_remote_code: bool = False
    """Allow a hub model's own Python code to run."""


def steer_json(q: SteerQuery, lm=None) -> dict:
    from core.interventions.directions import from_spec
    from core.interventions.steer import steer

    lm = lm or load_model(q.model, trust_remote_code=q.trust_remote_code, dtype=q.dtype, device=q.device)
    d = from_spec(lm, q.direction, q.layer, q.positive)
    if q.ablate:
        from core.interventions.steer import ablate

        out = ablate(lm, q.prompt, d.vector, q.tokens, q.seed).as_dict() | {"mode": "ablate"}
    else:
        out = steer(lm, q.prompt, q.layer, d.vector, q.alpha, q.tokens, q.start, q.seed).as_dict() | {"mode": "steer"}
    return out | {"direction": d.describe()}


def patch_json(q: PatchQuery, lm=None, on_layer=None) -> dict:
    """The patching grids; with q.direction also "direction_patch": the normalised effect of patching along it and
    along the random controls (core.interventions.patching.direction_patch), with where and how it was made."""
    from core.interventions.directions import from_spec
    from core.interventions.patching import PatchError, direction_patch, patch_grid

    if q.direction and q.controls < 1:
        raise PatchError(f"--controls must be >= 1, got {q.controls}")
    lm = lm or load_model(q.model, trust_remote_code=q.trust_remote_code, dtype=q.dtype, device=q.device)
    d = from_spec(lm, q.direction, q.layer) if q.direction else None  # checked before the grids are computed
    layer = d.layer if d is not None and q.layer is None else q.layer
    if d is not None and not 0 <= layer < lm.n_layers:
        raise PatchError(f"layer {layer} is out of range (the model has layers 0-{lm.n_layers - 1})")
    out = patch_grid(lm, q.clean, q.corrupted, q.answer, q.foil, on_layer=on_layer).as_dict()
    if d is not None:
        out["direction_patch"] = direction_patch(lm, q.clean, q.corrupted, q.answer, q.foil, f"resid_post.{layer}",
                                                 d.vector, controls=q.controls) | {"direction": d.describe()}
    return out


def backpatch_json(q: BackpatchQuery, lm=None, on_layer=None) -> dict:
    from core.interventions.patching import backpatch

    lm = lm or load_model(q.model, trust_remote_code=q.trust_remote_code, dtype=q.dtype, device=q.device)
    return backpatch(lm, q.prompt, q.answer, on_layer=on_layer).as_dict()
