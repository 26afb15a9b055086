"""Findings: the file (every change one transaction, told apart from an index, newer schemas refused, a SIGKILL in
the middle of saving loses nothing), snapshots computed from a URL alone, and recheck: 0 on an unchanged model, not
0 once a weight is perturbed (a hand-edited copy of the model)."""

import copy
import json
import subprocess
import sys
import time

import pytest
import torch

from core.cli import main
from core.findings import store
from core.findings.store import Finding, FindingsError
from core.findings.views import SnapshotError, compare, make_finding, recheck


def test_store_round_trip(tmp_path):
    p = tmp_path / "f.duckdb"
    ids = [store.add(p, Finding(title=f"t{i}", url=f"http://x/neurons?run=1&unit={i}", snapshot={"v": [i, 0.5]},
                                manifest={"m": i}, note="n")) for i in range(3)]
    assert ids == [1, 2, 3]
    got = store.list_findings(p)
    assert [f.title for f in got] == ["t0", "t1", "t2"] and got[1].page == "neurons"
    assert got[1].params == {"run": "1", "unit": "1"} and got[2].snapshot == {"v": [2, 0.5]}
    store.update(p, 2, title="renamed", note="a note")
    store.move(p, 3, -2)
    store.delete(p, 1)
    got = store.list_findings(p)
    assert [(f.finding_id, f.title, f.note) for f in got] == [(3, "t2", "n"), (2, "renamed", "a note")]
    for bad in (lambda: store.get(p, 9), lambda: store.delete(p, 9), lambda: store.update(p, 2, title=" ")):
        with pytest.raises(FindingsError):
            bad()


def test_not_a_findings_file_and_newer_schema(tmp_path):
    from core.index.db import connect as connect_index

    connect_index(tmp_path / "index.duckdb").close()
    with pytest.raises(FindingsError, match="not a findings file"):
        store.list_findings(tmp_path / "index.duckdb")
    (tmp_path / "text.duckdb").write_text("hello, not a database\n" * 100)
    with pytest.raises(FindingsError, match="cannot open findings file"):
        store.add(tmp_path / "text.duckdb", Finding(title="t", url="http://x/", snapshot={}, manifest={}))
    p = tmp_path / "f.duckdb"
    store.add(p, Finding(title="t", url="http://x/", snapshot={}, manifest={}))
    import duckdb

    con = duckdb.connect(str(p))
    con.execute("INSERT INTO findings_schema (version) VALUES (99)")
    con.close()
    with pytest.raises(FindingsError, match="newer than this neuroboard"):
        store.list_findings(p)
    assert store.list_findings(tmp_path / "missing.duckdb") == []  # none saved yet
    with pytest.raises(FindingsError, match="no finding 1"):
        store.get(tmp_path / "missing.duckdb", 1)


SAVER = """
import sys
from core.findings import store
from core.findings.store import Finding
big = {"values": list(range(20000))}
i = 0
while True:
    i += 1
    store.add(sys.argv[1], Finding(title=f"t{i}", url="http://x/neurons?run=1", snapshot=big, manifest={"i": i}))
    print(i, flush=True)
"""


def test_sigkill_while_saving_loses_nothing(tmp_path):
    p = tmp_path / "f.duckdb"
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(p)], stdout=subprocess.PIPE, text=True)
    seen = 0
    deadline = time.monotonic() + 60
    while seen < 5 and time.monotonic() < deadline:
        seen = int(proc.stdout.readline() or 0)
    time.sleep(0.05)  # somewhere inside the next save
    proc.kill()
    proc.wait()
    got = store.list_findings(p)
    assert len(got) >= seen and [f.finding_id for f in got] == list(range(1, len(got) + 1))
    assert all(f.snapshot == {"values": list(range(20000))} for f in got)
    store.add(p, Finding(title="after", url="http://x/", snapshot={}, manifest={}))  # still writable


@pytest.fixture(scope="module")
def indexed(tiny_lm_dir, tmp_path_factory):
    from helpers.findings import tiny_extracted

    return tiny_extracted(tiny_lm_dir, tmp_path_factory.mktemp("findings"))


def perturbed(lm):
    from core.model.load import LoadedModel
    from core.model.parts import find_parts

    model = copy.deepcopy(lm.model)
    other = LoadedModel(name=lm.name, source=lm.source, model=model, tokenizer=lm.tokenizer, parts=find_parts(model))
    with torch.no_grad():
        other.parts.mlp_down[0].weight[:, :8] *= 1.5  # block 0's MLP writes differently from here on
    return other


@pytest.mark.parametrize("url", ["http://127.0.0.1:8501/neurons?run=1&layer=1&unit=5",
                                 "http://127.0.0.1:8501/features?run=1&sae=1&feature=3",
                                 "http://127.0.0.1:8501/trajectories?view=lens&prompt=The+cat+sat+on+the&pos=-1",
                                 "http://127.0.0.1:8501/trajectories?view=stream&prompt=The+cat+sat+on+the",
                                 "http://127.0.0.1:8501/trajectories?view=sets&set=sentiment&compare=other",
                                 "http://127.0.0.1:8501/heads?layer=1&head=2&prompt=The+cat+sat+on+the+mat",
                                 "http://127.0.0.1:8501/steering?direction=neuron:1:4&layer=1&alpha=0.5"
                                 "&prompt=The+cat&tokens=4",
                                 "http://127.0.0.1:8501/patching?clean=The+cat+sat+on+the+mat+and"
                                 "&corrupted=The+cat+sat+in+the+mat+and&answer=+the&foil=+a"])
