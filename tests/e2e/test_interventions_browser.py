"""The steering and patching pages on smollm2-135m, served by `neuroboard serve` and driven by a real headless
Chromium; plus real-model checks of the numbers behind them (prompts named in the closing note):
  patching  "The Eiffel Tower is in Paris. It is in" / "The Colosseum is in Rome. It is in", answer " Paris",
            foil " Rome"
  steering  the built-in sentiment set's difference of means at block 15, on "I watched the film last night and"
"""

import numpy as np
import pytest
from helpers.serving import served

from dashboard.browser import new_page, wait_settled

CLEAN, CORRUPT = "The Eiffel Tower is in Paris. It is in", "The Colosseum is in Rome. It is in"
PROMPT = "I watched the film last night and"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from core.cli import main

    tmp = tmp_path_factory.mktemp("e2e-steer")
    db = tmp / "s.duckdb"
    assert main(["sweep", "--model", "smollm2-135m", "--direction", "diffmeans:sentiment", "--layer", "15",
                 "--layers", "9,15", "--alphas=-0.5,0,0.5", "--n-prompts", "4", "--tokens", "4", "--neutral-tokens",
                 "64", "--db", str(db), "--no-progress"]) == 0
    with served(db, tmp / "streamlit.log") as url:
        yield url


@pytest.mark.e2e
@pytest.mark.slow
def test_real_model_numbers():
    """smollm2 knows the answer (clean favours ' Paris', corrupted ' Rome'); patching the last block's input at the
    last position restores most of it; steering along positive sentiment raises the positive class's projection."""
    from core.interventions.directions import from_spec
    from core.interventions.patching import patch_grid
    from core.interventions.sweep import sweep
    from core.model.load import load_model

    lm = load_model("smollm2-135m")
    res = patch_grid(lm, CLEAN, CORRUPT, " Paris", " Rome", kinds=("resid_pre",))
    assert res.clean_diff > 0 > res.corrupted_diff
    a, b = lm.tokenizer(CLEAN)["input_ids"], lm.tokenizer(CORRUPT)["input_ids"]
    first = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
    assert res.resid[-1, -1] > 0.5 and np.abs(res.resid[:, :first]).max() < 1e-4  # shared prefix: no effect
    d = from_spec(lm, "diffmeans:sentiment", 15)
    assert d.quality.separation > 0.9  # the set separates at block 15 on held-out pairs
    s = sweep(lm, d, [PROMPT, "The food at the restaurant was"], [15], [-0.25, 0.0, 0.25], tokens=8,
              neutral_tokens=64)
    assert s["score"][0][2] > s["score"][0][1] > s["score"][0][0]


@pytest.mark.e2e
@pytest.mark.slow
def test_steering_page(browser, server):
    page = new_page(browser)
    page.goto(f"{server}/steering?model=smollm2-135m&direction=diffmeans:sentiment&layer=15&alpha=0.5"
              f"&tokens=8&prompt={PROMPT.replace(' ', '+')}")
    page.locator(".nb-steer").first.wait_for(timeout=240_000)
    wait_settled(page, 120_000)
    assert page.get_by_test_id("stException").count() == 0
    body = page.inner_text("body")
    assert "held-out separation" in body and "steered" in body and "Next token: most raised" in body
    assert page.locator(".nb-grid").count() == 3 and "anti-steerable share" in body  # the stored sweep
    assert "sweep=1" in page.url


@pytest.mark.e2e
@pytest.mark.slow
def test_patching_page(browser, server):
    page = new_page(browser)
    page.goto(f"{server}/patching?model=smollm2-135m&clean={CLEAN.replace(' ', '+')}"
              f"&corrupted={CORRUPT.replace(' ', '+')}&answer=+Paris&foil=+Rome")
    page.locator(".nb-grid").nth(3).wait_for(timeout=240_000)
    wait_settled(page, 120_000)
    assert page.get_by_test_id("stException").count() == 0
    assert page.locator(".nb-grid").count() == 4 and "each cell is (patched" in page.inner_text("body")
    # a prompt pair of unequal length: a friendly line, no traceback
    page.goto(f"{server}/patching?model=smollm2-135m&clean=A+b+c&corrupted=A&answer=+Paris&foil=+Rome")
    page.get_by_text("patching needs equal lengths").first.wait_for(timeout=120_000)
    assert page.get_by_test_id("stException").count() == 0


@pytest.mark.e2e
@pytest.mark.slow
def test_steering_uploads(browser, server, tmp_path):
    """A prompt set uploaded as CSV makes the direction (its spec, naming the upload, goes into the URL); a vector
    uploaded as safetensors steers; a vector of the wrong width or a one-class set gives a friendly line."""
    import torch
    from safetensors.torch import save_file

    good = ["I loved this film", "What a wonderful day", "The meal was delicious", "She was kind and warm",
            "A brilliant, moving story", "We had a great time", "The staff were lovely", "Such a happy ending"]
    bad = ["I hated this film", "What a miserable day", "The meal was disgusting", "She was cruel and cold",
           "A dull, tedious story", "We had an awful time", "The staff were rude", "Such a sad ending"]
    csv = tmp_path / "mine.csv"
    csv.write_text("text,label,group\n" + "".join(f'"{g}",pos,p{i}\n"{b}",neg,p{i}\n' for i, (g, b) in
                                                  enumerate(zip(good, bad, strict=True))), encoding="utf-8")
    one = tmp_path / "one.csv"
    one.write_text("text,label\n" + "".join(f'"{g}",pos\n' for g in good), encoding="utf-8")
    wide, narrow = tmp_path / "vec.safetensors", tmp_path / "narrow.safetensors"
    save_file({"direction": torch.randn(576)}, str(wide))
    save_file({"direction": torch.randn(10)}, str(narrow))
    page = new_page(browser)
    page.goto(f"{server}/steering?model=smollm2-135m&direction=neuron:15:7&layer=15&alpha=0.5&tokens=4"
              f"&prompt={PROMPT.replace(' ', '+')}")
    page.locator(".nb-steer").first.wait_for(timeout=240_000)
    wait_settled(page, 120_000)
    upload = page.locator("input[type=file]").first

    def uploaded(path, text):
        upload.set_input_files(str(path))
        page.get_by_text(text).first.wait_for(timeout=120_000)
        wait_settled(page, 120_000)
        assert page.get_by_test_id("stException").count() == 0
        return page.inner_text("body")

    body = uploaded(csv, "set=mine.csv")
    assert "held-out separation" in body and "direction=diffmeans%3Aupload%3A" in page.url
    uploaded(narrow, "is 10 wide")
    body = uploaded(wide, "method=file")
    assert "direction=file%3Aupload%3A" in page.url and page.locator(".nb-steer").count() >= 1
    uploaded(one, "needs at least 2 distinct labels")
