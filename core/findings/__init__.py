"""Findings: saved views with a snapshot of their data and a manifest to recompute it.

Modules: `store` (the findings file: add, list, edit, reorder, delete; numbered migrations), `manifest` (what a
number depends on: model weights hash, tokenizer, corpus slice, configs, versions), `views` (each page kind's
snapshot from its URL, and its recheck), `export` (one self-contained HTML file).
"""
