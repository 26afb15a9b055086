"""The fault matrix's shared index, findings file and bad files."""

import pytest

from core.cli import main


@pytest.fixture(scope="package")
def env(tiny_lm_dir, tmp_path_factory):
    """An index (neurons, an SAE's features, heads), a findings file with one finding, and bad files."""
    from helpers.findings import tiny_extracted

    tmp = tmp_path_factory.mktemp("faults")
    db, _, run = tiny_extracted(tiny_lm_dir, tmp)
    findings = tmp / "f.duckdb"
    assert main(["findings", "add", "--url", f"http://127.0.0.1:8501/neurons?run={run}&layer=1&unit=3",
                 "--findings", str(findings), "--db", db, "--title", "kept"]) == 0
    bad = tmp / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_text("")
    (bad / "junk.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 4)
    (bad / "notdb.duckdb").write_bytes(b"this is not a database\n" * 100)
    (bad / "nodocs").mkdir()
    (bad / "one_group.csv").write_text("text,label,group\nThe cat sat.,a,g\nThe cat ran.,a,g\nThe dog sat.,b,g\n"
                                      "The dog ran.,b,g\n")  # a probe's folds need 2 groups
    sae_pickle = bad / "sae_pickle"
    sae_pickle.mkdir()
    (sae_pickle / "cfg.json").write_text('{"d_in": 64, "d_sae": 32}')
    (sae_pickle / "sae_weights.pt").write_bytes(b"\x80\x04K\x01.")  # a pickle: never opened
    (bad / "sae_missing").mkdir()
    return {"db": db, "run": str(run), "model": str(tiny_lm_dir), "findings": str(findings), "bad": bad,
            "corpus": str(tmp / "c.txt")}
