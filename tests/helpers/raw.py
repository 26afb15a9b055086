"""An independent route for tests: plain torch hooks, registered and removed here, with none of core.model.intervene
(so a test of the intervention layer's users does not check that layer against itself)."""

import contextlib

import torch


@contextlib.contextmanager
def module_inputs(modules: dict):
    """{key: module} -> a dict filled with each module's first input (detached) during the passes in the block."""
    got, handles = {}, []
    try:
        for key, m in modules.items():
            handles.append(m.register_forward_pre_hook(lambda _m, inp, k=key: got.__setitem__(k, inp[0].detach())))
        yield got
    finally:
        for h in handles:
            h.remove()


def neurons(lm, ids: list[int], layer: int) -> torch.Tensor:
    """(T, d_mlp) neuron activations (the down projection's input) of one sequence, one plain full pass."""
    with torch.inference_mode(), module_inputs({0: lm.parts.mlp_down[layer]}) as got:
        lm.model(torch.tensor([ids]))
    return got[0][0]
