"""Hook points found by structure, checked against the model's own outputs."""

import pytest
import torch

from core.model.parts import StopForward, capture, find_hook_points


def test_structure_found(tiny):
    pts = find_hook_points(tiny)
    assert len(pts.layers) == 3 and pts.d_model == 64
    assert pts.d_mlp in (96, 128, 256)
    assert pts.final_norm is not None


def test_block_outputs_equal_hidden_states(tiny):
    pts = find_hook_points(tiny)
    ids = torch.randint(0, 300, (2, 12))
    with torch.inference_mode(), capture(pts, resid=range(3)) as st:
        out = tiny(ids, output_hidden_states=True)
    hs = out.hidden_states  # embeddings, block 0 .. block L-2, then final-norm(block L-1)
    assert len(hs) == 4
    for layer in range(2):
        torch.testing.assert_close(st["resid"][layer], hs[layer + 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(pts.final_norm(st["resid"][2]), hs[3], atol=1e-5, rtol=0)
    assert not torch.allclose(st["resid"][2], hs[3], atol=1e-3)  # HF's last state really is normed


def test_mlp_hook_is_down_proj_input(tiny):
    """Neuron activations times the down projection give the MLP output (bias aside)."""
    pts = find_hook_points(tiny)
    ids = torch.randint(0, 300, (1, 9))
    got = {}
    h = pts.mlp_down[1].register_forward_hook(lambda m, i, o: got.setdefault("out", o))
    try:
        with torch.inference_mode(), capture(pts, mlp=[1]) as st:
            tiny(ids)
    finally:
        h.remove()
    acts = st["mlp"][1]
    assert acts.shape == (1, 9, pts.d_mlp)
    torch.testing.assert_close(pts.mlp_down[1](acts), got["out"])


def test_attention_patterns_and_stop(tiny):
    pts = find_hook_points(tiny)
    ids = torch.randint(0, 300, (1, 7))
    with torch.inference_mode(), capture(pts, attn_pattern=[0], stop_after=0) as st:
        with pytest.raises(StopForward):
            tiny(ids)
    pat = st["attn_pattern"][0]
    assert pat.shape[-2:] == (7, 7)
    torch.testing.assert_close(pat.sum(-1), torch.ones_like(pat.sum(-1)))
    assert torch.all(pat.triu(1) == 0)  # causal


def test_concurrent_captures_on_a_shared_model_do_not_mix():
    """Hooks fire for every thread; capture's lock keeps two sessions' passes (and early stops) apart."""
    import threading

    import torch
    from helpers.tiny import tiny_model, tiny_tokenizer

    from core.lens.logit import stream
    from core.model.load import LoadedModel
    from core.model.parts import StopForward, capture, find_hook_points

    model = tiny_model("llama")
    lm = LoadedModel(name="t", source="c", model=model, tokenizer=tiny_tokenizer(), points=find_hook_points(model))
    prompts = [tiny_tokenizer()(p)["input_ids"] for p in ("The cat sat on the mat", "Paris is the capital")]
    want = [stream(lm, ids).h for ids in prompts]
    errors = []

    def work(i):
        try:
            for _ in range(15):
                assert torch.equal(stream(lm, prompts[i]).h, want[i])
                with capture(lm.points, mlp=[0], stop_after=0):  # an early stop in between
                    try:
                        lm.points.base(input_ids=torch.tensor([prompts[i]]))
                    except StopForward:
                        pass
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1, 0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
