"""Directional ablation (Arditi et al.): remove a direction r̂ from the residual stream at every layer and position,
x ← x − (x·r̂)r̂, in two equivalent forms.

Activation form (`ablation_edits`, any architecture): the edit at every place something writes into the stream —
the embeddings (resid_pre.0) and every block's attention and MLP outputs (attn_out.L, mlp_out.L, after Gemma's
post-sublayer norms where a model has them). The stream then never holds a component along r̂, which is what
ablating it at every block's input, middle and output does.

Weight form (`orthogonalized`, a copy of the model): the same for architectures whose writes are linear maps — every
writing matrix W (embeddings, the attention output projection, the MLP down projection, their biases) replaced by
W − r̂(r̂ᵀW) so nothing it writes has a component along r̂. A tied unembedding is untied first (the input embedding is
copied), so the logits' read-out is unchanged. Gemma 2/3's post-sublayer norms rescale each dimension after the
projection, so no weight edit removes r̂ there: the weight form refuses those models (AblateError) and the activation
form is the one to use.
"""

from __future__ import annotations

import copy

import torch

from core.errors import UserError
from core.model.intervene import project_out
from core.model.parts import in_out


class AblateError(UserError):
    """Directional ablation that cannot be done as asked (one line)."""


def ablation_edits(lm, direction: torch.Tensor) -> dict:
    """{site: edit} removing `direction` from everything written into the stream (module docstring)."""
    if direction.numel() != lm.parts.d_model:
        raise AblateError(f"the direction is {direction.numel()} wide but {lm.name}'s stream is {lm.parts.d_model}")
    r = direction.float().reshape(-1)
    edits = {"resid_pre.0": project_out(r)}
    for L in range(lm.n_layers):
        edits[f"attn_out.{L}"] = project_out(r)
        edits[f"mlp_out.{L}"] = project_out(r)
    return edits


def _writes_linearly(parts) -> bool:
    return all(parts.norms(L).post_attn is None and parts.norms(L).post_mlp is None for L in range(parts.n_layers))


@torch.no_grad()
def _orth_out(m: torch.nn.Module, r: torch.Tensor) -> None:
    """m's output (a linear map) made orthogonal to r̂, in place: W_io ← W_io − (W_io r̂) r̂ᵀ, b ← b − (b·r̂) r̂."""
    W = in_out(m)  # (in, out) view of the parameter
    r = r.to(W.device)
    W -= (W.float() @ r)[:, None].to(W.dtype) * r[None].to(W.dtype)
    if getattr(m, "bias", None) is not None:
        m.bias -= (m.bias.float() @ r).to(m.bias.dtype) * r.to(m.bias.dtype)


def orthogonalized(lm, direction: torch.Tensor):
    """A copy of `lm` (a LoadedModel) whose weights never write `direction` into the stream."""
    from core.model.load import LoadedModel
    from core.model.parts import find_parts

    if not _writes_linearly(lm.parts):
        raise AblateError(f"{lm.name} normalises each sublayer's output before adding it to the stream (Gemma 2/3); "
                          "no weight edit removes a direction there: use the activation form")
    r = direction.float().reshape(-1)
    r = r / r.norm()
    model = copy.deepcopy(lm.model)
    parts = find_parts(model)
    emb = model.get_input_embeddings()
    if emb.weight is model.get_output_embeddings().weight:  # tied: keep the read-out, edit a copy for the input
        emb.weight = torch.nn.Parameter(emb.weight.detach().clone(), requires_grad=False)
    with torch.no_grad():
        for e in [emb] + [m for n, m in model.named_modules() if n.endswith("wpe")]:  # token (and position) embeddings
            e.weight -= (e.weight.float() @ r)[:, None].to(e.weight.dtype) * r[None].to(e.weight.dtype)
    for L in range(parts.n_layers):
        _orth_out(parts.o_proj(L), r)
        _orth_out(parts.mlp_down[L], r)
    return LoadedModel(name=f"{lm.name} (orthogonalised)", source=lm.source, model=model, tokenizer=lm.tokenizer,
                       parts=parts)