def test_recheck_zero_then_not_after_a_perturbed_weight(indexed, tmp_path, url):
    db, lm, _ = indexed
    f = make_finding(url, "a finding", db=db, load=lambda name: lm)
    assert f.manifest["model"]["weights_sha256"] and f.manifest["versions"]["torch"]
    fid = store.add(tmp_path / "f.duckdb", f)
    saved = store.get(tmp_path / "f.duckdb", fid)
    same = recheck(saved, load=lambda name: lm)
    assert same["max_abs_diff"] == 0.0 and not same["mismatches"] and not same["weights_changed"]
    other = perturbed(lm)
    changed = recheck(saved, load=lambda name: other)
    assert changed["weights_changed"] and (changed["max_abs_diff"] > 1e-6 or changed["mismatches"])
    if "neurons" in url:  # the live activations at the top examples equal what the index stored
        for ex in f.snapshot["examples"]:
            assert ex["live"][ex["focus"]] == pytest.approx(ex["index_activation"], rel=1e-3, abs=1e-3)


def test_snapshot_bad_input(indexed):
    db, lm, _ = indexed
    for url, match in (("http://x/?db=0", "no snapshot yet"), ("http://x/heads?model=a&layer=0", "no head scores"),
                       ("http://x/neurons?run=7", "no run 7"), ("http://x/neurons?run=1&layer=1&unit=x", "whole number"),
                       ("http://x/neurons?run=1", "give the index")):
        with pytest.raises((SnapshotError, Exception), match=match):
            make_finding(url, "t", db=None if "give" in match else db, load=lambda name: lm)


def test_compare_walks_trees():
    assert compare({"a": [1.0, 2.0], "b": "x"}, {"a": [1.0, 2.5], "b": "x"}) == (0.5, [])
    assert compare({"a": "x"}, {"a": "y"})[1] == [".a"]
    assert compare([1], [1, 2])[1]


def test_cli_add_list_recheck(indexed, tmp_path, capsys):
    db, lm, _ = indexed
    f = tmp_path / "f.duckdb"
    rc = main(["findings", "add", "--findings", str(f), "--db", db, "--title", "neuron 5",
               "--url", "http://127.0.0.1:8501/neurons?run=1&layer=1&unit=5", "--note", "fires on cats", "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["id"] == 1
    assert main(["findings", "list", "--findings", str(f), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["title"] == "neuron 5" and rows[0]["note"] == "fires on cats" and rows[0]["snapshot"]["examples"]
    assert main(["recheck", str(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["max_abs_diff"] == 0.0
    rc = main(["findings", "add", "--findings", str(f), "--title", "x", "--url", "http://x/"])
    err = capsys.readouterr().err
    assert rc == 2 and "no snapshot yet" in err and len(err.strip().splitlines()) == 1
    assert len(json.loads((main(["findings", "list", "--findings", str(f), "--json"]), capsys.readouterr().out)[1]
                          )) == 1  # nothing written by the refused add


def test_export_cli_and_bad_paths(indexed, tmp_path, capsys):
    db, lm, _ = indexed
    f = tmp_path / "f.duckdb"
    store.add(f, make_finding("http://x/neurons?run=1&layer=1&unit=2", "<b>bold?</b>", db=db, load=lambda n: lm))
    out = tmp_path / "r.html"
    assert main(["export", str(f), "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "&lt;b&gt;bold?&lt;/b&gt;" in text and "<b>bold?</b>" not in text and "<script src" not in text
    for args, needle in ((["--out", str(tmp_path / "nowhere" / "r.html")], "cannot write"),
                         (["--out", str(out), "--id", "9"], "no finding 9")):
        capsys.readouterr()
        rc = main(["export", str(f)] + args)
        err = capsys.readouterr().err
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "nowhere").exists() and not list(tmp_path.glob("*.tmp"))


def test_serve_tour_bad_files_one_line(tiny_index, tmp_path, capsys):
    for tour, needle in ((str(tiny_index), "not a findings file"), (str(tmp_path / "none.duckdb"), "holds no findings")):
        rc = main(["serve", "--db", str(tiny_index), "--tour", tour])
        err = capsys.readouterr().err
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_export_draws_stream_sets_and_heads(indexed, tmp_path):
    from dashboard.export import report_html

    db, lm, _ = indexed
    urls = ["http://x/trajectories?view=stream&prompt=The+cat+sat", "http://x/trajectories?view=sets&set=truth"
            "&compare=b", "http://x/heads?layer=0&head=1&prompt=The+cat+sat+on"]
    found = [make_finding(u, f"t{i}", db=db, load=lambda n: lm) for i, u in enumerate(urls)]
    text = report_html(found)
    assert text.count('class="plotly-graph-div"') == 1 + 2 + 2 and "could not be drawn" not in text


def test_view_manifest(indexed):
    from core.findings.views import view_manifest

    db, lm, run_id = indexed
    man = view_manifest("neurons", {"run": str(run_id), "layer": "1", "unit": "5"}, db=db, load=lambda n: lm)
    assert man["run"]["run_id"] == run_id and man["run"]["config"]["context_len"] == 32
    assert man["model"]["weights_sha256"] == make_finding(f"http://x/neurons?run={run_id}&layer=1&unit=5", "t",
                                                          db=db, load=lambda n: lm).manifest["model"]["weights_sha256"]
    assert man["analysis"] == {"run": str(run_id), "layer": "1", "unit": "5"} and man["versions"]["transformers"]
    assert perturbed(lm).model is not lm.model
    other = view_manifest("patching", {"model": "m"}, load=lambda n: perturbed(lm))
    assert other["model"]["weights_sha256"] != man["model"]["weights_sha256"]
