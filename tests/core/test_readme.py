"""The README's Python API block runs as written (on a smaller token budget and a temporary index)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
pytestmark = pytest.mark.slow


def test_python_api_block_runs(tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Python API\n\n```python\n(.*?)```", text, re.S).group(1)
    assert "max_tokens=20_000" in block
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(block.replace("max_tokens=20_000", "max_tokens=600"), scope)  # noqa: S102 - our own README
    assert scope["got"]["h"].shape == (1, scope["ids"].shape[1], 576)
    assert scope["got"]["n3"].shape[-1] == 1536
    plain = scope["lm"].model(scope["ids"]).logits
    assert not (scope["ablated"] - plain).abs().max() < 1e-6 and not (scope["steered"] - plain).abs().max() < 1e-6
    runs = scope["queries"].list_runs(scope["con"])
    assert [r.status for r in runs] == ["complete"] and len(scope["queries"].top_examples(
        scope["con"], scope["run_id"], layer=2, unit=7, k=10)) == 10
