"""Corpus readers, document order, and windows that never cross a document."""

import json

import duckdb
import pytest
from helpers.tiny import tiny_tokenizer

from core.data.corpus import Corpus, CorpusError, batches, demo_documents, iter_chunks, tokenize

DOCS = ["First document, short.", "Second one:\nwith a line break and ünïcode.", "Third " * 40]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet", ".txt"])
def test_formats_keep_order(tmp_path, suffix):
    path = tmp_path / f"c{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(DOCS)))
    elif suffix == ".txt":
        path.write_text("\n\n".join(d.replace("\n", " ") for d in DOCS) + "\n")
    else:
        con = duckdb.connect()
        con.execute("CREATE TABLE t (id INTEGER, text TEXT)")
        con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(DOCS)))
        fmt = "(FORMAT csv, HEADER)" if suffix == ".csv" else "(FORMAT parquet)"
        con.execute(f"COPY (SELECT * FROM t ORDER BY id) TO '{path}' {fmt}")
    c = Corpus(str(path))
    c.validate()
    got = list(c.documents())
    want = [d.replace("\n", " ").strip() for d in DOCS] if suffix == ".txt" else DOCS
    assert got == want


def test_demo_corpus_is_real_prose_offline():
    docs = list(demo_documents())
    text = " ".join(docs)
    assert len(docs) > 100 and len(text) > 500_000  # > 100k tokens for both built-in tokenizers
    assert "The Python interpreter" in text or "Python" in text[:50_000]
    words = text.split()
    assert sum(w.lower() in {"the", "of", "and", "is", "a", "to"} for w in words) > 0.1 * len(words) * 0.5


def test_windows_are_slices_of_one_document():
    tok = tiny_tokenizer()
    docs = ["alpha beta gamma " * (i * 7 + 1) for i in range(9)]
    chunks = list(iter_chunks(iter(docs), tok, max_tokens=10**6, context_len=16, chunk_tokens=100))
    seen_tok0 = 0
    for ch in chunks:
        assert ch.tok0 == seen_tok0
        for doc_id, _text, ids in ch.docs:
            assert ids == tokenize(tok, docs[doc_id])
            wins = [w for w in ch.windows if w.doc_id == doc_id]
            assert [w.start for w in wins] == list(range(0, len(ids), 16))
            assert sum((w.ids for w in wins), []) == ids
            assert all(len(w.ids) <= 16 for w in wins)
        seen_tok0 += ch.n_tokens
    assert [d for ch in chunks for d, _, _ in ch.docs] == list(range(9))
    for b in batches(chunks[-1].windows, 64):
        lengths = [len(w.ids) for w in b]
        assert len(b) * max(lengths) <= 64 or len(b) == 1
        assert lengths == sorted(lengths, reverse=True)


def test_max_tokens_cuts_last_document_and_resume_skips():
    tok = tiny_tokenizer()
    docs = ["one two three four five six seven eight nine ten"] * 5
    n = len(tokenize(tok, docs[0]))
    cap = 3 * n + n // 2
    full = list(iter_chunks(iter(docs), tok, max_tokens=cap, context_len=8, chunk_tokens=n))
    assert sum(c.n_tokens for c in full) == cap and len(full) == 4 and full[-1].n_tokens == n // 2
    rest = list(iter_chunks(iter(docs), tok, max_tokens=cap, context_len=8, chunk_tokens=n,
                            start_doc=full[1].docs[0][0], start_tok=full[1].tok0))
    assert [(c.tok0, c.n_tokens) for c in rest] == [(c.tok0, c.n_tokens) for c in full[1:]]


def test_bad_corpora(tmp_path):
    (tmp_path / "x.parquet").write_bytes(b"not parquet at all")
    for spec, needle in [(tmp_path / "nope.txt", "not found"), (tmp_path / "x.parquet", "cannot read corpus"),
                         (tmp_path, "directory")]:
        with pytest.raises(CorpusError, match=needle):
            Corpus(str(spec)).validate()
