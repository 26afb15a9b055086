"""Site names: ours, TransformerLens/SAELens and sparsify map to the same sites and back."""

import pytest

from core.model.sites import KINDS, Site, SiteError, check_foreign


@pytest.mark.parametrize("kind", KINDS)
def test_round_trips(kind):
    s = Site(kind, 6)
    assert Site.parse(str(s)) == s
    assert Site.parse(s.tl_name()) == s
    if s.sparsify_name() is not None:
        assert Site.parse(s.sparsify_name()) == s


def test_foreign_names():
    assert Site.parse("blocks.6.hook_resid_post") == Site("resid_post", 6)
    assert Site.parse("blocks.0.attn.hook_z") == Site("z", 0)
    assert Site.parse("blocks.3.mlp.hook_post") == Site("neurons", 3)
    assert Site.parse("blocks.3.hook_mlp_in") == Site("resid_mid", 3)  # TL: the stream before ln2
    assert Site.parse("blocks.3.hook_attn_in") == Site("resid_pre", 3)
    assert Site.parse("layers.6") == Site("resid_post", 6)
    assert Site.parse("layers.6.mlp") == Site("mlp_out", 6)
    assert Site.parse("model.layers.2.self_attn") == Site("attn_out", 2)
    assert Site.parse("z.6.3") == Site("z", 6, 3) and str(Site("z", 6, 3)) == "z.6.3"
    assert Site.parse("mlp_post.4") == Site("neurons", 4)
    assert Site("resid_post", 6).tl_name() == "blocks.6.hook_resid_post"
    assert Site("resid_post", 6).sparsify_name() == "layers.6"
    assert Site("neurons", 6).sparsify_name() is None


@pytest.mark.parametrize("bad", ["", "blocks.6.hook_nothing", "layers.x", "resid.6", "resid_post", "z.1.2.3",
                                 "resid_post.2.1", "blocks.-1.hook_resid_post"])
def test_bad_names_are_one_line_errors(bad):
    with pytest.raises(SiteError) as e:
        Site.parse(bad)
    assert "\n" not in str(e.value)


def test_sparsify_module_outputs_refused_where_a_norm_follows():
    """Gemma norms the MLP output before the residual add: sparsify's layers.L.mlp (the module's output) is not
    mlp_out there, so it is refused; on Llama it is the same site."""
    from helpers.tiny import tiny_model

    from core.model.parts import find_parts

    gemma, llama = find_parts(tiny_model("gemma3")), find_parts(tiny_model("llama"))
    with pytest.raises(SiteError, match="norms the mlp output"):
        check_foreign("layers.1.mlp", Site.parse("layers.1.mlp"), gemma)
    assert check_foreign("layers.1.mlp", Site.parse("layers.1.mlp"), llama) == Site("mlp_out", 1)
    assert check_foreign("blocks.1.hook_mlp_out", Site("mlp_out", 1), gemma) == Site("mlp_out", 1)
