"""HeadsConfig: the settings of `neuroboard heads` (scoring every attention head into the index)."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import UserError


class HeadsError(UserError):
    """Bad heads input; one line."""


@dataclass
class HeadsConfig:
    model: str
    """Built-in name (smollm2-135m, gemma3-270m), .gguf file, model folder or hub id."""
    db: str
    """DuckDB index file (created if missing)."""
    seqs: int = 16
    """Sequences of the repeated-random-token probe."""
    half_len: int = 64
    """Length n of each copy in the probe (sequences are BOS + 2n tokens)."""
    ablation_tokens: int = 512
    """Corpus tokens over which each head's ablation effect on the loss is measured (0: skip ablation)."""
    text_tokens: int = 512
    """Corpus tokens for the roles measured on natural text (0: measure them on the repeated probe)."""
    corpus: str = "demo"
    """Corpus of the text probe and the ablation sample: 'demo', a .txt/.jsonl/.csv/.parquet file, or a dataset."""
    trust_remote_code: bool = False
    """Allow a hub model's own Python code to run."""

    def validate(self) -> None:
        if self.seqs < 1 or self.half_len < 2 or self.ablation_tokens < 0 or self.text_tokens < 0:
            raise HeadsError("--seqs must be >= 1, --half-len >= 2, --ablation-tokens and --text-tokens >= 0")
