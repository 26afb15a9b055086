"""Who writes and judges explanations: a chat model behind `complete(messages, max_tokens) -> str`.

  LocalChat   a loaded instruct model through transformers (the built-in smollm2-135m is SmolLM2-135M-Instruct):
              its chat template, greedy decoding, so the same prompt gives the same reply; the reply can be started
              for it (a prefix), and as a judge it answers each excerpt alone with the score
              logit(Yes) − logit(No) of its first token (no answer to parse; AUC from the scores), a batch of
              excerpts at a time over one shared prefix
  HttpChat    an OpenAI-compatible /v1/chat/completions endpoint the user runs (llama.cpp server, vLLM, Ollama),
              temperature 0; retried with exponential back-off, then one line (AutointerpError)
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import torch

from core.errors import UserError


class AutointerpError(UserError):
    """An explainer or scorer that cannot be used (one line)."""


class LocalChat:
    def __init__(self, lm) -> None:
        if not getattr(lm.tokenizer, "chat_template", None):
            raise AutointerpError(f"{lm.name} has no chat template: the explainer needs an instruct model")
        self.lm, self.name = lm, f"local:{lm.name}"

    def _ids(self, messages: list[dict], prefix: str) -> torch.Tensor:
        text = self.lm.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + prefix
        return torch.tensor([self.lm.tokenizer(text, add_special_tokens=False)["input_ids"]])

    @torch.inference_mode()
    def complete(self, messages: list[dict], max_tokens: int = 64, prefix: str = "") -> str:
        """The reply, greedy; `prefix` starts the reply (the model continues it; it is part of what is returned)."""
        from core.model.run import decode

        x = self._ids(messages, prefix)
        eos = self.lm.tokenizer.eos_token_id
        stops = set(eos if isinstance(eos, list) else [eos]) | {self.lm.tokenizer.convert_tokens_to_ids("<|im_end|>")}
        stops = {t for t in stops if isinstance(t, int) and t >= 0}
        _, out = decode(self.lm, x, max_tokens, stop=stops)  # the reply ends at its first stop token
        toks = out[0].tolist()
        for i, t in enumerate(toks):
            if t in stops:
                toks = toks[:i]
                break
        return prefix + self.lm.tokenizer.decode(toks, skip_special_tokens=True)

    @torch.inference_mode()
    def continue_text(self, text: str, max_tokens: int = 16) -> str:
        """A plain continuation of `text` (no chat template), greedy, up to the first newline."""
        from core.model.run import decode

        x = torch.tensor([self.lm.tokenizer(text, add_special_tokens=False)["input_ids"]])
        _, out = decode(self.lm, x, max_tokens)
        return self.lm.tokenizer.decode(out[0].tolist(), skip_special_tokens=True).split("\n")[0]

    def _yes_no(self) -> tuple[int, int]:
        return tuple(self.lm.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in ("Yes", "No"))

    @torch.inference_mode()
    def yes_score(self, messages: list[dict]) -> float:
        """logit(Yes) − logit(No) of the reply's first token: the judge's answer as a score (> 0: yes). One full
        pass of the model (the reference `yes_scores` is tested against)."""
        from core.model.run import logits

        out = logits(self.lm, self._ids(messages, ""))[0, -1].float()
        yes, no = self._yes_no()
        return float(out[yes] - out[no])

    def yes_scores(self, conversations: list[list[dict]], rows: int = 32) -> list[float]:
        """`yes_score` of each conversation, in batches over the prompts' shared start (the instructions and the
        explanation; only the excerpt differs): core.model.run.last_logits."""
        from core.model.run import last_logits

        if not conversations:
            return []
        out = last_logits(self.lm, [self._ids(m, "")[0].tolist() for m in conversations], rows)
        yes, no = self._yes_no()
        return (out[:, yes] - out[:, no]).tolist()


class HttpChat:
    def __init__(self, url: str, model: str = "", retries: int = 3, backoff_s: float = 0.5, timeout_s: float = 60):
        if not url.startswith(("http://", "https://")):
            raise AutointerpError(f"--explainer {url!r}: expected 'builtin' or an http(s):// URL")
        self.url = url.rstrip("/")
        if not self.url.endswith("/chat/completions"):
            self.url += "/v1/chat/completions" if not self.url.endswith("/v1") else "/chat/completions"
        self.model, self.retries, self.backoff_s, self.timeout_s = model, retries, backoff_s, timeout_s
        self.name = f"http:{url}" + (f"#{model}" if model else "")

    def complete(self, messages: list[dict], max_tokens: int = 64, prefix: str = "") -> str:
        """The reply at temperature 0 (`prefix` is not sent: chat endpoints do not continue a reply)."""
        body = json.dumps({"model": self.model or "default", "messages": messages, "temperature": 0,
                           "max_tokens": max_tokens}).encode()
        last = ""
        for attempt in range(self.retries + 1):
            try:
                req = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                    out = json.loads(r.read().decode())
                return str(out["choices"][0]["message"]["content"] or "")
            except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as e:
                last = str(getattr(e, "reason", e)).splitlines()[0] if str(e) else type(e).__name__
                if attempt < self.retries:
                    time.sleep(self.backoff_s * 2**attempt)
        raise AutointerpError(f"the endpoint {self.url} failed {self.retries + 1} times ({last})")


def chat(spec: str, lm_loader=None, model: str = ""):
    """'builtin' (smollm2-135m, SmolLM2-135M-Instruct) or an endpoint URL."""
    if spec == "builtin":
        from core.model.load import load_model

        return LocalChat((lm_loader or load_model)("smollm2-135m"))
    return HttpChat(spec, model)
