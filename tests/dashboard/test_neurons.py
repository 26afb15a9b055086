"""Neuron page: AppTest smoke and interaction tests on a real (tiny-model) index."""

from pathlib import Path

import pytest
from conftest import write_corpus
from streamlit.testing.v1 import AppTest

from core.extract import ExtractConfig, extract

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def unit_index(tiny_lm_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("neurons")
    corpus = tmp / "c.txt"
    write_corpus(corpus, n_docs=8)
    with corpus.open("a") as f:
        f.write("\n\nA document with <script>alert(1)</script> and <b>x</b> in it.\n")
    db = tmp / "i.duckdb"
    extract(ExtractConfig(model=str(tiny_lm_dir), db=str(db), corpus=str(corpus), context_len=32))
    return db


def page(monkeypatch, db, **params):
    monkeypatch.setenv("NEUROBOARD_DB", str(db))
    at = AppTest.from_file(str(ROOT / "dashboard/app_pages/neurons.py"), default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def test_smoke_shows_unit(monkeypatch, unit_index):
    at = page(monkeypatch, unit_index, run="1", layer="1", unit="5")
    assert not at.exception
    assert at.number_input(key="neuron_layer").value == 1 and at.number_input(key="neuron_unit").value == 5
    assert [m.label for m in at.metric][:4] == ["Layer / unit", "Density", "Mean", "Max"]
    assert any("interval" in e.label for e in at.expander)
    assert len(at.dataframe) >= 2


def test_bad_params_fall_back(monkeypatch, unit_index):
    at = page(monkeypatch, unit_index, run="9", layer="x", unit="100000")
    assert not at.exception
    texts = " ".join(w.value for w in at.warning)
    assert "`run=9`" in texts and "`layer=x` is not a number" in texts and "`unit=100000` is out of range" in texts
    assert at.number_input(key="neuron_unit").value == 0


def test_changing_unit_updates_url(monkeypatch, unit_index):
    at = page(monkeypatch, unit_index, run="1", layer="0", unit="0")
    at.number_input(key="neuron_unit").set_value(7).run()
    assert not at.exception
    assert at.query_params["unit"] == ["7"] or at.query_params["unit"] == "7"


def test_find_neurons_table_search_and_random(monkeypatch, unit_index):
    at = page(monkeypatch, unit_index, run="1", layer="1", unit="0")
    assert not at.exception
    frames = [d.value for d in at.dataframe]
    table = next(f for f in frames if "dominance" in f.columns)
    assert len(table) == 128 and {"density", "max", "dominance", "token"} <= set(table.columns)
    token = table.sort_values("dominance", ascending=False).iloc[0]["token"]
    at.text_input(key="neuron_search").input(token).run()
    assert not at.exception
    hits = next(d.value for d in at.dataframe if "share" in d.value.columns)
    assert len(hits) >= 1 and (hits["layer"] >= 0).all()
    at.button(key="neuron_random").click().run()
    assert not at.exception
    assert 0 <= at.number_input(key="neuron_unit").value < 128
