"""Files a user uploads on a page (a prompt set as CSV, a direction as safetensors), held in this server's memory by
content (no file is written), named by an "upload:<digest>" spec that the page keeps in its URL: a copied link
reopens the same view while this server holds the upload, and says to upload it again once it does not."""

from __future__ import annotations

import hashlib

from core.errors import UserError

MAX_UPLOAD_PROMPTS = 2000
MAX_PROMPT_CHARS = 2000
MAX_VECTOR_BYTES = 4 << 20
_KEEP = 16
_sets: dict[str, object] = {}  # "upload:<digest>" -> PromptSet
_vectors: dict[str, object] = {}  # "upload:<digest>" -> (d,) float tensor


class UploadError(UserError):
    """An upload that is not usable, or no longer held (one line)."""


def _spec(data: bytes) -> str:
    return "upload:" + hashlib.sha256(data).hexdigest()[:16]


def _keep(store: dict, spec: str, value) -> str:
    if len(store) >= _KEEP:
        store.pop(next(iter(store)))
    store[spec] = value
    return spec


def is_upload(spec: str) -> bool:
    return spec.startswith("upload:")


def uploaded_set(data: bytes, filename: str) -> str:
    """Parse an uploaded CSV (PromptSetError, one line, if it is not a prompt set) and return its spec."""
    from core.data.prompt_sets import PromptSetError, parse_prompt_set

    spec = _spec(data)
    if spec not in _sets:
        ps = parse_prompt_set(data, filename, max_prompts=MAX_UPLOAD_PROMPTS)
        if max(len(t) for t in ps.texts) > MAX_PROMPT_CHARS:
            raise PromptSetError(f"prompt set {filename}: a prompt is longer than {MAX_PROMPT_CHARS} characters")
        _keep(_sets, spec, ps)
    return spec


def _held(store: dict, spec: str, what: str):
    if spec not in store:
        raise UploadError(f"the uploaded {what} {spec} is not held by this server any more (uploads live in "
                          "memory): upload the file again")
    return store[spec]


def prompt_set(spec: str):
    """The uploaded PromptSet of `spec` (UploadError when this server no longer holds it)."""
    return _held(_sets, spec, "prompt set")


def uploaded_vector(data: bytes, filename: str) -> str:
    """Read an uploaded safetensors file holding one vector (or one tensor named 'direction'); never unpickled.
    UploadError (one line) otherwise. Returns its spec."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not filename.endswith(".safetensors"):
        raise UploadError(f"{filename}: directions are read from .safetensors files only (never unpickled)")
    if len(data) > MAX_VECTOR_BYTES:
        raise UploadError(f"{filename}: {len(data):,} bytes, more than a direction needs ({MAX_VECTOR_BYTES:,} max)")
    spec = _spec(data)
    if spec not in _vectors:
        try:
            t = load(data)
        except (SafetensorError, ValueError, OSError) as e:
            raise UploadError(f"{filename}: not a readable safetensors file ({str(e).splitlines()[0][:100]})") \
                from None
        v = t.get("direction", next(iter(t.values())) if len(t) == 1 else None)
        if v is None:
            raise UploadError(f"{filename}: expected one tensor, or one named 'direction' (got {', '.join(t)})")
        if not v.is_floating_point() or not bool(v.isfinite().all()) or v.numel() == 0:
            raise UploadError(f"{filename}: the direction must be finite floating-point numbers")
        _keep(_vectors, spec, v.float().flatten())
    return spec


def vector(spec: str):
    """The uploaded (d,) vector of `spec` (UploadError when this server no longer holds it)."""
    return _held(_vectors, spec, "direction")
