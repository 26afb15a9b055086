"""Uploaded prompt sets and direction vectors: held by content, read without unpickling, bad files one line; a
direction made from an upload equals the one made from the same CSV on disk."""

import pytest
import torch
from safetensors.torch import save

from core.errors import UserError
from dashboard.cache import uploads

CSV = "text,label\n" + "".join(f'"good thing {i}",pos\n"bad thing {i}",neg\n' for i in range(8))


def test_same_content_same_spec_and_held():
    a = uploads.uploaded_set(CSV.encode(), "mine.csv")
    assert a == uploads.uploaded_set(CSV.encode(), "again.csv") and a.startswith("upload:")
    ps = uploads.prompt_set(a)
    assert len(ps.texts) == 16 and set(ps.labels) == {"pos", "neg"}
    with pytest.raises(uploads.UploadError, match="upload the file again") as e:
        uploads.prompt_set("upload:0000000000000000")
    assert isinstance(e.value, UserError)  # one line wherever it surfaces (the CLI catches UserError alone)


def test_vector_read_without_unpickling():
    v = torch.arange(6, dtype=torch.float32)
    spec = uploads.uploaded_vector(save({"direction": v}), "d.safetensors")
    assert torch.equal(uploads.vector(spec), v)
    assert torch.equal(uploads.vector(uploads.uploaded_vector(save({"x": v[None]}), "e.safetensors")), v)


@pytest.mark.parametrize("data, name, match", [
    (b"\x80\x04\x95 pickled", "d.pt", "safetensors files only"),
    (b"garbage", "d.safetensors", "not a readable safetensors"),
    (save({"a": torch.ones(3), "b": torch.ones(3)}), "d.safetensors", "expected one tensor"),
    (save({"direction": torch.tensor([1.0, float("nan")])}), "d.safetensors", "finite"),
    (save({"direction": torch.tensor([1, 2])}), "d.safetensors", "floating-point"),
])
def test_bad_vectors_one_line(data, name, match):
    with pytest.raises(uploads.UploadError, match=match) as e:
        uploads.uploaded_vector(data, name)
    assert "\n" not in str(e.value)


def test_bad_sets_one_line():
    from core.data.prompt_sets import PromptSetError

    for data, match in ((b"text,label\n", "no prompts"), (b"text,label\na,x\nb,x\n", "2 distinct labels"),
                        (b"\xff\xfe", "UTF-8")):
        with pytest.raises(PromptSetError, match=match):
            uploads.uploaded_set(data, "bad.csv")


def test_direction_from_an_upload_equals_from_the_file(tmp_path):
    from helpers.tiny import tiny_model, tiny_tokenizer

    from core.interventions.directions import from_prompt_set, from_vector
    from core.model.load import LoadedModel
    from core.model.parts import find_parts

    model = tiny_model("llama")
    lm = LoadedModel(name="t", source="config", model=model, tokenizer=tiny_tokenizer(), parts=find_parts(model))
    p = tmp_path / "set.csv"
    p.write_text(CSV, encoding="utf-8")
    spec = uploads.uploaded_set(CSV.encode(), "set.csv")
    for method in ("diffmeans", "pca", "probe"):
        a = from_prompt_set(lm, str(p), 1, method)
        b = from_prompt_set(lm, spec, 1, method, ps=uploads.prompt_set(spec))
        torch.testing.assert_close(a.vector, b.vector)
        assert a.quality == b.quality
    from core.interventions.directions import DirectionError

    with pytest.raises(DirectionError, match="is 6 wide"):
        from_vector(lm, torch.ones(6), 1, {"method": "file", "upload": "upload:x"})
