"""The intervention layer: every site read against the model's own outputs or an identity of the architecture, and
every edit against a hand-edited model or a hand-written formula."""

import threading

import pytest
import torch
from helpers.tiny import tiny_model, tiny_tokenizer

from core.model.intervene import add, fill, intervene, patch, project_out, store, zero
from core.model.load import LoadedModel
from core.model.parts import find_parts
from core.model.run import forward_until, logits
from core.model.sites import Site, SiteError

ARCHS = ["llama", "gemma3", "gpt2"]


def _lm(arch: str) -> LoadedModel:
    model = tiny_model(arch)
    return LoadedModel(name=arch, source="config", model=model, tokenizer=tiny_tokenizer(), parts=find_parts(model))


def _ids(T: int = 12, B: int = 2) -> torch.Tensor:
    return torch.randint(0, 300, (B, T))


def _hooks(model) -> list:
    """Every hook and replaced forward on the model (transformers keeps its own output-capturing hooks)."""
    return [(n, k, tuple(getattr(m, k))) for n, m in model.named_modules()
            for k in ("_forward_hooks", "_forward_pre_hooks")] + [n for n, m in model.named_modules()
                                                                   if "forward" in m.__dict__]


def _no_hooks(model, before=None) -> bool:
    """No hook of ours is left: the model's hooks are those it had `before` (or those transformers installs)."""
    now = _hooks(model)
    if before is not None:
        return now == before
    return all("capturing" in getattr(h, "__qualname__", "") for m in model.modules()
               for d in (m._forward_hooks, m._forward_pre_hooks) for h in d.values()) and not any(
        "forward" in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("arch", ARCHS)
def test_stream_sites_equal_hidden_states(arch):
    lm, ids, got = _lm(arch), _ids(), {}
    edits = {Site("resid_post", layer): store(got, layer) for layer in range(3)} | {"resid_pre.0": store(got, "e")}
    with torch.inference_mode(), intervene(lm, edits):
        out = lm.model(ids, output_hidden_states=True)
    hs = out.hidden_states  # embeddings, block 0 .. block L-2, then final-norm(block L-1)
    torch.testing.assert_close(got["e"], hs[0], atol=1e-5, rtol=0)
    for layer in range(2):
        torch.testing.assert_close(got[layer], hs[layer + 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(lm.parts.final_norm(got[2]), hs[3], atol=1e-5, rtol=0)
    assert _no_hooks(lm.model)


@pytest.mark.parametrize("arch", ARCHS)
def test_sublayer_sites_add_up_to_the_stream(arch):
    """resid_mid = resid_pre + attn_out and resid_post = resid_mid + mlp_out: checks that the norms around each
    sublayer (Gemma's post-norms) were told apart; mlp_out is the down projection of the neurons (post-norm on
    Gemma), and the attention output is the output projection of z."""
    lm, ids, got = _lm(arch), _ids(), {}
    L = 1
    sites = ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "neurons", "z", "mlp_in"]
    with torch.inference_mode():
        forward_until(lm, ids, 2, edits={Site(s, L): store(got, s) for s in sites})
        torch.testing.assert_close(got["resid_mid"], got["resid_pre"] + got["attn_out"], atol=1e-5, rtol=0)
        torch.testing.assert_close(got["resid_post"], got["resid_mid"] + got["mlp_out"], atol=1e-5, rtol=0)
        norms = lm.parts.norms(L)
        down = lm.parts.mlp_down[L](got["neurons"])
        mlp_out = norms.post_mlp(down) if norms.post_mlp is not None else down
        if arch != "gpt2":  # GPT-2's MLP applies dropout after c_proj (identity in eval): the same
            torch.testing.assert_close(mlp_out, got["mlp_out"], atol=1e-5, rtol=0)
        B, T, H, dh = got["z"].shape
        o = lm.parts.o_proj(L)(got["z"].reshape(B, T, H * dh))
        attn = norms.post_attn(o) if norms.post_attn is not None else o
        torch.testing.assert_close(attn, got["attn_out"], atol=1e-5, rtol=0)
        torch.testing.assert_close(lm.parts.norms(L).mlp_in(got["resid_mid"]), got["mlp_in"], atol=1e-5, rtol=0)


def test_pattern_and_stop():
    lm, got = _lm("llama"), {}
    with torch.inference_mode():
        forward_until(lm, _ids(7, 1), 0, edits={Site("pattern", 0): store(got, "p"),
                                                Site("resid_post", 1): store(got, "late")})
    pat = got["p"]
    assert pat.shape == (1, 4, 7, 7)
    torch.testing.assert_close(pat.sum(-1), torch.ones_like(pat.sum(-1)))
    assert torch.all(pat.triu(1) == 0)  # causal
    assert "late" not in got  # the pass stopped after block 0


def test_read_only_sites_refuse_edits_and_hooks_go_on_error():
    lm = _lm("llama")
    with pytest.raises(SiteError, match="read, not replaced"), torch.inference_mode():
        forward_until(lm, _ids(), edits={"pattern.0": lambda p: p * 0})
    assert _no_hooks(lm.model)
    with pytest.raises(SiteError, match="shape"), torch.inference_mode():
        forward_until(lm, _ids(), edits={"resid_post.0": lambda h: h[:, :1]})
    assert _no_hooks(lm.model)
    with pytest.raises(SiteError, match="layers 0-2"):
        forward_until(lm, _ids(), edits={"resid_post.3": store({}, 0)})
    with pytest.raises(SiteError, match="heads 0-3"):
        forward_until(lm, _ids(), edits={"z.0.4": zero()})


@pytest.mark.parametrize("arch", ARCHS)
def test_zero_head_equals_zeroed_output_weights(arch):
    """z.L.h replaced by zeros = the output projection's input rows of head h set to zero (a hand-edited model)."""
    lm, ids = _lm(arch), _ids()
    H, _, dh = lm.parts.heads
    with torch.inference_mode():
        got = logits(lm, ids, edits={Site("z", 2, 1): zero()})
        o = lm.parts.o_proj(2)
        w = o.weight
        saved = w.detach().clone()
        rows = slice(1 * dh, 2 * dh)
        if type(o).__name__ == "Conv1D":
            w[rows] = 0  # (in, out)
        else:
            w[:, rows] = 0  # (out, in)
        want = lm.model(ids).logits
        w.copy_(saved)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def _rest_by_hand(lm, h: torch.Tensor, first: int) -> torch.Tensor:
    """Llama blocks first..L-1, the final norm and the unembedding called directly on the stream h (B, T, d)."""
    m = lm.model.model
    T = h.shape[1]
    pos = torch.arange(T)[None]
    cos_sin = m.rotary_emb(h, pos)
    mask = torch.full((T, T), float("-inf")).triu(1)[None, None]  # causal, additive
    for block in m.layers[first:]:
        h = block(h, attention_mask=mask, position_ids=pos, position_embeddings=cos_sin)
    return lm.model.lm_head(m.norm(h))


def test_add_equals_adding_to_the_stream_by_hand():
    """add(v) at resid_post.0 = HF's hidden_states[1] + v through blocks 1.. run by hand; replaying that stream
    gives the same; scale 0 changes nothing."""
    lm, ids = _lm("llama"), _ids()
    v = torch.randn(64)
    with torch.inference_mode():
        got = logits(lm, ids, edits={"resid_post.0": add(v, 2.0)})
        h = lm.model(ids, output_hidden_states=True).hidden_states[1]  # block 0's output
        torch.testing.assert_close(got, _rest_by_hand(lm, h + 2.0 * v, 1), atol=1e-5, rtol=0)
        torch.testing.assert_close(logits(lm, ids, replay=(1, h + 2.0 * v)), got, atol=1e-6, rtol=0)
        assert torch.equal(logits(lm, ids, edits={"resid_post.0": add(v, 0.0)}), lm.model(ids).logits)


def test_replay_equals_the_full_pass():
    lm, ids, got = _lm("gemma3"), _ids(), {}
    with torch.inference_mode():
        full = logits(lm, ids, edits={Site("resid_post", 1): store(got, 1), Site("z", 2, 0): zero()})
        fast = logits(lm, ids, edits={Site("z", 2, 0): zero()}, replay=(2, got[1]))
    torch.testing.assert_close(fast, full, atol=1e-6, rtol=0)
    assert _no_hooks(lm.model)


def test_patch_fill_and_project_out():
    lm, a, b = _lm("llama"), _ids(), _ids()
    src = {}
    with torch.inference_mode():
        forward_until(lm, b, edits={"resid_post.2": store(src, "h")})
        got = logits(lm, a, edits={"resid_post.2": patch(src["h"])})  # the whole last stream: b's logits
        torch.testing.assert_close(got, lm.model(b).logits, atol=1e-5, rtol=0)
        part = logits(lm, a, edits={"resid_post.2": patch(src["h"], positions=slice(0, 3))})
        torch.testing.assert_close(part[:, :3], lm.model(b).logits[:, :3], atol=1e-5, rtol=0)
        torch.testing.assert_close(part[:, 3:], lm.model(a).logits[:, 3:], atol=1e-5, rtol=0)
        r, seen = torch.randn(64), {}
        m = torch.randn(64)
        forward_until(lm, a, 1, edits={"resid_post.1": [project_out(r), store(seen, "p")],
                                       "resid_post.0": [fill(m, positions=[2]), store(seen, "f")]})
    assert (seen["p"] @ (r / r.norm())).abs().max() < 1e-4
    assert torch.equal(seen["f"][:, 2], m.expand(2, 64)) and not torch.equal(seen["f"][:, 1], m.expand(2, 64))


def test_concurrent_passes_on_a_shared_model_do_not_mix():
    """Hooks fire for every thread; the model's lock keeps two sessions' passes (and early stops) apart."""
    from core.lens.logit import stream

    lm = _lm("llama")
    prompts = [tiny_tokenizer()(p)["input_ids"] for p in ("The cat sat on the mat", "Paris is the capital")]
    want = [stream(lm, ids).h for ids in prompts]
    errors = []

    def work(i):
        try:
            for _ in range(15):
                assert torch.equal(stream(lm, prompts[i]).h, want[i])
                forward_until(lm, torch.tensor([prompts[i]]), 0, edits={"neurons.0": store({}, 0)})
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1, 0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
