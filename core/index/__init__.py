"""The DuckDB index, and every SQL statement of the project.

  db          connect: migrations/NNN_*.sql in order under a schema_version table; IndexFileError and its kinds
  pool        reading(path): a cursor on a shared read-only connection that closes when reads pause
  writer      columnar inserts in transactions: models, runs, chunks of tokens, per-unit results
  queries     named reads: runs, unit records, example tokens, layer tables, token search, vocab
  heads       head scores: write a model's scores, read them back
  patch_grids stored activation-patching grids of a prompt pair (the demo's, for the patching page's first visit)
  tabular     DuckDB over a corpus file (.jsonl/.csv/.parquet)
  feature_labels  many features' explanations and top examples at once, and which run indexed a set's layers
"""
