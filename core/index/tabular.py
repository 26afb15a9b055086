"""DuckDB over a user's data file (a corpus's .jsonl/.json/.csv/.parquet): the project's SQL that reads no index.

The reader function is chosen from our own table by the file's suffix; the path is always a bound parameter.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

READERS = {".jsonl": "read_json_auto", ".json": "read_json_auto", ".ndjson": "read_json_auto",
           ".csv": "read_csv_auto", ".parquet": "read_parquet"}
NON_EMPTY = "WHERE text IS NOT NULL AND trim(text) <> ''"


def _source(path: Path) -> str:
    return f"{READERS[path.suffix.lower()]}(?)"


def columns(path: Path) -> list[str]:
    """The file's column names (duckdb.Error if DuckDB cannot read it)."""
    import duckdb

    with duckdb.connect() as con:
        return [c[0] for c in con.execute(f"DESCRIBE SELECT * FROM {_source(path)}", [str(path)]).fetchall()]


def count_texts(path: Path) -> int:
    """Rows whose `text` is not null or blank."""
    import duckdb

    with duckdb.connect() as con:
        return con.execute(f"SELECT count(*) FROM (SELECT text FROM {_source(path)}) {NON_EMPTY}",
                           [str(path)]).fetchall()[0][0]


def iter_texts(path: Path) -> Iterator[str]:
    """The non-blank `text` values in file order, read in batches."""
    import duckdb

    with duckdb.connect() as con:
        cur = con.execute(f"SELECT text FROM (SELECT text FROM {_source(path)}) {NON_EMPTY}", [str(path)])
        while rows := cur.fetchmany(1024):
            for (text,) in rows:
                yield str(text)
