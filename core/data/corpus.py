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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError, first_line
from core.index import tabular
from core.model.tokens import tokenize


class CorpusError(UserError):
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


def _check_tabular(path: Path) -> None:
    if not path.exists():
        raise CorpusError(f"corpus file not found: {path}")
    try:
        cols = tabular.columns(path)
        if "text" not in cols:
            raise CorpusError(f"corpus {path} has no 'text' column (columns: {', '.join(cols[:8])})")
        n = tabular.count_texts(path)
    except CorpusError:
        raise
    except Exception as e:  # duckdb.Error subclasses, e.g. invalid UTF-8 or a binary file
        raise CorpusError(f"cannot read corpus {path}: {first_line(e)}") from None
    if n == 0:
        raise CorpusError(f"corpus {path} has no non-empty 'text' values")


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
        raise CorpusError(f"could not load dataset {spec!r}: {first_line(e)}") from None


@dataclass
class Corpus:
    spec: str

    @property
    def kind(self) -> str:
        if self.spec == "demo":
            return "demo"
        suffix = Path(self.spec).suffix.lower()
        if suffix in tabular.READERS:
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
            return tabular.iter_texts(Path(self.spec))
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


def windows_of(doc_id: int, ids: list[int], context_len: int, tok0: int) -> list[Window]:
    """Contiguous, non-overlapping slices of one document: window w covers [w*T, (w+1)*T)."""
    return [Window(doc_id, s, ids[s: s + context_len], tok0 + s) for s in range(0, len(ids), context_len)]


def document_windows(docs: Iterable[str], tokenizer, *, context_len: int, max_tokens: int | None = None,
                     special: bool = True, start_doc: int = 0, start_tok: int = 0
                     ) -> Iterator[tuple[int, str, list[int], list[Window]]]:
    """The one windowing rule: documents in order as (doc_id, text, ids, windows), each tokenized (with the
    tokenizer's special tokens, e.g. BOS, unless `special` is False), the last one cut so that at most `max_tokens`
    tokens are read, and cut into contiguous windows of at most `context_len` tokens (`windows_of`; each window's
    `tok0` counts tokens from `start_tok`). Documents without tokens are skipped; the first `start_doc` are not read
    (resume)."""
    tok = start_tok
    for doc_id, text in enumerate(docs):
        if doc_id < start_doc:
            continue
        if max_tokens is not None and tok >= max_tokens:
            return
        ids = tokenize(tokenizer, text) if special else list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if not ids:
            continue
        if max_tokens is not None:
            ids = ids[: max_tokens - tok]
        yield doc_id, text, ids, windows_of(doc_id, ids, context_len, tok)
        tok += len(ids)


def iter_chunks(docs: Iterable[str], tokenizer, *, max_tokens: int, context_len: int, chunk_tokens: int,
                start_doc: int = 0, start_tok: int = 0, first_chunk_tokens: int | None = None) -> Iterator[Chunk]:
    """`document_windows` grouped into chunks of whole documents of at least `chunk_tokens` tokens (the last
    chunk may be smaller): the unit of commit and resume. The run's first chunk (start_tok 0) closes at
    `first_chunk_tokens` instead when given (a preview of the results comes after it)."""
    chunk_docs: list[tuple[int, str, list[int]]] = []
    wins: list[Window] = []
    chunk_index, chunk_tok0, tok = 0, start_tok, start_tok
    for doc_id, text, ids, ws in document_windows(docs, tokenizer, context_len=context_len, max_tokens=max_tokens,
                                                  start_doc=start_doc, start_tok=start_tok):
        chunk_docs.append((doc_id, text, ids))
        wins.extend(ws)
        tok += len(ids)
        size = first_chunk_tokens if first_chunk_tokens and chunk_tok0 == 0 else chunk_tokens
        if tok - chunk_tok0 >= size:
            yield Chunk(index=chunk_index, docs=chunk_docs, windows=wins, tok0=chunk_tok0)
            chunk_index, chunk_docs, wins, chunk_tok0 = chunk_index + 1, [], [], tok
    if chunk_docs:
        yield Chunk(index=chunk_index, docs=chunk_docs, windows=wins, tok0=chunk_tok0)


def sample_windows(corpus: str, tokenizer, *, n_tokens: int, context_len: int, special: bool = True,
                   full_only: bool = False, min_len: int = 1) -> list[list[int]]:
    """Token windows of a corpus for probes and samples (head scores, ablation), by `document_windows`: the
    windows of the first `n_tokens` tokens, or with `full_only` only windows of exactly `context_len` tokens, as
    many as make up `n_tokens` (rounded up); windows shorter than `min_len` are left out."""
    c = Corpus(corpus)
    c.validate()
    out: list[list[int]] = []
    want = -(-n_tokens // context_len) if full_only else None
    for _, _, _, ws in document_windows(c.documents(), tokenizer, context_len=context_len, special=special,
                                        max_tokens=None if full_only else n_tokens):
        out += [w.ids for w in ws if len(w.ids) >= min_len and (not full_only or len(w.ids) == context_len)]
        if want is not None and len(out) >= want:
            return out[:want]
    return out


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
