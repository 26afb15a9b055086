"""Text the models read.

  corpus       Corpus sources (demo, .txt, .jsonl/.csv/.parquet, HF datasets); document_windows, the one windowing
               rule; iter_chunks (commit units of extraction); sample_windows (probes and samples); batches
  prompt_sets  labelled prompt sets (built-ins in prompts/, package data; or a user CSV) and per-layer
               representations of each prompt
"""
