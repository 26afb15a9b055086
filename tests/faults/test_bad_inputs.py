"""The fault matrix's bad inputs: every kind of input the CLI accepts (models, corpora, layers, units, SAE files,
prompts, numbers, indexes and findings files), each given wrong. Each case must exit 2 with one line on stderr, no
traceback, and leave the index's and the findings file's bytes exactly as they were."""

import pytest
from helpers.faults import digest

from core.cli import main

# (name, argv with {db} {run} {model} {findings} {bad} {corpus} filled in, a phrase the line must hold)
CASES = [
    # models
    ("model folder missing", ["extract", "--model", "{bad}/no-such-model", "--db", "{db}", "--corpus", "{corpus}"], "could not load model"),
    ("model a junk GGUF", ["lens", "--model", "{bad}/junk.gguf", "--prompt", "hello"], "this reader handles v2 and v3"),
    ("model an unknown hub id offline", ["lens", "--model", "nobody/no-such-model-xyz", "--prompt", "hi"], "could not load model"),
    # corpora
    ("corpus missing", ["extract", "--model", "{model}", "--db", "{db}", "--corpus", "{bad}/nope.txt"], "corpus file not found"),
    ("corpus empty", ["extract", "--model", "{model}", "--db", "{db}", "--corpus", "{bad}/empty.txt"], "is empty"),
    ("corpus a folder without text files", ["extract", "--model", "{model}", "--db", "{db}", "--corpus",
                                            "{bad}/nodocs"], "expected a file"),
    # layers
    ("extract layer out of range", ["extract", "--model", "{model}", "--db", "{db}", "--corpus", "{corpus}",
                                    "--layers", "99"], "out of range"),
    ("extract layer not a number", ["extract", "--model", "{model}", "--db", "{db}", "--corpus", "{corpus}",
                                    "--layers", "x"], "expected 'all'"),
    ("top layer not indexed", ["top", "--db", "{db}", "--run", "{run}", "--layer", "0", "--unit", "1"], "has no layer 0"),
    ("steer layer out of range", ["steer", "--model", "{model}", "--layer", "99", "--direction", "neuron:1:3",
                                  "--prompt", "hi", "--alpha", "1"], "layer 99 is out of range"),
    ("lens position out of range", ["lens", "--model", "{model}", "--prompt", "hi there", "--position", "99"], "position 99 out of range"),
    # units and runs
    ("top unit negative", ["top", "--db", "{db}", "--run", "{run}", "--layer", "1", "--unit", "-1"], "unit -1 out of range"),
    ("top unit past the layer", ["top", "--db", "{db}", "--run", "{run}", "--layer", "1", "--unit", "100000"], "unit 100000 out of range"),
    ("top run missing", ["top", "--db", "{db}", "--run", "99", "--layer", "1", "--unit", "1"], "no run 99"),
    ("explain units spec", ["explain", "--db", "{db}", "--run", "{run}", "--units", "1:x", "--no-progress"], "expected layer:unit"),
    ("explain SAE missing", ["explain", "--db", "{db}", "--run", "{run}", "--sae", "7", "--units", "1",
                             "--no-progress"], "no SAE 7"),
    ("steer direction unit out of range", ["steer", "--model", "{model}", "--layer", "1", "--direction",
                                           "neuron:1:999999", "--prompt", "hi", "--alpha", "1"], "neuron 999999 is out of range"),
    # SAE files
    ("features SAE missing", ["features", "--model", "{model}", "--sae", "{bad}/sae_missing", "--text", "hi"], "no SAE files found"),
    ("features SAE a pickle", ["features", "--model", "{model}", "--sae", "{bad}/sae_pickle", "--text", "hi"], "sae_weights.safetensors"),
    ("extract with a pickled SAE into the index", ["extract", "--model", "{model}", "--db", "{db}", "--corpus",
                                                   "{corpus}", "--sae", "{bad}/sae_pickle"], "sae_weights.safetensors"),
    ("sae-eval SAE missing", ["sae-eval", "--model", "{model}", "--sae", "{bad}/sae_missing", "--corpus",
                              "{corpus}"], "no SAE files found"),
    # prompts
    ("lens empty prompt", ["lens", "--model", "{model}", "--prompt", ""], "prompt is empty"),
    ("steer empty prompt", ["steer", "--model", "{model}", "--layer", "1", "--direction", "neuron:1:3",
                            "--prompt", "", "--alpha", "1"], "must not be empty"),
    ("patch prompts of different lengths", ["patch", "--model", "{model}", "--clean", "a b c d",
                                            "--corrupted", "a", "--answer", " b", "--foil", " c", "--no-progress"], "equal lengths"),
    ("cka prompt set missing", ["cka", "--model", "{model}", "--model", "{model}", "--set", "no-such-set"], "not found"),
    # numbers
    ("extract context length zero", ["extract", "--model", "{model}", "--db", "{db}", "--corpus", "{corpus}",
                                     "--context-len", "0"], "--context-len must be positive"),
    ("extract top-k zero", ["extract", "--model", "{model}", "--db", "{db}", "--corpus", "{corpus}",
                            "--top-k", "0"], "--top-k must be positive"),
    ("heads zero sequences", ["heads", "--model", "{model}", "--db", "{db}", "--seqs", "0", "--no-progress"], "--seqs must be >= 1"),
    ("sweep alphas not numbers", ["sweep", "--model", "{model}", "--direction", "neuron:1:3", "--layer", "1",
                                  "--db", "{db}", "--alphas", "a,b", "--no-progress"], "expected numbers"),
    # indexes
    ("runs index missing", ["runs", "--db", "{bad}/none.duckdb"], "index not found"),
    ("runs index not a database", ["runs", "--db", "{bad}/notdb.duckdb"], "not a valid DuckDB"),
    ("search index not a database", ["search", "--db", "{bad}/notdb.duckdb", "--query", "numbers"], "not a valid DuckDB"),
    # findings files
    ("recheck findings not a database", ["recheck", "{bad}/notdb.duckdb"], "cannot open findings file"),
    ("recheck an index given as findings", ["recheck", "{db}"], "not a findings file"),
    ("recheck finding missing", ["recheck", "{findings}", "--id", "99"], "no finding 99"),
    ("export finding missing", ["export", "{findings}", "--id", "99", "--out", "{bad}/out.html"], "no finding 99"),
    ("findings add a URL of no page", ["findings", "add", "--url", "http://127.0.0.1:8501/nowhere?x=1",
                                       "--findings", "{findings}", "--db", "{db}", "--title", "t"], "has no snapshot"),
    ("findings add a unit out of range", ["findings", "add", "--url",
                                          "http://127.0.0.1:8501/neurons?run=1&layer=1&unit=99999",
                                          "--findings", "{findings}", "--db", "{db}", "--title", "t"], "unit 99999 out of range"),
    ("findings add a prompt set all in one group", ["findings", "add", "--url",
                                                    "http://127.0.0.1:8501/trajectories?view=sets&model={model}"
                                                    "&set={bad}/one_group.csv", "--findings", "{findings}",
                                                    "--title", "t"], "2 groups"),
]


@pytest.mark.parametrize("name,argv,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_one_line_nothing_changed(env, capsys, name, argv, needle):
    before = digest(env["db"]), digest(env["findings"])
    rc = main([a.format(**env) for a in argv])
    err = capsys.readouterr().err.strip()
    print(name, "->", rc, err)
    assert rc == 2, (rc, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert needle.lower() in err.lower(), err
    assert (digest(env["db"]), digest(env["findings"])) == before
