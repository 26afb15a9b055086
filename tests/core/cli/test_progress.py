"""The commands' one pattern (core.cli.progress): a bar on stderr while the work runs, then the result on stdout as
JSON with --json or as text, and nothing on stderr with --no-progress."""

import json
from argparse import Namespace

import numpy as np

from core.cli.progress import emit, run_and_print


def work(on_progress):
    for i in range(1, 4):
        on_progress(i, 3)
    return {"n": 3, "x": np.float32(0.5), "when": np.datetime64("2024-01-02")}


def test_json_after_the_bar(capsys):
    assert run_and_print(Namespace(json=True, no_progress=False), work, print, "work", unit="step") == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"n": 3, "x": 0.5, "when": "2024-01-02"}
    assert "work" in err and "3/3" in err and "step" in err


def test_text_and_no_progress(capsys):
    run_and_print(Namespace(json=False, no_progress=True), work, lambda r: print(f"{r['n']} done"), "work")
    assert capsys.readouterr() == ("3 done\n", "")
    emit(Namespace(json=True), ([1, 2], {"seconds": 1}), print, as_json=lambda r: r[0])
    assert json.loads(capsys.readouterr().out) == [1, 2]


def test_stages_one_bar_each(capsys):
    def staged(on):
        on("explain", 1, 2), on("explain", 2, 2), on("score", 1, 1)
        return []
    run_and_print(Namespace(json=True, no_progress=False), staged, print, "", stages=True, unit="unit")
    err = capsys.readouterr().err
    assert "explain" in err and "score" in err and "2/2" in err
