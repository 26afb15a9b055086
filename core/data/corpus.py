"""Corpora: read documents in order, tokenize, and cut windows that never cross a document boundary.

Sources: a .txt file (documents separated by blank lines), .jsonl/.json/.csv/.parquet with a `text` column (read by
DuckDB), `demo` (real English prose that ships with Python: the language reference and library documentation in
`pydoc_data`, plus the stdlib's own module docstrings — no download), or a Hugging Face dataset name
(`name[:config][@split]`, online only). Documents keep their input order and 0-based index `doc_id`.
"""

from __future__ import annotations

import ast
import hashlib
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TABULAR = {".jsonl": "read_json_auto", ".json": "read_json_auto", ".ndjson": "read_json_auto",
           ".csv": "read_csv_auto", ".parquet": "read_parquet"}


class CorpusError(ValueError):
    """The corpus cannot be used; the message is one line."""


# ----------------------------------------------------------------------------- sources
def demo_documents() -> Iterator[str]:
    """Python's reference documentation topics (sorted), then long stdlib module docstrings (sorted by path)."""
    from pydoc_data.topics import topics

    for key in sorted(topics):
        text = topics[key].strip()
        if text:
            yield text
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/__init__.py")):
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        if doc and len(doc) >= 400:
            yield doc.strip()


def _check_text_file(path: Path) -> None:
    if not path.exists():
        raise CorpusError(f"corpus file not found: {path}")
    if path.is_dir():
        raise CorpusError(f"corpus is a directory, expected a file: {path}")
    size = 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            if b"\x00" in block:
                raise CorpusError(f"corpus {path} looks binary (contains NUL bytes)")
            size += len(block)
    if size == 0:
        raise CorpusError(f"corpus {path} is empty")
    try:
        with path.open(encoding="utf-8") as f:
            has_text = False
            while block := f.read(1 << 20):
                has_text = has_text or bool(block.strip())
    except UnicodeDecodeError as e:
        raise CorpusError(f"corpus {path} is not UTF-8 text (byte {e.start} of a block)") from None
    if not has_text:
        raise CorpusError(f"corpus {path} has no text (only whitespace)")


def _txt_documents(path: Path) -> Iterator[str]:
    buf: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                buf.append(line)
            elif buf:
                yield "".join(buf).strip()
                buf = []
    if buf:
        yield "".join(buf).strip()


def _tabular_sql(path: Path) -> str:
    return f"SELECT text FROM {TABULAR[path.suffix.lower()]}(?)"


def _check_tabular(path: Path) -> None:
    import duckdb

    if not path.exists():
        raise CorpusError(f"corpus file not found: {path}")
    try:
        with duckdb.connect() as con:
            cols = [c[0] for c in con.execute(f"DESCRIBE SELECT * FROM {TABULAR[path.suffix.lower()]}(?)",
                                              [str(path)]).fetchall()]
            if "text" not in cols:
                raise CorpusError(f"corpus {path} has no 'text' column (columns: {', '.join(cols[:8])})")
            n = con.execute(f"SELECT count(*) FROM ({_tabular_sql(path)}) WHERE text IS NOT NULL AND trim(text) <> ''",
                            [str(path)]).fetchall()[0][0]
    except CorpusError:
        raise
    except Exception as e:  # duckdb.Error subclasses, e.g. invalid UTF-8 or a binary file
        raise CorpusError(f"cannot read corpus {path}: {str(e).splitlines()[0]}") from None
    if n == 0:
        raise CorpusError(f"corpus {path} has no non-empty 'text' values")


def _tabular_documents(path: Path) -> Iterator[str]:
    import duckdb

    with duckdb.connect() as con:
        cur = con.execute(f"SELECT text FROM ({_tabular_sql(path)}) WHERE text IS NOT NULL AND trim(text) <> ''",
                          [str(path)])
        while rows := cur.fetchmany(1024):
            for (text,) in rows:
                yield str(text)


