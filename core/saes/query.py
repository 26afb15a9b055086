"""What `neuroboard features` and `neuroboard sae-eval` compute: an SAE's features on one text, and its quality on
a corpus's first N tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.data.corpus import Corpus, document_windows
from core.errors import UserError
from core.model.intervene import store
from core.model.run import check_length, forward_until
from core.model.tokens import token_texts, tokenize
from core.saes.acts import flat
from core.saes.formats import load_sae
from core.saes.quality import evaluate
from core.saes.sae import SAE, check_for_model


@dataclass
class FeaturesQuery:
    model: str
    """Built-in name, .gguf file, model folder or hub id."""
    sae: str
    """SAE folder (SAELens, sparsify hookpoint) or Gemma Scope params.npz."""
    text: str
    """The text to read."""
    site: str | None = None
    """The site the SAE reads, when its files do not say (e.g. resid_post.6)."""
    top: int = 0
    """Features per token (0: every non-zero feature)."""


@dataclass
class SaeEvalConfig:
    model: str
    """Built-in name, .gguf file, model folder or hub id."""
    sae: str
    """SAE folder (SAELens, sparsify hookpoint) or Gemma Scope params.npz."""
    corpus: str = "demo"
    """'demo', a .txt/.jsonl/.csv/.parquet file, or a Hugging Face dataset name."""
    tokens: int = 16_384
    """Tokens of the corpus (its first N) to measure on."""
    site: str | None = None
    """The site the SAE reads, when its files do not say."""
    context_len: int = 128
    """Window length."""
    batch_tokens: int = 2048
    """Padded tokens per model pass."""


@torch.inference_mode()
def token_features(lm, sae: SAE, text: str, *, site: str | None = None, top: int = 0) -> list[dict]:
    """[{"token", "position", "features": [{"feature", "activation"}, ...]}] for every token of `text` (special
    tokens the tokenizer adds included), features with a non-zero activation, strongest first."""
    s_in, _ = check_for_model(sae, lm, site)
    ids = tokenize(lm.tokenizer, text)
    if not ids:
        raise UserError("the text has no tokens")
    check_length(lm.model, len(ids), "the text")
    got: dict = {}
    forward_until(lm, torch.tensor([ids]), s_in.layer, edits={s_in: store(got, "x")})
    f = sae.encode(flat(got["x"])[0])  # (T, d_sae)
    out = []
    for t, tok in enumerate(token_texts(lm.tokenizer, ids)):
        nz = f[t].nonzero().squeeze(1)
        order = nz[f[t, nz].argsort(descending=True, stable=True)]
        if top:
            order = order[:top]
        out.append({"token": tok, "position": t,
                    "features": [{"feature": int(i), "activation": float(f[t, i])} for i in order]})
    return out


def features(q: FeaturesQuery, lm=None) -> list[dict]:
    from core.model.load import load_model

    sae = load_sae(q.sae, q.site)
    lm = lm or load_model(q.model)
    return token_features(lm, sae, q.text, site=q.site, top=q.top)


def sae_eval(cfg: SaeEvalConfig, lm=None) -> dict:
    """{"fvu", "l0", "dead_frac", "ce_recovered", "kl", ...} on the corpus's first `tokens` tokens."""
    from core.model.load import load_model

    if cfg.tokens < 1:
        raise UserError("--tokens must be positive")
    sae = load_sae(cfg.sae, cfg.site)
    lm = lm or load_model(cfg.model)
    s_in, s_out = check_for_model(sae, lm, cfg.site)
    corpus = Corpus(cfg.corpus)
    corpus.validate()
    windows = [w for *_, ws in document_windows(corpus.documents(), lm.tokenizer, context_len=cfg.context_len,
                                                max_tokens=cfg.tokens) for w in ws]
    q = evaluate(sae, lm, windows, s_in, s_out, batch_tokens=cfg.batch_tokens)
    return q.as_dict() | {"site": str(s_in), "out_site": str(s_out), "d_sae": sae.d_sae, "model": lm.name}
