"""Labeled prompt sets (built-in or a user CSV) and every layer's representation of each prompt.

A prompt set is a CSV with a header row holding the columns `text` and `label` and optionally `group` (prompts the
probe must keep in one fold, e.g. a matched pair; other columns are ignored), one prompt a row. Built-ins, written for this project (package data, core/data/prompts/):
  truth      true vs false one-sentence factual statements, mostly matched pairs ("... is Paris." / "... is Rome.")
  sentiment  positive vs negative short review-like sentences, matched pairs on varied subjects
`layer_representations` runs the prompts through the model once (batched, right-padded) and keeps, per layer, one
vector per prompt: the block output at the prompt's last token, or its mean over the prompt's tokens.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from core.errors import UserError
from core.model.intervene import store
from core.model.load import LoadedModel
from core.model.run import forward_until, pad_batch
from core.model.sites import Site
from core.model.tokens import tokenize

BUILTIN_SETS = {"truth": "truth.csv", "sentiment": "sentiment.csv"}
"""Built-in set name -> its file in the package data folder core/data/prompts/ (shipped in the wheel)."""


class PromptSetError(UserError):
    """A prompt set could not be read or is unusable; the message is one line naming the problem."""


@dataclass
class PromptSet:
    name: str
    """Built-in name or the CSV path as given."""
    texts: list[str]
    """The prompts, in file order."""
    labels: list[str]
    """Label of each prompt (same length as texts)."""
    groups: list[str] | None = None
    """Group of each prompt (the CSV's optional `group` column), or None."""

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise PromptSetError(f"prompt set {self.name}: {len(self.texts)} texts but {len(self.labels)} labels")
        if self.groups is not None and len(self.groups) != len(self.texts):
            raise PromptSetError(f"prompt set {self.name}: {len(self.texts)} texts but {len(self.groups)} groups")
        if not self.texts:
            raise PromptSetError(f"prompt set {self.name}: no prompts")
        counts = self.counts
        if len(counts) < 2:
            raise PromptSetError(f"prompt set {self.name}: needs at least 2 distinct labels, got {list(counts)}")
        small = [f"{lab!r} ({n})" for lab, n in counts.items() if n < 2]
        if small:
            raise PromptSetError(f"prompt set {self.name}: every label needs at least 2 prompts; "
                                 f"too few for {', '.join(small)}")

    @property
    def counts(self) -> dict[str, int]:
        """Prompts per label, labels in order of first appearance."""
        out: dict[str, int] = {}
        for lab in self.labels:
            out[lab] = out.get(lab, 0) + 1
        return out

    def __len__(self) -> int:
        return len(self.texts)


def _read_text(path, name: str) -> str:
    """`path`: a Path or an importlib.resources Traversable (built-in sets are package data)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PromptSetError(f"prompt set {name}: cannot read {path}: {e.strerror or e}") from e
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise PromptSetError(f"prompt set {name}: {path} is not UTF-8 text (byte {e.start})") from e


def _parse(text: str, name: str) -> tuple[list[str], list[str], list[str] | None]:
    """(texts, labels, groups or None) from CSV text with a header naming `text`, `label` (and `group`); blank
    rows skipped."""
    try:
        rows = [[c.strip() for c in row] for row in csv.reader(io.StringIO(text, newline=""))]
    except csv.Error as e:
        raise PromptSetError(f"prompt set {name}: malformed CSV: {e}") from e
    rows = [(i + 1, r) for i, r in enumerate(rows) if any(r)]
    if not rows:
        raise PromptSetError(f"prompt set {name}: the file is empty")
    header = [c.lower() for c in rows[0][1]]
    if "text" not in header or "label" not in header:
        raise PromptSetError(f"prompt set {name}: the header must name the columns text and label, got {rows[0][1]}")
    cols = {c: header.index(c) for c in ("text", "label", "group") if c in header}
    out: dict[str, list[str]] = {c: [] for c in cols}
    for line, row in rows[1:]:
        for c, i in cols.items():
            value = row[i] if i < len(row) else ""
            if not value:
                raise PromptSetError(f"prompt set {name}: row {line} has an empty {c}")
            out[c].append(value)
    return out["text"], out["label"], out.get("group")


def parse_prompt_set(data: bytes, name: str, max_prompts: int | None = None) -> PromptSet:
    """A prompt set from CSV bytes (an upload); the same checks as load_prompt_set, plus at most `max_prompts`."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise PromptSetError(f"prompt set {name}: not UTF-8 text (byte {e.start})") from None
    texts, labels, groups = _parse(text, name)
    if not texts:
        raise PromptSetError(f"prompt set {name}: the file has a header but no prompts")
    if max_prompts is not None and len(texts) > max_prompts:
        raise PromptSetError(f"prompt set {name}: {len(texts):,} prompts, more than the {max_prompts:,} allowed here")
    return PromptSet(name=name, texts=texts, labels=labels, groups=groups)


def builtin_file(name: str):
    """The package-data file of a built-in set (an importlib.resources Traversable: works from a wheel too)."""
    from importlib.resources import files

    return files("core.data").joinpath("prompts", BUILTIN_SETS[name])


def load_prompt_set(spec: str) -> PromptSet:
    """A built-in set by name (see BUILTIN_SETS) or a CSV file with columns text,label. PromptSetError (one line)
    for a missing, unreadable, non-UTF-8 or empty file, a header without text/label, an empty cell, fewer than 2
    labels, or a label with fewer than 2 prompts."""
    if spec in BUILTIN_SETS:
        path = builtin_file(spec)
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise PromptSetError(f"prompt set {spec!r} not found: not a built-in ({', '.join(BUILTIN_SETS)}) "
                                 "and not a CSV file")
    texts, labels, groups = _parse(_read_text(path, spec), spec)
    if not texts:
        raise PromptSetError(f"prompt set {spec}: the file has a header but no prompts")
    return PromptSet(name=spec, texts=texts, labels=labels, groups=groups)


def _batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Prompt indices grouped by similar length (less padding), each group at most batch_size."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


@torch.inference_mode()
def layer_representations(lm: LoadedModel, texts: list[str], *, pool: Literal["last", "mean"] = "last",
                          batch_size: int = 16) -> np.ndarray:
    """Block outputs of every layer pooled per prompt: (L, N, d_model) float32.

    Each text is tokenized with the tokenizer's defaults (Gemma adds BOS); batches of similar length are
    right-padded, which causal attention never lets a real token see. pool="last": the prompt's last token;
    pool="mean": the mean over its tokens, leaving out special tokens (BOS/EOS) unless the prompt has nothing else.
    No unembedding is run.
    """
    if pool not in ("last", "mean"):
        raise ValueError(f"pool must be 'last' or 'mean', got {pool!r}")
    ids = [tokenize(lm.tokenizer, t) for t in texts]
    if any(not x for x in ids):
        raise ValueError("a prompt has no tokens")
    special = set(getattr(lm.tokenizer, "all_special_ids", []) or [])
    pad = getattr(lm.tokenizer, "pad_token_id", None)
    pad = 0 if pad is None else pad
    L, d = lm.n_layers, lm.parts.d_model
    out = np.zeros((L, len(texts), d), np.float32)
    for batch in _batches([len(x) for x in ids], batch_size):
        input_ids, valid = pad_batch([ids[i] for i in batch], pad)  # (B, T) each
        weights = valid.float()  # (B, T): pooling weights
        for row, i in enumerate(batch):
            if pool == "last":
                weights[row] = 0
                weights[row, len(ids[i]) - 1] = 1
            else:
                keep = torch.tensor([t not in special for t in ids[i]])
                if keep.any():
                    weights[row, :len(ids[i])] = keep.float()
        weights = weights / weights.sum(1, keepdim=True)
        got: dict = {}
        forward_until(lm, input_ids, L - 1, attention_mask=valid.long(),
                      edits={Site("resid_post", layer): store(got, layer) for layer in range(L)})
        for layer in range(L):
            h = got[layer].float().cpu().masked_fill(weights[..., None] == 0, 0)  # (B, T, d)
            out[layer, batch] = torch.einsum("bt,btd->bd", weights, h).numpy()
    return out