def _hf_documents(spec: str) -> Iterator[str]:
    try:
        import datasets
    except ImportError:
        raise CorpusError(f"corpus {spec!r} is not a file; Hugging Face datasets need `pip install datasets`") from None
    name, _, split = spec.partition("@")
    name, _, config = name.partition(":")
    try:
        ds = datasets.load_dataset(name, config or None, split=split or "train", streaming=True)
        for row in ds:
            if row.get("text"):
                yield row["text"]
    except Exception as e:
        raise CorpusError(f"could not load dataset {spec!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


@dataclass
class Corpus:
    spec: str

    @property
    def kind(self) -> str:
        if self.spec == "demo":
            return "demo"
        suffix = Path(self.spec).suffix.lower()
        if suffix in TABULAR:
            return "tabular"
        if suffix == ".txt" or Path(self.spec).exists():
            return "text"
        return "hf"

    def validate(self) -> None:
        """Raise CorpusError before anything is written if the corpus is unusable."""
        kind = self.kind
        if kind == "text":
            _check_text_file(Path(self.spec))
        elif kind == "tabular":
            _check_tabular(Path(self.spec))
        elif kind == "hf" and ("/" not in self.spec and not self.spec.replace("-", "").replace("_", "").isalnum()):
            raise CorpusError(f"corpus {self.spec!r}: no such file, and not a dataset name")

    def documents(self) -> Iterator[str]:
        kind = self.kind
        if kind == "demo":
            return demo_documents()
        if kind == "text":
            return _txt_documents(Path(self.spec))
        if kind == "tabular":
            return _tabular_documents(Path(self.spec))
        return _hf_documents(self.spec)

    def identity(self) -> str:
        """A stable identifier: 'demo', a file's resolved path, or the dataset spec."""
        if self.kind in ("text", "tabular"):
            return str(Path(self.spec).resolve())
        return self.spec


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------- windows
@dataclass
class Window:
    doc_id: int
    start: int
    """Position of the window's first token within the document."""
    ids: list[int]
    tok0: int
    """Global index (over the run's token stream in document order) of the window's first token."""


@dataclass
class Chunk:
    """A group of whole documents, the unit of commit and resume."""

    index: int
    docs: list[tuple[int, str, list[int]]]  # (doc_id, text, token ids)
    windows: list[Window]
    tok0: int

    @property
    def n_tokens(self) -> int:
        return sum(len(ids) for _, _, ids in self.docs)


def tokenize(tokenizer, text: str) -> list[int]:
    """The tokenizer's defaults (special tokens included, e.g. Gemma's BOS)."""
    return list(tokenizer(text)["input_ids"])


def windows_of(doc_id: int, ids: list[int], context_len: int, tok0: int) -> list[Window]:
    """Contiguous, non-overlapping slices of one document: window w covers [w*T, (w+1)*T)."""
    return [Window(doc_id, s, ids[s: s + context_len], tok0 + s) for s in range(0, len(ids), context_len)]


def iter_chunks(docs: Iterator[str], tokenizer, *, max_tokens: int, context_len: int, chunk_tokens: int,
                start_doc: int = 0, start_tok: int = 0) -> Iterator[Chunk]:
    """Documents in order, tokenized, grouped into chunks of whole documents (the last one cut to max_tokens).

    Skips the first `start_doc` documents (resume); `start_tok` is the global index of the next token.
    """
    chunk_docs: list[tuple[int, str, list[int]]] = []
    tok = start_tok
    chunk_index = 0
    chunk_tok0 = tok
    for doc_id, text in enumerate(docs):
        if doc_id < start_doc:
            continue
        if tok >= max_tokens:
            break
        ids = tokenize(tokenizer, text)
        if not ids:
            continue
        ids = ids[: max_tokens - tok]
        chunk_docs.append((doc_id, text, ids))
        tok += len(ids)
        if tok - chunk_tok0 >= chunk_tokens:
            yield _make_chunk(chunk_index, chunk_docs, chunk_tok0, context_len)
            chunk_index, chunk_docs, chunk_tok0 = chunk_index + 1, [], tok
    if chunk_docs:
        yield _make_chunk(chunk_index, chunk_docs, chunk_tok0, context_len)


def _make_chunk(index: int, docs: list[tuple[int, str, list[int]]], tok0: int, context_len: int) -> Chunk:
    wins, t = [], tok0
    for doc_id, _, ids in docs:
        wins.extend(windows_of(doc_id, ids, context_len, t))
        t += len(ids)
    return Chunk(index=index, docs=docs, windows=wins, tok0=tok0)


def batches(windows: list[Window], batch_tokens: int) -> list[list[Window]]:
    """Windows sorted by length (longest first) and packed so that rows * longest <= batch_tokens."""
    order = sorted(windows, key=lambda w: (-len(w.ids), w.tok0))
    out, cur = [], []
    for w in order:
        if cur and (len(cur) + 1) * len(cur[0].ids) > batch_tokens:
            out.append(cur)
            cur = []
        cur.append(w)
    if cur:
        out.append(cur)
    return out
