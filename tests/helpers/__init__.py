"""Test helpers: tiny (models, tokenizer, corpora), bruteforce (NumPy reference statistics), serving (`neuroboard
serve` on a free port), index_digest (a run's rows as md5s)."""
