"""The fault matrix's bad URLs: every page opened with wrong query parameters (a link typed by hand, cut short,
or crafted). Each must run without an exception, say what it did instead in a friendly message, and leave the
index's and the findings file's bytes exactly as they were."""

import time
from pathlib import Path

import pytest
from helpers.faults import digest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]

# (page file, query parameters with {run} and {model} filled in, a phrase one of its messages must hold); a "tour"
# parameter serves the page in tour mode (`serve --tour`)
CASES = [
    ("neurons.py", {"run": "9", "layer": "x", "unit": "100000"}, "`run=9`"),
    ("neurons.py", {"run": "{run}", "layer": "1", "unit": "-4"}, "out of range"),
    ("neurons.py", {"run": "{run}", "layer": "1", "unit": "3", "ctx": "lots"}, "ctx"),
    ("features.py", {"run": "{run}", "sae": "99", "feature": "-3"}, "sae"),
    ("features.py", {"run": "{run}", "sae": "1", "feature": "100000"}, "out of range"),
    ("trajectories.py", {"model": "/etc/passwd", "compare": "none", "lens": "nope", "view": "zzz"}, "`view=zzz`"),
    ("trajectories.py", {"model": "{model}", "compare": "none", "view": "sets", "set": "no-such-set"},
     "`set=no-such-set`"),
    ("heads.py", {"model": "/etc/passwd"}, "not available here"),
    ("heads.py", {"model": "{model}", "layer": "99", "head": "x"}, "`head=x` is not a number"),
    ("steering.py", {"model": "{model}", "layer": "1", "alpha": "lots", "direction": "neuron:1:999999"},
     "not a number"),
    ("steering.py", {"model": "{model}", "layer": "1", "direction": "file:upload:deadbeef"}, "upload the file again"),
    ("patching.py", {"model": "{model}", "clean": "a b c d e", "corrupted": "a"}, "equal lengths"),
    ("circuits.py", {"graph": "7", "node": "1_2_3", "pinned": "x,y"}, "`graph=7`"),
    ("circuits.py", {"graph": "new", "model": "/etc/passwd", "set": "/etc", "prompt": "x"}, "no transcoder set"),
    ("home.py", {"tour": "999"}, "`tour=999` is out of range"),
    ("findings.py", {"tour": "x"}, "`tour=x` is not a number"),
]


def messages(at) -> list[str]:
    return [str(m.value) for kind in ("warning", "error", "info") for m in getattr(at, kind)]


def falls_back(file: str, params: dict) -> bool:
    """A page given a model it does not allow shows the first allowed one, a built-in, and starts loading it in the
    background: such a case is slow, and waits for that load before it ends (so no later test sees its files
    opened)."""
    return params.get("model") == "/etc/passwd" and file != "circuits.py"


@pytest.mark.parametrize("file,params,needle", [
    pytest.param(*c, id=f"{c[0]}:{'&'.join(c[1])}", marks=[pytest.mark.slow] if falls_back(c[0], c[1]) else [])
    for c in CASES])
def test_bad_url_friendly_nothing_changed(env, monkeypatch, tmp_path, file, params, needle):
    from dashboard.cache import models

    models.start([env["model"]])
    models._done[env["model"]].wait()
    monkeypatch.setenv("NEUROBOARD_DB", env["db"])
    monkeypatch.setenv("NEUROBOARD_MODELS", env["model"])
    monkeypatch.setenv("NEUROBOARD_FINDINGS", env["findings"])
    monkeypatch.setenv("NEUROBOARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NEUROBOARD_TOUR", "1" if "tour" in params else "0")
    before = digest(env["db"]), digest(env["findings"])
    at = AppTest.from_file(str(ROOT / "dashboard/app.py"), default_timeout=120)  # through navigation, as served
    if file != "home.py":
        at.switch_page(f"app_pages/{file}")
    for k, v in params.items():
        at.query_params[k] = v.format(**env)
    at.run()
    print(file, params, "->", messages(at))
    assert not at.exception, at.exception
    assert messages(at) and any(needle.lower() in m.lower() for m in messages(at)), messages(at)
    assert (digest(env["db"]), digest(env["findings"])) == before
    if falls_back(file, params):  # the built-in's background load ends inside this (slow) test
        time.sleep(models.START_DELAY_S + 0.5)
        for done in list(models._done.values()):
            assert done.wait(600)
